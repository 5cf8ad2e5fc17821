"""Parity gates shared by the exports (TFLite, GGUF): each check compares one measured figure of an
exported model with PyTorch against its configured gate, and returns the failure message, naming
the gate's config key (`where`), or None when the gate holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def max_abs(name: str, value: float, limit: float | None, where: str, what: str = "") -> str | None:
    """The largest |logit difference| (`what`: which comparison, e.g. " after prefill")."""
    if limit is None or value <= limit:
        return None
    return f"{name}: max |logit diff|{what} {value:.3g} > {where}.max_abs={limit}"


def argmax_agreement(name: str, value: float, floor: float, where: str, what: str = "") -> str | None:
    """The share of positions whose most likely token is PyTorch's."""
    if value >= floor:
        return None
    return f"{name}: argmax agreement{what} {value:.3f} < {where}.argmax_agreement={floor}"


def greedy_equal(name: str, greedy: Sequence[Mapping[str, Any]], required: bool, where: str) -> str | None:
    """Greedy decoding of each prompt gives PyTorch's tokens (`greedy`: one entry per prompt, with
    `equal` and `first_difference`)."""
    bad = [(i, m["first_difference"]) for i, m in enumerate(greedy) if not m["equal"]]
    if not required or not bad:
        return None
    return (f"{name}: greedy tokens differ from PyTorch generate (prompt, first differing token): {bad} "
            f"({where}.greedy_equal=true)")


def ppl_increase(name: str, value: float, limit: float | None, where: str) -> str | None:
    """The relative perplexity increase over PyTorch on the same text (0.1 = +10%)."""
    if limit is None or value <= limit:
        return None
    return f"{name}: perplexity +{100 * value:.2f}% vs PyTorch > {where}.max_ppl_increase={limit}"
