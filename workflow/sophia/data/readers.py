"""Read a dataset source row by row, from a local file or the hub, with row-level diagnostics.

Each yielded item is (row number, row or None, problem): the number is 1-based (a line for
JSONL), so an error can say exactly where to look.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sophia.errors import DataError

Row = tuple[int, Any, str | None]


def describe(spec: dict[str, Any]) -> str:
    if spec.get("hub"):
        return f"hub:{spec['hub']}@{spec['revision']}[{spec['split']}]"
    return str(spec["path"])


def _jsonl(path: Path) -> Iterator[Row]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"undecodable bytes (not UTF-8) at byte {exc.start} of the line"
                continue
            if not text.strip():
                continue
            try:
                yield number, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"


def _json(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: undecodable bytes (not UTF-8) at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    for number, row in enumerate(data, start=1):
        yield number, row, None


def _parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: unreadable parquet file: {exc}") from exc
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row, None


def _hub(spec: dict[str, Any]) -> Iterator[Row]:
    import datasets

    try:
        ds = datasets.load_dataset(spec["hub"], split=spec["split"], revision=spec["revision"])
    except Exception as exc:  # offline, missing repo or split: say which source failed
        raise DataError(f"{describe(spec)}: cannot load dataset: {exc}") from exc
    for number, row in enumerate(ds, start=1):
        yield number, row, None


_READERS = {".jsonl": _jsonl, ".json": _json, ".parquet": _parquet}


def read_rows(spec: dict[str, Any]) -> Iterator[Row]:
    if spec.get("hub"):
        yield from _hub(spec)
        return
    path = Path(spec["path"])
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl, .json or .parquet)")
    yield from reader(path)
