"""The protocol card of one benchmark run: everything a reader needs to tell whether two numbers
were measured the same way (task, lm-eval version, split, items and limit, shots, generation
budget, stop strings, the filter and metric that make the score, execution limits, truncation),
plus the CPU caps (item limits, subtask subsets, short generation budgets) still in force."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sophia.evaluate import languages
from sophia.evaluate.benchmarks import BENCHMARKS, Benchmark, bbh_subtasks

# HFLM's own generation budget when a task sets none; lm-eval's tasks (BBH and HumanEval: 1024)
# never ask for less, so a smaller configured budget is a cap, not a protocol.
MIN_FULL_GEN_TOKS = 256


def cpu_caps(name: str, bspec: Mapping[str, Any]) -> list[str]:
    """Settings that shrink a benchmark below its published protocol (empty for a full run).
    Per-subtask BBH budgets are not caps: they fit a prompt into the model's context."""
    caps = []
    if bspec.get("limit"):
        caps.append(f"limit={bspec['limit']} items per task")
    if bspec.get("subtasks"):
        caps.append(f"subtasks={len(bspec['subtasks'])} of {len(bbh_subtasks())}")
    if bspec.get("max_gen_toks") and bspec["max_gen_toks"] < MIN_FULL_GEN_TOKS:
        caps.append(f"max_gen_toks={bspec['max_gen_toks']} < {MIN_FULL_GEN_TOKS}")
    return caps


def short_budgets(bspec: Mapping[str, Any]) -> dict[str, int]:
    """BBH subtasks whose own generation budget is below MIN_FULL_GEN_TOKS: their chain of thought
    cannot reach its answer (geometric_shapes at 24 tokens scores as wrong), so the benchmark is, in
    effect, the other subtasks; the table flags the cell."""
    return {t: n for t, n in sorted((bspec.get("subtask_max_gen_toks") or {}).items()) if n < MIN_FULL_GEN_TOKS}


# How a benchmark's items become its score, and a group's benchmarks the group's score. Chosen per
# group: BBH as Suzgun et al. report it (the mean of its subtasks' accuracies, so a large subtask does
# not outweigh a small one), the other benchmarks over their items, commonsense and coding as the
# paper averages them (each benchmark counts once, whatever its size).
MACRO = frozenset({"bbh"})  # benchmarks scored as the mean of their tasks' means
AGGREGATION = {
    "bbh": "macro: the mean of the subtasks' accuracies (as Suzgun et al. report BBH); the micro mean over "
           "items is kept as exact_match_micro",
    "commonsense": "macro: the unweighted mean of PIQA, WinoGrande, ARC-e, ARC-c and SIQA (each a micro mean "
                   "over its items), as the paper averages the group",
    "math": "micro: the mean over GSM8k's items",
    "coding": "macro: the unweighted mean of HumanEval and MBPP pass@1 (each a micro mean over its problems)",
    "coding_langs": "macro: the unweighted mean of MultiPL-E's HumanEval and MBPP pass@1 in C++, Java, Rust, Ruby "
                    "and Bash (each a micro mean over its problems)",
}


def _distinct(values: Sequence[Any]) -> Any:
    """One value when all tasks agree (the usual case), else the sorted distinct values."""
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out[0] if len(out) == 1 else out


def card(bench: Benchmark, bspec: Mapping[str, Any], res: Mapping[str, Any], n_items: int,
         truncation: Mapping[str, Any], max_share: float, limits: Mapping[str, Any] | None,
         dataset_root: str | None) -> dict[str, Any]:
    """The card of one evaluate run, from lm-eval's own resolved task configs."""
    configs = res.get("configs", {})
    tasks = sorted(configs)
    gen = [configs[t].get("generation_kwargs") or {} for t in tasks]
    splits = [configs[t].get("test_split") or configs[t].get("validation_split") for t in tasks]
    shots = res.get("n-shot", {})
    return {
        "benchmark": bench.name,
        "group": bench.group,
        "tasks": tasks if len(tasks) <= 3 else f"{len(tasks)} tasks: {tasks[0]} … {tasks[-1]}",
        "lm_eval_version": res.get("lm_eval_version"),
        "dataset": dataset_root or "hub (the task's own dataset_path)",
        "split": _distinct(splits) if splits else None,
        "items_scored": n_items,
        "limit": bspec.get("limit"),
        "shots": _distinct([shots[t] for t in tasks if t in shots]) if shots else None,
        "max_gen_toks": truncation.get("max_gen_toks") or None,
        "stop": _distinct([g.get("until") for g in gen]) if any(gen) else None,
        "score": f"{bench.metric} ({'greedy completion, sandbox' if bench.code else 'filter ' + bench.filter})",
        "execution_limits": dict(limits) if limits else None,
        "context_tokens": truncation.get("max_length"),
        "truncated_share": truncation.get("share"),
        "truncated_allowed": max_share,
        "cpu_caps": cpu_caps(bench.name, bspec) or None,
        "short_budget_subtasks": short_budgets(bspec) or None,
        "aggregate": "macro over subtasks" if bench.name in MACRO else "micro over items",
        "toolchain": languages.version(languages.LANGUAGES[bench.language]) if bench.language else None,
    }


def execution_in_the_loop(scores: Mapping[str, Any]) -> dict[str, Any]:
    """A code benchmark's reranking and self-debugging settings: how CodeT scored, which LEVER
    verifier reranked and whether it is a transfer result (trained on another benchmark's train
    split), the self-debugging rounds and their feedback template."""
    out: dict[str, Any] = {}
    rr = scores.get("rerank") or {}
    if rr.get("settings"):
        s = rr["settings"]
        out["reranking"] = (f"CodeT: {s['n_tests']} test completions x {s['max_asserts']} asserts, "
                            f"weight {s['weight']}, {s['test_timeout_s']:g} s per test; engine {rr.get('engine')}")
        lever = scores.get("metrics", {}).get("lever_pass@1")
        if lever is not None:
            transfer = lever.get("transfer_from")
            out["lever"] = (f"verifier {rr.get('verifier_kind')}"
                            + (f"; transfer result (verifier trained on {transfer})" if transfer else ""))
    sd = scores.get("selfdebug") or {}
    if sd.get("settings"):
        settings = sd["settings"]
        out["selfdebug"] = f"{settings['rounds']} rounds, greedy revisions; template: {settings['template']}"
    return out


def params(card_: Mapping[str, Any]) -> dict[str, str]:
    """The card as MLflow params (`protocol.<field>`), every value a string."""
    return {f"protocol.{k}": str(v) for k, v in card_.items() if v is not None}


FIELDS = ("tasks", "lm_eval_version", "dataset", "split", "items_scored", "limit", "shots", "max_gen_toks",
          "stop", "score", "aggregate", "toolchain", "execution_limits", "context_tokens", "truncated_share",
          "truncated_allowed", "cpu_caps", "short_budget_subtasks", "reranking", "lever", "selfdebug")


def _fmt(field: str, v: Any) -> str:
    if v is None:
        return "—"
    if field in ("truncated_share", "truncated_allowed"):
        return f"{100 * v:.1f} %"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(k, x) if isinstance(x, list) else x}" for k, x in v.items())
    if isinstance(v, list) and v and isinstance(v[0], dict):  # a language's steps
        return "; ".join(", ".join(f"{k} {x}" for k, x in d.items()) for d in v)
    if isinstance(v, list) and field == "stop":
        return " ".join(f"`{s!r}`" for s in v)
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return str(v).replace("|", "\\|").replace("\n", "\\n")


def markdown(cards: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """benchmark → model → card, as one section per benchmark (anchor = the benchmark name); a
    field that differs between models is shown per model, so unequal protocols stand out."""
    lines = ["# Protocol cards", "",
             "How every number in table.md was measured. A field that differs between models is listed "
             "per model.", ""]
    anchored: set[str] = set()
    for name in (b for b in BENCHMARKS if b in cards):
        per_model = cards[name]
        group = BENCHMARKS[name].group
        if group not in anchored:  # the table's group links land on the first member
            if group != name:
                lines.append(f'<a id="{group}"></a>')
            lines += ["", f"**Group {group}**: {AGGREGATION[group]}.", ""]
        anchored.add(group)
        lines += [f'<a id="{name}"></a>', "", f"## {name} ({group})", "",
                  "| field | value |", "|---|---|"]
        for field in FIELDS:
            values = {m: _fmt(field, c.get(field)) for m, c in per_model.items()}
            if len(set(values.values())) == 1:
                text = next(iter(values.values()))
            else:
                text = "; ".join(f"{m}: {v}" for m, v in values.items())
            lines.append(f"| {field} | {text} |")
        lines.append("")
    return "\n".join(lines)
