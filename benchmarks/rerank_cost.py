"""Benchmark: what CodeT/LEVER reranking costs, and what the execution cache saves on a rerun.

Runs the verifier stage and the HumanEval and MBPP evaluations of one model with a config's
settings (evaluate.rerank, verifier), three times over one fresh cache: cold, an identical rerun,
and a rerun with twice the test completions (`n_tests`). Reports per run: sandbox processes,
executed and cached (solution, test) pairs, cache hit rate, reranking wall time and the whole
job's. Writes a JSON file and logs one MLflow run (experiment `sophia-benchmarks` unless
MLFLOW_EXPERIMENT_NAME says otherwise).

    .venv/bin/python benchmarks/rerank_cost.py --model results/models/base --config config.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import torch
import yaml
from sophia import tracking
from sophia.config import validate
from sophia.evaluate import stage
from sophia.verifier import stage as vstage


def evaluate(spec: dict, model: Path, verifier: Path, work: Path, tag: str) -> list[dict]:
    rows = []
    for bench in ("humaneval", "mbpp"):
        start = time.perf_counter()
        scores = stage.run_stage(spec, "base", model, None, bench, work / tag / bench, verifier)
        cost = scores["rerank"]["cost"]
        rows.append({"run": tag, "benchmark": bench, "job_seconds": time.perf_counter() - start,
                     "valid_tests": scores["rerank"]["valid_tests"],
                     "problems": scores["metrics"]["pass@1"]["n"], **cost,
                     **{m: scores["metrics"][m]["value"] for m in ("pass@1", "codet_pass@1", "lever_pass@1")}})
        print(json.dumps(rows[-1]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("results/models/base"))
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rerank_cost.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = validate(yaml.safe_load(args.config.read_text()))
    with tempfile.TemporaryDirectory(prefix="rerank-cost-") as tmp:
        work = Path(tmp)
        espec = {k: v for k, v in cfg["evaluate"].items() if k != "models"}
        espec["benchmarks"] = {b: espec["benchmarks"][b] for b in ("humaneval", "mbpp")}
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
              "verifier_settings": cfg["verifier"], "verifier": verifier, "evaluations": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    with tracking.stage_run("benchmark", "rerank_cost", {"model": str(args.model), "config": str(args.config)}) as run:
        for r in rows:
            prefix = f"{r['run']}.{r['benchmark']}"
            run.log_metrics({f"{prefix}.{k}": float(r[k]) for k in ("processes", "executed_tests", "cached_tests",
                                                                    "seconds", "wall_seconds", "job_seconds")})
            if r["cache_hit_rate"] is not None:
                run.log_metrics({f"{prefix}.cache_hit_rate": r["cache_hit_rate"]})
        run.log_artifact(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
