"""Stage function: one model variant x one benchmark → results/eval/{model}/{benchmark}/ + one
MLflow run.

Output folder: `scores.json` (the documented format the report reads), `samples.jsonl.gz` (lm-eval's
per-sample log: prompt, response, target, per-item metric), for code benchmarks `executions.jsonl`
(one line per program: problem, sample, status passed/failed/timeout/error and the reason), and
`mlflow_run.json`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from sophia import lm, tracking, tracking_data
from sophia.atomic import atomic_dir
from sophia.config import check_pass_at_k, validate_section
from sophia.errors import ConfigError, EvalError, ModelError
from sophia.evaluate import code, context, harness, protocol, rerank, sandbox
from sophia.evaluate.benchmarks import BENCHMARKS, Benchmark
from sophia.evaluate.scoring import pass_at_k, summarize

log = logging.getLogger(__name__)
SCORES = "scores.json"
SAMPLES = "samples.jsonl.gz"
EXECUTIONS = "executions.jsonl"


def load_model(model_dir: Path, adapter: Path | None, dev: torch.device) -> tuple[Any, Any]:
    """The variant as it is served: base or GPTQ weights, plus the curriculum's LoRA adapter."""
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir}: no config.json, not a model directory")
    model, tok = lm.load(model_dir, dev)
    if adapter is not None:
        from peft import PeftModel

        if not (adapter / "adapter_config.json").is_file():
            raise ModelError(f"{adapter}: no adapter_config.json, not a LoRA adapter directory")
        model = PeftModel.from_pretrained(model, adapter).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


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
        metrics = {bench.metric: summarize(item_scores(bench, samples), confidence)}
        for key, values in other_metrics(samples, (bench.metric, bench.filter)).items():
            metrics[key] = summarize(values, confidence)
        return {"metrics": metrics}
    if box is None:
        raise ValueError(f"{bench.name}: code benchmarks need a sandbox")
    records, exec_seconds = run_programs(bench, samples, box, workers)
    metrics, problems = code_scores(records, bspec["k"], bspec["n_samples"], confidence)
    statuses = Counter(r["status"] for r in records)
    counts = {s: statuses.get(s, 0) for s in (sandbox.PASSED, sandbox.FAILED, sandbox.TIMEOUT, sandbox.ERROR)}
    return {
        "metrics": metrics, "problems": problems, "records": records,
        "executions": {"programs": len(records), **counts, "seconds": exec_seconds,
                       "programs_per_second": len(records) / exec_seconds if records else None},
        "sandbox": {"isolation": box.isolation, "missing": box.missing, "workers": workers,
                    **{k: v for k, v in vars(box.limits).items()}},
    }


def run_stage(spec: dict[str, Any], model_id: str, model_dir: Path, adapter: Path | None, benchmark: str,
              out: Path, verifier: Path | None = None) -> dict[str, Any]:
    espec = validate_section(spec["evaluate"], "evaluate", "evaluate")
    if benchmark not in espec["benchmarks"]:
        raise ConfigError(f"evaluate.benchmarks: '{benchmark}' is not configured (have: "
                          f"{', '.join(espec['benchmarks'])})")
    bench = BENCHMARKS[benchmark]
    bspec = espec["benchmarks"][benchmark]
    root = Path(espec["dataset_root"]) if espec["dataset_root"] else None
    box = None
    if bench.code:
        check_pass_at_k(benchmark, bspec)  # before any generation
        sb = espec["sandbox"]
        isolation = sandbox.resolve_isolation(sb["isolation"], sb["allow_unisolated"])
        box = sandbox.Sandbox(sandbox.Limits(timeout_s=sb["timeout_s"], memory_mb=sb["memory_mb"],
                                             max_processes=sb["max_processes"], disk_mb=sb["disk_mb"]),
                              isolation)
        box.self_test()
    dev = lm.device()
    inputs: dict[str, Path] = {"model": model_dir}
    if adapter is not None:
        inputs["adapter"] = adapter
    with tracking.stage_run("evaluate", f"{model_id}:{benchmark}", {"model": model_id, "benchmark": benchmark,
                                                                    "evaluate": espec}, inputs=inputs) as run, \
            atomic_dir(out) as tmp:
        model, tok = load_model(model_dir, adapter, dev)
        start = time.perf_counter()
        lm_obj = harness.hf_lm(model, tok, espec["batch_size"])
        res = harness.evaluate(lm_obj, bench, bspec, root, espec["seed"], confirm_unsafe_code=bench.code)
        seconds = time.perf_counter() - start
        samples = res["samples"]
        n_gen = context.generated_tokens(samples, tok)
        cut = context.truncation(samples, lm_obj)
        log.info("%s on %s: %d of %d requests truncated to fit %d tokens (%.1f %%)", model_id, benchmark,
                 cut["truncated"], cut["requests"], cut["max_length"], 100 * cut["share"])
        check_truncation(benchmark, cut, espec["max_truncated_share"])
        limits = vars(box.limits) if box else None
        scores: dict[str, Any] = {
            "model": model_id, "benchmark": benchmark, "group": bench.group, "primary": bench.metric,
            "device": str(dev), "dataset_root": str(root) if root else None, "settings": bspec,
            "tasks": sorted(samples), "n_shot": res.get("n-shot", {}),
            "lm_eval_results": res["results"], "lm_eval_version": res.get("lm_eval_version"),
            "max_length": cut["max_length"], "truncation": {**cut, "allowed": espec["max_truncated_share"]},
            "truncated_requests": cut["truncated"], "truncated_share": cut["share"],
            "execution_limits": limits,
            "eval_seconds": seconds, "generated_tokens": n_gen,
            "generated_tokens_per_second": n_gen / seconds if n_gen else None,
        }
        result = score(bench, bspec, samples, espec["confidence"], box, espec["sandbox"]["workers"])
        records = result.pop("records", None)
        scores.update(result)
        if records is not None:  # CodeT and LEVER reranking of the sampled solutions
            rerank.attach(scores, tmp, samples, records, model, tok, box, espec, verifier)
            with open(tmp / EXECUTIONS, "w", encoding="utf-8") as fh:
                for r in records:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        scores["score"] = scores["metrics"][bench.metric]
        scores["protocol"] = protocol.card(bench, bspec, res, scores["score"]["n"], cut,
                                           espec["max_truncated_share"], limits, scores["dataset_root"])
        write_samples(tmp / SAMPLES, samples)
        (tmp / SCORES).write_text(json.dumps(scores, indent=2, default=str) + "\n", encoding="utf-8")
        run.write_record(tmp, "evaluate", f"{model_id}:{benchmark}")
        # Filed under the variant's LoggedModel and the benchmark set: the Models tab's comparison.
        logged_model = tracking.model_id_of(adapter or model_dir, model_id)
        bench_set = benchmark_dataset(benchmark, samples, res.get("configs") or {})
        run.log_datasets([(bench_set, "evaluation")], model_ids=(logged_model,) if logged_model else ())
        metrics = mlflow_metrics(scores)
        scored = {k: v for k, v in metrics.items() if k in model_metric_names(scores)}
        run.log_metrics({k: v for k, v in metrics.items() if k not in scored})
        run.log_metrics(scored, model_id=logged_model, dataset=bench_set)
        run.log_params({**protocol.params(scores["protocol"]),
                        **{f"execution.{k}": v for k, v in (limits or {}).items()}})
        s = scores["score"]
        interval = (f"{round(100 * espec['confidence'])} % interval {s['ci_low']:.3f}-{s['ci_high']:.3f}, "
                    if s.get("ci_low") is not None else "")
        value = "n/a" if s["value"] is None else f"{s['value']:.3f}"
        run.describe(f"`{model_id}` on {benchmark}: {bench.metric} = {value} ({interval}n = {s['n']}) "
                     f"in {seconds:.0f} s.",
                     {"score": value, "n": s["n"], "truncated_requests": scores["truncated_requests"]})
        run.set_tags({"sophia.model": model_id, "sophia.benchmark": benchmark, "sophia.group": bench.group,
                      **({"sophia.sandbox.isolation": box.isolation} if box else {})})
        tracking.log_output(run, tmp, out, (SCORES, SAMPLES, EXECUTIONS))
    s = scores["score"]
    log.info("%s on %s: %s = %s (n=%d) in %.1f s", model_id, benchmark, bench.metric, s["value"], s["n"], seconds)
    return scores


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
    return out


def write_samples(path: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for task, rows in samples.items():
            for row in rows:
                fh.write(json.dumps({"task": task, **row}, ensure_ascii=False, default=str) + "\n")


def main() -> None:
    from sophia.cli import load_spec, parser

    p: argparse.ArgumentParser = parser("Evaluate one model variant on one benchmark (stage evaluate).")
    p.add_argument("--model-id", required=True, help="variant name: base, gptq or gptq+<curriculum>")
    p.add_argument("--model", required=True, type=Path, help="base or GPTQ model directory")
    p.add_argument("--adapter", type=Path, help="LoRA adapter directory applied on top of --model")
    p.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--verifier", type=Path, help="the verifier stage's output, for LEVER (code benchmarks)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_stage(load_spec(args.spec), args.model_id, args.model, args.adapter, args.benchmark, args.out,
              args.verifier)
