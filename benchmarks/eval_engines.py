"""Benchmark: one base model's evaluate job through engine hf and engine vllm.

Each engine evaluates the same variants (a base model and, with `--adapter`, a LoRA adapter on it)
on the same benchmarks, through the evaluate stage itself (lm-eval, sandbox, MLflow runs to a
scratch store, no result cache). Reported per engine: engine start (hf: loading the variant's
weights, once per variant; vllm: the server's start, once for all variants), the job's wall time,
generated tokens and generated tokens per second of evaluation time, per variant and in all.

    .venv/bin/python benchmarks/eval_engines.py --model results/models/gptq --model-id gptq \\
        --adapter gptq+alpaca=results/adapters/alpaca --out benchmarks/results/eval_engines_cpu.json

On a GPU machine the same command, with `--vllm-setting gpu_memory_utilization=0.8`, measures the
GPU rows (both engines on the same card).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

from record import ROOT, save
from sophia import evaluate_vllm_job as vllm_job
from sophia import lm
from sophia.config import validate_section
from sophia.evaluate import stage

FIXTURE_ROOT = ROOT / "workflow" / "resources" / "eval" / "hub"


def eval_spec(engine: str, limit: int, samples: int, max_gen_toks: int, vllm: dict[str, Any]) -> dict[str, Any]:
    benchmarks = {"piqa": {"limit": limit}, "arc_easy": {"limit": limit},
                  "humaneval": {"limit": limit, "max_gen_toks": max_gen_toks, "n_samples": samples,
                                "k": [1, samples]}}
    return {"evaluate": {"dataset_root": str(FIXTURE_ROOT), "engine": engine, "vllm": vllm, "benchmarks": benchmarks,
                         "max_truncated_share": 1.0, "rerank": {"enabled": False}, "sandbox": {"timeout_s": 5}}}


def totals(scores: dict[str, dict[str, Any]]) -> dict[str, float]:
    tokens = sum(s.get("generated_tokens") or 0 for s in scores.values())
    seconds = sum(s["eval_seconds"] for s in scores.values())
    return {"generated_tokens": tokens, "eval_seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 1) if seconds else None}


def run_hf(spec: dict[str, Any], model: Path, variants: list[tuple[str, Path | None]], out: Path) -> dict[str, Any]:
    rows, start, t0 = [], 0.0, time.perf_counter()
    for model_id, adapter in variants:
        variant = lm.SharedVariant(model, adapter, lm.device(), loader=stage.load_model)
        t = time.perf_counter()
        variant.get()
        load = time.perf_counter() - t
        start += load
        done = stage.run_stage(spec, model_id, model, adapter, list(spec["evaluate"]["benchmarks"]), out / model_id,
                               variant=variant)
        rows.append({"variant": model_id, "load_seconds": round(load, 2), **totals(done.scores)})
    return {"engine": "hf", "engine_starts": len(variants), "engine_start_seconds": round(start, 2),
            "wall_seconds": round(time.perf_counter() - t0, 2), "variants": rows}


def run_vllm(spec: dict[str, Any], model: Path, variants: list[tuple[str, Path | None]], out: Path) -> dict[str, Any]:
    espec = validate_section(spec["evaluate"], "evaluate", "evaluate")
    adapters = {m: a for m, a in variants if a is not None}
    t0 = time.perf_counter()
    engine = vllm_job.EngineOnDemand(model, adapters, espec["vllm"], espec["seed"], out / "vllm.log")
    try:
        engine.served(variants[0][0])()  # the start, timed on its own
        done = vllm_job.run_jobs(spec, None, model, [{"model_id": m, "adapter": str(a) if a else None}
                                                     for m, a in variants],
                                 list(spec["evaluate"]["benchmarks"]), out, None, out / "vllm.log", engine=engine)
        assert engine.server is not None
        start, version = engine.server.start_seconds, engine.server.version
    finally:
        engine.close()
    rows = [{"variant": m, **totals(done[m].scores)} for m, _ in variants]
    return {"engine": "vllm", "version": version, "engine_starts": 1, "engine_start_seconds": round(start, 2),
            "wall_seconds": round(time.perf_counter() - t0, 2), "variants": rows}


def table(runs: list[dict[str, Any]], device: str) -> str:
    lines = ["| device | engine | engine starts | start s | job wall s | generated tokens | tokens/s (eval time) |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        tok = sum(v["generated_tokens"] for v in r["variants"])
        sec = sum(v["eval_seconds"] for v in r["variants"])
        lines.append(f"| {device} | {r['engine']} | {r['engine_starts']} | {r['engine_start_seconds']} | "
                     f"{r['wall_seconds']} | {tok} | {tok / sec:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="base (or GPTQ) model directory")
    p.add_argument("--model-id", default="base", help="the base variant's name")
    p.add_argument("--adapter", action="append", default=[], help="ID=DIR: a LoRA variant on --model (repeat)")
    p.add_argument("--limit", type=int, default=8, help="items per benchmark")
    p.add_argument("--samples", type=int, default=10, help="HumanEval samples per problem")
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--vllm-setting", action="append", default=[],
                   help="KEY=VALUE of evaluate.vllm (JSON values), e.g. gpu_memory_utilization=0.05")
    p.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_engines_cpu.json")
    args = p.parse_args()
    variants: list[tuple[str, Path | None]] = [(args.model_id, None)]
    variants += [(a.split("=", 1)[0], Path(a.split("=", 1)[1])) for a in args.adapter]
    vllm = {"gpu_memory_utilization": 0.05, "dtype": "float32"}
    vllm.update({k: json.loads(v) for k, v in (s.split("=", 1) for s in args.vllm_setting)})
    device = str(lm.device())
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        for name in args.engines:
            spec = eval_spec(name, args.limit, args.samples, args.max_gen_toks, vllm)
            run = run_hf if name == "hf" else run_vllm
            runs.append(run(spec, args.model, variants, Path(tmp) / name))
            print(json.dumps(runs[-1]), flush=True)
    result = {"device": device, "model": str(args.model), "variants": [m for m, _ in variants],
              "settings": {"limit": args.limit, "samples": args.samples, "max_gen_toks": args.max_gen_toks,
                           "benchmarks": ["piqa", "arc_easy", "humaneval"], "vllm": vllm},
              "runs": runs}
    save(args.out, result, name="eval_engines", params={"device": device, "limit": args.limit},
         metrics={f"{r['engine']}.wall_seconds": r["wall_seconds"] for r in runs},
         markdown_body=table(runs, device), log=False)


if __name__ == "__main__":  # vLLM's server is a child process
    main()
