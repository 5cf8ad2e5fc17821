"""The comparison table (the paper's Table 2): models x BBH, commonsense, math, coding, with size
and parameter count, built only from the evaluate stage's `scores.json` files and model summaries."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sophia.errors import DataError
from sophia.evaluate.benchmarks import BENCHMARKS, GROUPS
from sophia.evaluate.scoring import combine

GROUP_TITLES = {"bbh": "BBH", "commonsense": "Commonsense", "math": "Math", "coding": "Coding"}
# Code benchmarks' reranked top-1 scores (evaluate.rerank), shown after pass@10.
RERANKED = {"codet_pass@1": "CodeT", "lever_pass@1": "LEVER"}


def read_scores(eval_dirs: Sequence[Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """model → benchmark → scores.json content."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for d in eval_dirs:
        path = Path(d) / "scores.json"
        if not path.is_file():
            raise DataError(f"{path}: missing; run the evaluate stage for this model and benchmark")
        try:
            scores = json.loads(path.read_text(encoding="utf-8"))
            model, bench = scores["model"], scores["benchmark"]
            if "value" not in scores["score"]:
                raise KeyError("score.value")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not an evaluate scores file ({exc})") from None
        table.setdefault(model, {})[bench] = scores
    return table


def group_scores(per_bench: Mapping[str, dict[str, Any]], confidence: float) -> dict[str, dict[str, Any]]:
    """Each group as the paper reports it: BBH and math are one benchmark, commonsense is the mean
    of its five tasks and coding of HumanEval and MBPP pass@1. `members` lists the benchmarks that
    scored (a scores file without a value counts as not measured), `expected` all of them."""
    out = {}
    for group in GROUPS:
        names = [b for b, bench in BENCHMARKS.items() if bench.group == group]
        present = [b for b in names if b in per_bench and per_bench[b]["score"].get("value") is not None]
        if not present:
            continue
        combined = combine([per_bench[b]["score"] for b in present], confidence)
        out[group] = {**combined, "members": present, "expected": names}
    return out


def partial(s: Mapping[str, Any] | None) -> str | None:
    """"k/n" when only k of a group's n benchmarks were measured, else None."""
    if s and "members" in s and len(s["members"]) < len(s["expected"]):
        return f"{len(s['members'])}/{len(s['expected'])}"
    return None


def build_rows(scores: Mapping[str, Mapping[str, dict[str, Any]]], models: Sequence[str],
               sizes: Mapping[str, dict[str, Any]], confidence: float) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        per_bench = scores.get(model, {})
        cut = {b: s["truncation"] for b, s in per_bench.items() if "truncation" in s}
        requests = sum(t["requests"] for t in cut.values())
        rows.append({"model": model, "groups": group_scores(per_bench, confidence),
                     "benchmarks": {b: s["metrics"] for b, s in per_bench.items()},
                     "truncation": cut,
                     "truncated_share": sum(t["truncated"] for t in cut.values()) / requests if requests else None,
                     **sizes.get(model, {})})
    return rows


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _cell(s: Mapping[str, Any] | None) -> str:
    if not s or s.get("value") is None:
        return "—"
    text = _pct(s["value"])
    if s.get("ci_low") is not None:
        text += f" [{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]"
    if partial(s):
        text += f" ({partial(s)})"
    return text


def _share(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f}"


def _params(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


PROTOCOL = "protocol.md"


def _link(group: str) -> str:
    return f"[{GROUP_TITLES[group]}]({PROTOCOL}#{group})"


def _ref_value(ref: Mapping[str, Any], key: str) -> str:
    return f"{ref['scores'][key]:.1f}" if key in ref["scores"] else "—"


def comparison(rows: Sequence[dict[str, Any]], references: Sequence[Mapping[str, Any]]) -> list[str]:
    """Measured against published for every reference row matched to a variant: points, Δ = measured - published."""
    by_model = {r["model"]: r for r in rows}
    matched = [ref for ref in references if ref.get("model") in by_model]
    if not matched:
        return []
    lines = ["", "Measured against published (percent; Δ = measured - published, in points):", "",
             "| variant | published row | " + " | ".join(_link(g) for g in GROUPS) + " |",
             "|---|---|" + "---|" * len(GROUPS)]
    for ref in matched:
        groups = by_model[ref["model"]]["groups"]
        cells = []
        for g in GROUPS:
            mine, theirs = groups.get(g, {}).get("value"), ref["scores"].get(g)
            if theirs is None:
                cells.append("—")
            elif mine is None:
                cells.append(f"— / {theirs:.1f}")
            else:
                mark = f" ({partial(groups[g])})" if partial(groups[g]) else ""
                cells.append(f"{100 * mine:.1f}{mark} / {theirs:.1f} (Δ {100 * mine - theirs:+.1f})")
        lines.append(f"| {ref['model']} | {ref['name']} | " + " | ".join(cells) + " |")
    return lines


def markdown(rows: Sequence[dict[str, Any]], references: Sequence[Mapping[str, Any]], confidence: float,
             allowed_truncation: float = 0.0) -> str:
    level = round(100 * confidence)
    head = ["model", *(_link(g) for g in GROUPS), "truncated", "size (MB)", "parameters"]
    lines = [f"Scores in percent with {level} % confidence intervals; groups as in the paper's Table 2 "
             "(commonsense: PIQA, WinoGrande, ARC-e, ARC-c, SIQA; coding: HumanEval and MBPP pass@1; "
             "(k/n) marks a group with only k of its n benchmarks measured). Each group links to the "
             f"protocol cards of its benchmarks ({PROTOCOL}). *truncated*: share of requests whose prompt "
             "was cut to fit the model's context.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if allowed_truncation > 0:
        lines.insert(1, f"\n**Truncated prompts allowed up to {100 * allowed_truncation:.1f} % per benchmark "
                        "(evaluate.max_truncated_share): numbers below are not comparable with published ones.**")
    for r in rows:
        cells = [r["model"], *(_cell(r["groups"].get(g)) for g in GROUPS), _share(r.get("truncated_share")),
                 _mb(r.get("size_bytes")), _params(r.get("parameters"))]
        lines.append("| " + " | ".join(cells) + " |")
    for ref in references:
        size = f"{ref['size_gb'] * 1000:.0f}" if ref.get("size_gb") else "—"
        cells = [f"{ref['name']} (published)", *(_ref_value(ref, g) for g in GROUPS), "—", size, "—"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {ref['name']}" + (f" ({ref['model']})" if ref.get("model") else "") + ": "
             + "; ".join(x for x in (ref.get("source"), ref.get("protocol")) if x) for ref in references
             if ref.get("source") or ref.get("protocol")]
    if notes:
        lines += ["", "Published rows:", "", *notes]
    lines += comparison(rows, references)
    benches = [b for b in BENCHMARKS if any(b in r["benchmarks"] for r in rows)]
    lines += ["", "Per benchmark (primary metric; code: pass@1 greedy, pass@10 from sampled completions, "
              "CodeT and LEVER: expected pass@1 of the reranked samples; after `cut`: share of truncated "
              "prompts):", "",
              "| model | " + " | ".join(f"[{b}]({PROTOCOL}#{b})" for b in benches) + " |",
              "|---|" + "---|" * len(benches)]
    for r in rows:
        cells = [r["model"]]
        for b in benches:
            m = r["benchmarks"].get(b)
            if m is None:
                cells.append("—")
                continue
            text = _cell(m.get(BENCHMARKS[b].metric))
            if "pass@10" in m:
                text += f"; pass@10 {_cell(m['pass@10'])}"
            text += "".join(f"; {title} {_cell(m[name])}" for name, title in RERANKED.items() if name in m)
            if b in r["truncation"]:
                text += f"; cut {_share(r['truncation'][b]['share'])}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    for ref in references:
        if any(b in ref["scores"] for b in benches):
            lines.append(f"| {ref['name']} (published) | " + " | ".join(_ref_value(ref, b) for b in benches) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[dict[str, Any]], references: Sequence[Mapping[str, Any]], path: Path) -> None:
    """One row per model and per published row; `<group>_measured` is "k/n" for a partial group."""
    benches = [b for b in BENCHMARKS if any(b in r["benchmarks"] for r in rows)]
    fields = ["model", "published", "reference_model", "protocol"]
    for g in GROUPS:
        fields += [g, f"{g}_stderr", f"{g}_ci_low", f"{g}_ci_high", f"{g}_measured"]
    for b in benches:
        fields += [b, f"{b}_ci_low", f"{b}_ci_high", f"{b}_truncated_share"]
        if BENCHMARKS[b].code:
            fields += [f"{b}_pass@10"]
            fields += [f"{b}_{name}{part}" for name in RERANKED for part in ("", "_ci_low", "_ci_high")]
    fields += ["truncated_share", "size_bytes", "parameters"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            row: dict[str, Any] = {"model": r["model"], "published": False, "size_bytes": r.get("size_bytes"),
                                   "parameters": r.get("parameters"), "truncated_share": r.get("truncated_share")}
            for g, s in r["groups"].items():
                row.update({g: s["value"], f"{g}_stderr": s["stderr"], f"{g}_ci_low": s["ci_low"],
                            f"{g}_ci_high": s["ci_high"],
                            f"{g}_measured": f"{len(s['members'])}/{len(s['expected'])}"})
            for b, m in r["benchmarks"].items():
                s = m.get(BENCHMARKS[b].metric, {})
                row.update({b: s.get("value"), f"{b}_ci_low": s.get("ci_low"), f"{b}_ci_high": s.get("ci_high")})
                if b in r["truncation"]:
                    row[f"{b}_truncated_share"] = r["truncation"][b]["share"]
                if BENCHMARKS[b].code and "pass@10" in m:
                    row[f"{b}_pass@10"] = m["pass@10"]["value"]
                for name in RERANKED:
                    if BENCHMARKS[b].code and name in m:
                        row.update({f"{b}_{name}{part}": m[name].get(key) for part, key in
                                    (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))})
            w.writerow(row)
        for ref in references:
            row = {"model": ref["name"], "published": True, "reference_model": ref.get("model"),
                   "protocol": ref.get("protocol"),
                   "size_bytes": int(ref["size_gb"] * 1e9) if ref.get("size_gb") else None}
            row.update({k: v / 100 for k, v in ref["scores"].items() if k in fields})
            w.writerow(row)
