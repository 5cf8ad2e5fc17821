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
    of its five tasks and coding of HumanEval and MBPP pass@1; `members` says which were measured."""
    out = {}
    for group in GROUPS:
        names = [b for b, bench in BENCHMARKS.items() if bench.group == group]
        present = [b for b in names if b in per_bench]
        if not present:
            continue
        combined = combine([per_bench[b]["score"] for b in present], confidence)
        out[group] = {**combined, "members": present, "expected": names}
    return out


def build_rows(scores: Mapping[str, Mapping[str, dict[str, Any]]], models: Sequence[str],
               sizes: Mapping[str, dict[str, Any]], confidence: float) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        per_bench = scores.get(model, {})
        rows.append({"model": model, "groups": group_scores(per_bench, confidence),
                     "benchmarks": {b: s["metrics"] for b, s in per_bench.items()}, **sizes.get(model, {})})
    return rows


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _cell(s: Mapping[str, Any] | None) -> str:
    if not s or s.get("value") is None:
        return "—"
    text = _pct(s["value"])
    if s.get("ci_low") is not None:
        text += f" [{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]"
    if "members" in s and len(s["members"]) < len(s["expected"]):
        text += f" ({len(s['members'])}/{len(s['expected'])})"
    return text


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f}"


def _params(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def markdown(rows: Sequence[dict[str, Any]], reference: Mapping[str, Any] | None, confidence: float) -> str:
    level = round(100 * confidence)
    head = ["model", *(GROUP_TITLES[g] for g in GROUPS), "size (MB)", "parameters"]
    lines = [f"Scores in percent with {level} % confidence intervals; groups as in the paper's Table 2 "
             "(commonsense: PIQA, WinoGrande, ARC-e, ARC-c, SIQA; coding: HumanEval and MBPP pass@1; "
             "(k/n) marks a group with only k of its n benchmarks measured).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], *(_cell(r["groups"].get(g)) for g in GROUPS), _mb(r.get("size_bytes")),
                 _params(r.get("parameters"))]
        lines.append("| " + " | ".join(cells) + " |")
    if reference:
        ref = reference["scores"]
        cells = [f"{reference['name']} (published)",
                 *(f"{ref[g]:.1f}" if g in ref else "—" for g in GROUPS), "—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
        if reference.get("source"):
            lines += ["", f"Published scores: {reference['source']}"]
    benches = [b for b in BENCHMARKS if any(b in r["benchmarks"] for r in rows)]
    lines += ["", "Per benchmark (primary metric; code: pass@1 greedy, pass@10 from sampled completions, "
              "CodeT and LEVER: expected pass@1 of the reranked samples):", "",
              "| model | " + " | ".join(benches) + " |", "|---|" + "---|" * len(benches)]
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
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if reference and any(b in reference["scores"] for b in benches):
        ref = reference["scores"]
        cells = [f"{reference['name']} (published)", *(f"{ref[b]:.1f}" if b in ref else "—" for b in benches)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[dict[str, Any]], reference: Mapping[str, Any] | None, path: Path) -> None:
    benches = [b for b in BENCHMARKS if any(b in r["benchmarks"] for r in rows)]
    fields = ["model", "published"]
    for g in GROUPS:
        fields += [g, f"{g}_stderr", f"{g}_ci_low", f"{g}_ci_high"]
    for b in benches:
        fields += [b, f"{b}_ci_low", f"{b}_ci_high"]
        if BENCHMARKS[b].code:
            fields += [f"{b}_pass@10"]
            fields += [f"{b}_{name}{part}" for name in RERANKED for part in ("", "_ci_low", "_ci_high")]
    fields += ["size_bytes", "parameters"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            row: dict[str, Any] = {"model": r["model"], "published": False, "size_bytes": r.get("size_bytes"),
                                   "parameters": r.get("parameters")}
            for g, s in r["groups"].items():
                row.update({g: s["value"], f"{g}_stderr": s["stderr"], f"{g}_ci_low": s["ci_low"],
                            f"{g}_ci_high": s["ci_high"]})
            for b, m in r["benchmarks"].items():
                s = m.get(BENCHMARKS[b].metric, {})
                row.update({b: s.get("value"), f"{b}_ci_low": s.get("ci_low"), f"{b}_ci_high": s.get("ci_high")})
                if BENCHMARKS[b].code and "pass@10" in m:
                    row[f"{b}_pass@10"] = m["pass@10"]["value"]
                for name in RERANKED:
                    if BENCHMARKS[b].code and name in m:
                        row.update({f"{b}_{name}{part}": m[name].get(key) for part, key in
                                    (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))})
            w.writerow(row)
        if reference:
            row = {"model": reference["name"], "published": True}
            row.update({k: v / 100 for k, v in reference["scores"].items() if k in fields})
            w.writerow(row)
