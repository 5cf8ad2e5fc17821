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


def parser(description: str, threads: int | None = None) -> argparse.ArgumentParser:
    """`--spec` and `--out`; with `threads` (its default) also `--threads`, which `parse` applies."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--spec", required=True, help="stage settings: inline JSON or a YAML file")
    p.add_argument("--out", required=True, type=Path, help="output directory (written atomically)")
    if threads is not None:
        p.add_argument("--threads", type=int, default=threads, help="torch CPU threads (0: torch's default)")
    return p


def add_variant(p: argparse.ArgumentParser) -> None:
    """The model variant a job works on: its name, its model directory and an optional adapter."""
    p.add_argument("--model-id", required=True, help="variant name: base, gptq, gptq+<curriculum>, ...")
    p.add_argument("--model", required=True, type=Path, help="base or GPTQ model directory")
    p.add_argument("--adapter", type=Path, help="LoRA adapter directory applied on top of --model")


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line, then set torch's CPU threads from `--threads` (0 or absent: torch's
    default) before the stage loads anything."""
    args = p.parse_args()
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    return args


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
