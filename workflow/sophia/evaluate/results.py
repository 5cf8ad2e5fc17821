"""One benchmark's outcome from lm-eval's per-sample log: scores with uncertainty (code benchmarks
run their programs in the sandbox), the prompt-cut check, and the names MLflow gets.

Output files of one benchmark folder: `scores.json` (the documented format the report reads),
`samples.jsonl.gz` (lm-eval's per-sample log: prompt, response, target, per-item metric), for code
benchmarks `executions.jsonl` (one line per program: problem, sample, status
passed/failed/timeout/error and the reason), and `mlflow_run.json`.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sophia import tracking
from sophia.errors import EvalError
from sophia.evaluate import code, multipl_e, sandbox
from sophia.evaluate.benchmarks import Benchmark
from sophia.evaluate.protocol import MACRO
from sophia.evaluate.scoring import combine, pass_at_k, summarize
from sophia.tracking import data as tracking_data

SCORES = "scores.json"
SAMPLES = "samples.jsonl.gz"
EXECUTIONS = "executions.jsonl"


def item_scores(bench: Benchmark, samples: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Per-item values of the benchmark's metric, pooled over its tasks (BBH: size-weighted). No
    matching row is an error: a score of nothing must not reach the table as a blank."""
    values = []
    for rows in samples.values():
        for row in rows:
            if row.get("filter") == bench.filter and bench.metric in row:
                values.append(float(row[bench.metric]))
    if not values:
        seen = sorted({f"{m},{row.get('filter')}" for rows in samples.values() for row in rows
                       for m in row.get("metrics", [])})
        raise EvalError(f"{bench.name}: no sample scored metric '{bench.metric}' under filter '{bench.filter}' "
                        f"(tasks: {', '.join(sorted(samples)) or 'none'}; logged: {', '.join(seen) or 'nothing'})")
    return values


def other_metrics(samples: dict[str, list[dict[str, Any]]], primary: tuple[str, str]) -> dict[str, list[float]]:
    """Every other per-item metric lm-eval logged (acc_norm, flexible-extract, …), by `metric,filter`."""
    found: dict[str, list[float]] = {}
    for rows in samples.values():
        for row in rows:
            for m in row.get("metrics", []):
                if (m, row.get("filter")) != primary and isinstance(row.get(m), (int, float)):
                    found.setdefault(f"{m},{row.get('filter')}", []).append(float(row[m]))
    return found


def run_programs(bench: Benchmark, samples: dict[str, list[dict[str, Any]]], box: sandbox.Sandbox,
                 workers: int) -> tuple[list[dict[str, Any]], float]:
    """Execute every generated program; one record per (problem, mode, sample)."""
    jobs = []
    for task, rows in samples.items():
        mode = "greedy" if task.endswith("_greedy") else "sampled"
        for row in rows:
            for i, completion in enumerate(row["resps"][0] if _nested(row["resps"]) else row["resps"]):
                jobs.append((code.problem_id(row["doc"]), mode, i, code.program(row["doc"], completion)))
    start = time.perf_counter()
    outcomes = box.run_many([j[3] for j in jobs], workers)
    seconds = time.perf_counter() - start
    records = [{"problem": p, "mode": m, "sample": i, **o.to_dict()}
               for (p, m, i, _), o in zip(jobs, outcomes, strict=True)]
    return records, seconds


def _nested(resps: list[Any]) -> bool:
    return bool(resps) and isinstance(resps[0], list)


def code_scores(records: list[dict[str, Any]], ks: list[int], n_samples: int,
                confidence: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """pass@1 from the greedy completion; pass@k (unbiased) from the n sampled ones."""
    problems: dict[str, dict[str, Any]] = {}
    for r in records:
        p = problems.setdefault(r["problem"], {"problem": r["problem"], "greedy": None, "n": 0, "c": 0})
        if r["mode"] == "greedy":
            p["greedy"] = r["status"] == sandbox.PASSED
        else:
            p["n"] += 1
            p["c"] += r["status"] == sandbox.PASSED
    rows = list(problems.values())
    greedy = [float(p["greedy"]) for p in rows if p["greedy"] is not None]
    if not greedy:
        raise EvalError("code benchmark: no greedy completion was executed, so pass@1 (filter 'greedy') "
                        "scored nothing")
    metrics = {"pass@1": summarize(greedy, confidence)}
    if n_samples > 1:
        for k in ks:
            for p in rows:
                p[f"pass@{k}"] = pass_at_k(p["n"], p["c"], k)
            name = f"pass@{k}" if k > 1 else "pass@1_sampled"
            metrics[name] = summarize([p[f"pass@{k}"] for p in rows], confidence)
    return metrics, rows


def score(bench: Benchmark, bspec: dict[str, Any], samples: dict[str, list[dict[str, Any]]], confidence: float,
          box: sandbox.Sandbox | None, workers: int) -> dict[str, Any]:
    """Metrics with uncertainty from lm-eval's per-sample log; code benchmarks run their programs."""
    if not bench.code:
        items = item_scores(bench, samples)
        metrics = {bench.metric: summarize(items, confidence)}
        if bench.name in MACRO:  # the mean of the tasks' means; the pooled mean kept beside it
            per_task = [summarize(item_scores(bench, {t: rows}), confidence) for t, rows in sorted(samples.items())]
            metrics[f"{bench.metric}_micro"] = metrics[bench.metric]
            metrics[bench.metric] = {**combine(per_task, confidence), "n": len(items), "tasks": len(per_task)}
        for key, values in other_metrics(samples, (bench.metric, bench.filter)).items():
            metrics[key] = summarize(values, confidence)
        return {"metrics": metrics}
    if box is None:
        raise ValueError(f"{bench.name}: code benchmarks need a sandbox")
    distinct: dict[str, Any] = {}
    if bench.language is not None:  # MultiPL-E: compiled and run with the language's toolchain
        multipl_e.check_rows(bench.name, samples, bench.language)
        records, exec_seconds, dedup = multipl_e.run_programs(bench.language, samples, box, workers)
        distinct = {"distinct_programs": dedup["distinct"]}
    else:
        records, exec_seconds = run_programs(bench, samples, box, workers)
    metrics, problems = code_scores(records, bspec["k"], bspec["n_samples"], confidence)
    statuses = Counter(r["status"] for r in records)
    counts = {s: statuses.get(s, 0) for s in (sandbox.PASSED, sandbox.FAILED, sandbox.TIMEOUT, sandbox.ERROR)}
    ran = distinct.get("distinct_programs", len(records))
    return {
        "metrics": metrics, "problems": problems, "records": records,
        "executions": {"programs": len(records), **distinct, **counts, "seconds": exec_seconds,
                       "programs_per_second": ran / exec_seconds if ran and exec_seconds > 0 else None},
        "sandbox": {"isolation": box.isolation, "missing": box.missing, "workers": workers,
                    **{k: v for k, v in vars(box.limits).items()}},
    }


def check_truncation(benchmark: str, cut: dict[str, Any], allowed: float) -> None:
    """A cut prompt changes the benchmark (lm-eval only logs a warning): above the allowed share the
    job fails, naming the tasks and the fix."""
    if cut["share"] <= allowed:
        return
    tasks = ", ".join(f"{t} {v['truncated']}/{v['requests']}" for t, v in sorted(cut["per_task"].items()))
    raise EvalError(f"{benchmark}: {cut['truncated']} of {cut['requests']} requests ({100 * cut['share']:.1f} %) had "
                    f"their prompt cut to fit the model's {cut['max_length']}-token context, above "
                    f"evaluate.max_truncated_share = {allowed} ({tasks}); lower this benchmark's max_gen_toks "
                    f"(generation budgets seen: {cut['max_gen_toks']}) or allow the share on purpose")


def benchmark_dataset(benchmark: str, samples: dict[str, list[dict[str, Any]]], configs: dict[str, Any]) -> Any:
    """The items this run scored (every task's docs) as an `mlflow.data` dataset; its source is
    the task's dataset: a local hub-shaped copy, or the hub id."""
    rows = [{"task": task, "doc_id": row.get("doc_id"), "doc": row.get("doc")}
            for task, task_rows in sorted(samples.items()) for row in task_rows]
    paths = sorted({str(c.get("dataset_path")) for c in configs.values() if c.get("dataset_path")})
    source = paths[0] if len(paths) == 1 else ",".join(paths) or "lm-eval"
    if not source.startswith("/") and source != "lm-eval" and len(paths) == 1:
        source = f"hf:{source}"
    return tracking_data.from_records(rows, benchmark, source)


def model_metric_names(scores: dict[str, Any]) -> set[str]:
    """The scores themselves (`acc`, `pass_at_1`, …, not their stderr/interval/n or timings): what
    the Models tab shows per variant and benchmark."""
    return {tracking.metric_name(n.replace("@", "_at_").replace(",", ".")) for n in scores["metrics"]}


def mlflow_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """`acc`, `acc.stderr`, `acc.ci_low`, … with lm-eval's `,` and `@` mapped to names MLflow accepts."""
    out: dict[str, float] = {}
    for name, s in scores["metrics"].items():
        base = tracking.metric_name(name.replace("@", "_at_").replace(",", "."))
        for field in ("value", "stderr", "ci_low", "ci_high", "n"):
            if s.get(field) is not None:
                out[base if field == "value" else f"{base}.{field}"] = float(s[field])
    for key in ("eval_seconds", "generated_tokens", "generated_tokens_per_second", "truncated_requests",
                "truncated_share"):
        if scores.get(key) is not None:
            out[key] = float(scores[key])
    for key, value in scores.get("executions", {}).items():
        if value is not None:
            out[f"executions.{key}"] = float(value)
    for key, value in scores.get("rerank", {}).get("cost", {}).items():
        if isinstance(value, (int, float)):
            out[f"rerank.{key}"] = float(value)
    if "truncation" in scores.get("rerank", {}):
        out["rerank.truncated_share"] = float(scores["rerank"]["truncation"]["share"])
    debug = scores.get("selfdebug", {})
    for r in debug.get("rounds", []):  # what each self-debugging round cost
        for key in ("revised", "tokens", "feedback_executions", "gold_executions", "seconds"):
            out[f"selfdebug.round{r['round']}.{key}"] = float(r[key])
    for key in ("tokens", "executions"):
        if key in debug:
            out[f"selfdebug.{key}"] = float(debug[key])
    return out


def selfdebug_series(scores: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """pass@1 after each self-debugging round as one MLflow series (step = round, 0 = the samples)."""
    rounds = scores.get("selfdebug", {}).get("rounds", [])
    start = scores["metrics"].get("pass@1_sampled", {}).get("value")
    if not rounds or start is None:
        return {}
    return {"selfdebug.pass_at_1": [(0, float(start)), *((r["round"], float(r["pass@1"])) for r in rounds)]}


def write_samples(path: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for task, rows in samples.items():
            for row in rows:
                fh.write(json.dumps({"task": task, **row}, ensure_ascii=False, default=str) + "\n")
