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
from sophia.report import compare

GROUP_TITLES = {"bbh": "BBH", "commonsense": "Commonsense", "math": "Math", "coding": "Coding",
                "coding_langs": "Coding (curriculum languages)"}
# Code benchmarks' reranked top-1 scores (evaluate.rerank), shown after pass@10 beside their fair
# baseline: the expected pass@1 of one random sample from the same n samples they rerank (not greedy).
RERANKED = {"pass@1_sampled": "pass@1 sampled", "codet_pass@1": "CodeT", "lever_pass@1": "LEVER"}
SELFDEBUG = "selfdebug_pass@1_round"  # + r: pass@1 of the same samples after r self-debugging rounds


# Shown only where some row measured it: a study without MultiPL-E gets no column of dashes for it.
OPTIONAL_GROUPS = frozenset({"coding_langs"})


def shown_groups(rows: Sequence[Mapping[str, Any]], references: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The paper's four groups always; an optional group where a row or a published row has it."""
    return [g for g in GROUPS if g not in OPTIONAL_GROUPS or any(g in r["groups"] for r in rows)
            or any(g in ref["scores"] for ref in references)]


def _rounds(m: Mapping[str, Any]) -> list[int]:
    return sorted(int(k.removeprefix(SELFDEBUG)) for k in m if k.startswith(SELFDEBUG))


def _reranked_text(m: Mapping[str, Any]) -> str:
    """pass@1 sampled, CodeT, LEVER (marked where its verifier was trained on another benchmark),
    then pass@1 after each self-debugging round."""
    text = ""
    for name, title in RERANKED.items():
        if name in m:
            transfer = m[name].get("transfer_from")
            text += f"; {title}{f' ⚑ transfer from {transfer}' if transfer else ''} {_cell(m[name])}"
    for r in _rounds(m):
        s = m[SELFDEBUG + str(r)]
        cost = f" ({s['tokens']} tokens, {s['executions']} executions)" if "tokens" in s else ""
        text += f"; self-debug round {r} {_cell(s)}{cost}"
    return text


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
                     "protocol": {b: s["protocol"] for b, s in per_bench.items() if s.get("protocol")},
                     "verifiers": {b: s["rerank"]["verifier_held_out"] for b, s in per_bench.items()
                                   if (s.get("rerank") or {}).get("verifier_held_out")},
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


def flags(row: Mapping[str, Any], group: str) -> list[str]:
    """What a group cell holds beyond its name: BBH subtasks whose budget is too short for their chain
    of thought (the benchmark is then, in effect, the others)."""
    out = []
    for b in [b for b, bench in BENCHMARKS.items() if bench.group == group]:
        card = row.get("protocol", {}).get(b) or {}
        short = card.get("short_budget_subtasks") or {}
        if short:
            total = len(card["tasks"]) if isinstance(card.get("tasks"), list) else int(str(card["tasks"]).split()[0])
            out.append(", ".join(f"{t} at {n} tokens" for t, n in short.items())
                       + f": {b.upper()} {total - len(short)}/{total} in effect")
    return out


def _group_cell(row: Mapping[str, Any], group: str) -> str:
    found = flags(row, group)
    return _cell(row["groups"].get(group)) + (" ⚑ " + "; ".join(found) if found else "")


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


def _ref_value(ref: Mapping[str, Any], key: str, confidence: float | None = None) -> str:
    if key not in ref["scores"]:
        return "—"
    span = compare.published_interval(ref, key, confidence) if confidence else None
    return f"{ref['scores'][key]:.1f}" + (f" [{span[0]:.1f}, {span[1]:.1f}]" if span else "")


def capability(rows: Sequence[dict[str, Any]], forgetting: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """One bold line when some groups score zero for every variant: those columns measure the model's
    size, not the variants; what the run can tell apart is said with it."""
    zero = [g for g in GROUPS if any(g in r["groups"] for r in rows)
            and all(r["groups"][g]["value"] == 0 for r in rows if g in r["groups"])]
    if not zero:
        return None
    base = next((r for r in rows if r["model"] == "base"), rows[0])
    size = f"{_params(base.get('parameters'))}-parameter " if base.get("parameters") else ""
    names = ", ".join(GROUP_TITLES[g] for g in zero)
    text = (f"**What this table can and cannot show: the {size}{base['model']} model and every variant of it score "
            f"0 on {names}: they solve none of these problems, so these columns cannot tell the variants apart; "
            "read them as the protocol running, not as a finding")
    steps = [e["vs_previous"] for e in forgetting if e.get("vs_previous") and e["dataset"].count("/") == 1]
    if steps:
        shown = sum(1 for d in steps if d["ci_low"] is not None and (d["ci_low"] > 0 or d["ci_high"] < 0))
        text += (f"; what each curriculum step changed shows in the held-out losses below ({shown} of {len(steps)} "
                 "paired differences against the previous step exclude 0)")
    return text + ".**"


def markdown(rows: Sequence[dict[str, Any]], references: Sequence[Mapping[str, Any]], confidence: float,
             allowed_truncation: float = 0.0, forgetting: Sequence[Mapping[str, Any]] = ()) -> str:
    level = round(100 * confidence)
    groups = shown_groups(rows, references)
    head = ["model", *(_link(g) for g in groups), "truncated", "size (MB)", "parameters"]
    lines = [f"Scores in percent with {level} % confidence intervals; groups as in the paper's Table 2 "
             "(commonsense: PIQA, WinoGrande, ARC-e, ARC-c, SIQA; coding: HumanEval and MBPP pass@1; coding in "
             "the curriculum languages: MultiPL-E's HumanEval and MBPP pass@1 in C++, Java, Rust, Ruby and Bash; "
             "(k/n) marks a group with only k of its n benchmarks measured). Each group links to the "
             f"protocol cards of its benchmarks ({PROTOCOL}). *truncated*: share of requests whose prompt "
             "was cut to fit the model's context; ⚑ names what a cell holds beyond its name. Micro or macro mean "
             f"per group: the group's protocol card.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    line = capability(rows, forgetting)
    if line:
        lines[1:1] = ["", line]
    if allowed_truncation > 0:
        lines.insert(1, f"\n**Truncated prompts allowed up to {100 * allowed_truncation:.1f} % per benchmark "
                        "(evaluate.max_truncated_share): numbers below are not comparable with published ones.**")
    for r in rows:
        cells = [r["model"], *(_group_cell(r, g) for g in groups), _share(r.get("truncated_share")),
                 _mb(r.get("size_bytes")), _params(r.get("parameters"))]
        lines.append("| " + " | ".join(cells) + " |")
    for ref in references:
        size = f"{ref['size_gb'] * 1000:.0f}" if ref.get("size_gb") else "—"
        cells = [f"{ref['name']} (published)", *(_ref_value(ref, g, confidence) for g in groups), "—", size, "—"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {ref['name']}" + (f" ({ref['model']})" if ref.get("model") else "") + ": "
             + "; ".join(x for x in (ref.get("source"), ref.get("protocol")) if x) for ref in references
             if ref.get("source") or ref.get("protocol")]
    if notes:
        lines += ["", "Published rows:", "", *notes]
    lines += compare.comparison(rows, references, confidence, PROTOCOL)
    benches = [b for b in BENCHMARKS if any(b in r["benchmarks"] for r in rows)]
    lines += ["", "Per benchmark (primary metric; code: pass@1 greedy, pass@10 from sampled completions, "
              "pass@1 sampled: expected pass@1 of one random sample, the baseline CodeT and LEVER rerank from; "
              "CodeT and LEVER: expected pass@1 of the reranked samples (LEVER ⚑ transfer: its verifier was "
              "trained on another benchmark's train split); self-debug round r: pass@1 of the same samples "
              "after r rounds of revision from execution feedback; after `cut`: share of truncated prompts):", "",
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
            text += _reranked_text(m)
            if b in r["truncation"]:
                text += f"; cut {_share(r['truncation'][b]['share'])}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    for ref in references:
        if any(b in ref["scores"] for b in benches):
            lines.append(f"| {ref['name']} (published) | "
                         + " | ".join(_ref_value(ref, b, confidence) for b in benches) + " |")
    return "\n".join(lines + verifier_lines(rows)) + "\n"


def verifier_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Each model's LEVER verifier measured on held-out MBPP train problems, the LM verifier beside
    the feature model where both were measured."""
    found = [(r["model"], next(iter(r["verifiers"].values()))) for r in rows if r.get("verifiers")]
    if not found:
        return []
    lines = ["", "LEVER's verifier of each model on held-out MBPP train problems (AUC; reranked pass@1: "
             "LEVER's pick on those problems; seconds to train and score):", "",
             "| model | verifier | AUC | reranked pass@1 | seconds |", "|---|---|---|---|---|"]
    for model, held in found:
        for name, h in held.items():
            auc = "—" if h.get("auc") is None else f"{h['auc']:.3f}"
            seconds = "—" if h.get("seconds") is None else f"{h['seconds']:.1f}"
            lines.append(f"| {model} | {name} | {auc} | {_pct(h.get('reranked_pass@1'))} | {seconds} |")
    return lines


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
            rounds = sorted({n for r in rows if b in r["benchmarks"] for n in _rounds(r["benchmarks"][b])})
            fields += [f"{b}_{SELFDEBUG}{n}{part}" for n in rounds for part in ("", "_ci_low", "_ci_high")]
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
                for name in [*RERANKED, *(SELFDEBUG + str(n) for n in _rounds(m))]:
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
