"""Published rows against measured ones, like for like: each published score is compared with the
measured score of the same key (a group, or a single benchmark when that is what was published,
e.g. the study's coding column, which is HumanEval on 20 tasks), shown with the published score's
own interval where its item count is known, and every difference in protocol is named in the cell
(the row's declared differences, item counts, our run's CPU caps, short BBH budgets, partial groups,
cut prompts), so a Δ never stands without what it compares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sophia.evaluate.benchmarks import BENCHMARKS, GROUPS
from sophia.evaluate.scoring import wilson


def members(key: str) -> list[str]:
    """The benchmarks behind a score key: a group's members, or the benchmark itself."""
    if key in GROUPS:
        return [b for b, bench in BENCHMARKS.items() if bench.group == key]
    return [key]


def measured(row: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The measured score for a key (group score, or the benchmark's primary metric)."""
    if key in GROUPS:
        return row["groups"].get(key)
    m = row["benchmarks"].get(key)
    return m.get(BENCHMARKS[key].metric) if m else None


def published_interval(ref: Mapping[str, Any], key: str, confidence: float) -> tuple[float, float] | None:
    """Wilson's interval (points) of a published score over its item count, where the row gives one:
    20 HumanEval tasks leave a published 32.7 about ±20 points of room."""
    n = (ref.get("items") or {}).get(key)
    if not n:
        return None
    low, high = wilson(ref["scores"][key] / 100 * n, n, confidence)
    return 100 * low, 100 * high


def _items(row: Mapping[str, Any], key: str) -> int | None:
    cards = [row.get("protocol", {}).get(b) for b in members(key)]
    counts = [c.get("items_scored") for c in cards if c and c.get("items_scored")]
    return sum(counts) if counts else None


def differences(ref: Mapping[str, Any], row: Mapping[str, Any], key: str) -> list[str]:
    """Every way the published number and ours were measured differently, shortest first."""
    out = []
    if (ref.get("differs") or {}).get(key):
        out.append(ref["differs"][key])
    theirs, ours = (ref.get("items") or {}).get(key), _items(row, key)
    if theirs and ours and theirs != ours:
        out.append(f"{theirs} vs our {ours} items")
    s = measured(row, key)
    if s and "members" in s and len(s["members"]) < len(s["expected"]):
        out.append(f"ours: {len(s['members'])}/{len(s['expected'])} benchmarks")
    for b in members(key):
        card = row.get("protocol", {}).get(b) or {}
        out += [f"ours: {b} {cap}" for cap in card.get("cpu_caps") or []]
        short = card.get("short_budget_subtasks") or {}
        if short:
            out.append(f"ours: {b} " + ", ".join(f"{t} at {n} tokens" for t, n in short.items()))
        if card.get("truncated_share"):
            out.append(f"ours: {b} {100 * card['truncated_share']:.0f} % prompts cut")
    return out


def _cell(ref: Mapping[str, Any], row: Mapping[str, Any], key: str, confidence: float) -> str:
    theirs = ref["scores"].get(key)
    if theirs is None:
        return "—"
    span = published_interval(ref, key, confidence)
    published = f"{theirs:.1f}" + (f" [{span[0]:.1f}, {span[1]:.1f}]" if span else "")
    s = measured(row, key)
    if not s or s.get("value") is None:
        return f"— / {published}"
    text = f"{100 * s['value']:.1f} / {published} (Δ {100 * s['value'] - theirs:+.1f})"
    flags = differences(ref, row, key)
    return text + (" ⚑ " + "; ".join(flags) if flags else "")


def keys(references: Sequence[Mapping[str, Any]]) -> list[str]:
    """Score keys of the published rows: groups first, then single benchmarks, in table order."""
    present = {k for ref in references for k in ref["scores"]}
    return [g for g in GROUPS if g in present] + [b for b in BENCHMARKS if b in present and b not in GROUPS]


def comparison(rows: Sequence[dict[str, Any]], references: Sequence[Mapping[str, Any]], confidence: float,
               protocol_file: str) -> list[str]:
    """Measured against published for every reference row matched to a variant."""
    by_model = {r["model"]: r for r in rows}
    matched = [ref for ref in references if ref.get("model") in by_model]
    if not matched:
        return []
    cols = keys(matched)
    level = round(100 * confidence)
    lines = ["", "Measured against published, like for like (percent; Δ = measured - published, in points; "
             f"[…]: the published score's {level} % interval over its items, where the row gives them; "
             "⚑: how the two protocols differ):", "",
             "| variant | published row | " + " | ".join(f"[{k}]({protocol_file}#{k})" for k in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for ref in matched:
        row = by_model[ref["model"]]
        lines.append(f"| {ref['model']} | {ref['name']} | "
                     + " | ".join(_cell(ref, row, k, confidence) for k in cols) + " |")
    return lines
