"""Reader of the data stage's documented output format (`results/data/{dataset}/{task}/{split}.jsonl`).

Later stages meet the data stage through these files only; this is the one place that reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sophia.errors import DataError


def read(path: Path) -> list[dict[str, Any]]:
    """All records of one split file; a missing file is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (the data stage builds the tasks listed under datasets.*.tasks)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def text(record: dict[str, Any]) -> str:
    """The full training text of a record: prompt followed by its answer."""
    return record["prompt"] + record["completion"]
