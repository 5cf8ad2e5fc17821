"""What every stage's `python -m sophia.<stage>` entry point shares: spec parsing, logging,
threads and turning user errors into one readable line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sophia.errors import SophiaError


def load_spec(text: str) -> dict[str, Any]:
    """A stage spec is inline JSON (what Snakemake rules pass) or a YAML/JSON file (by hand)."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    path = Path(text)
    if not path.is_file():
        raise SophiaError(f"--spec: {text} is neither inline JSON nor an existing file")
    with open(path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    if not isinstance(spec, dict):
        raise SophiaError(f"--spec: {text} does not hold a mapping")
    return spec


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--spec", required=True, help="stage settings: inline JSON or a YAML file")
    p.add_argument("--out", required=True, type=Path, help="output directory (written atomically)")
    return p


def main(run: Callable[[], None]) -> None:
    """Run a stage entry point; known input errors print as `error: ...` and exit 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        run()
    except SophiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
