"""How rows of the two source schemas (`sophia.references.FORMATS`) are checked and become
(instruction, answer) task examples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sophia.references import Format


def row_problem(row: Any, fmt: Format) -> str | None:
    """Why a row cannot be used (naming the field), or None when it is fine."""
    if not isinstance(row, Mapping):
        return f"expected a JSON object, got {type(row).__name__}"
    for name in fmt.required + fmt.optional:
        if name not in row:
            return f"missing field '{name}'"
        if not isinstance(row[name], str):
            return f"field '{name}' is {type(row[name]).__name__}, expected a string"
    for name in fmt.required:
        if not row[name].strip():
            return f"empty field '{name}'"
    return None


def example(format_name: str, task: str, row: Mapping[str, str]) -> tuple[str, str]:
    """(instruction, answer) of `task` built from a validated row."""
    if format_name == "code_alpaca":
        extra = row["input"].strip()
        return (f"{row['instruction'].strip()}\n{extra}" if extra else row["instruction"], row["output"])
    if task == "codegen":
        return row["prompt"], row["response"]
    if task == "summary":  # the paper's summary task: the same pair, swapped
        return row["response"], row["prompt"]
    raise ValueError(f"task {task} not defined for format {format_name}")
