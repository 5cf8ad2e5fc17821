"""`sophia serve --bench`: what a user of `sophia serve` waits for. Tokens/s and time to first token
of every GGUF file in a gguf stage folder, through the serving engine (queue, llama.cpp sampler,
stop handling: everything but HTTP), against PyTorch `generate` on the float model, same prompts,
greedy. Writes JSON and logs one MLflow run (experiment sophia-benchmarks unless set)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
from pathlib import Path
from typing import Any

from sophia import prompt, tracking
from sophia.generate_timing import PROMPTS, load, time_generate


def gguf_runs(path: Path, new_tokens: int, threads: int | None) -> dict[str, Any]:
    from sophia.gguf.tools import vocab_facts
    from sophia.serve.engine import Engine, Job, Result, Sampling
    from sophia.serve.model import LlamaModel, default_ctx

    model = LlamaModel(path, default_ctx(int(vocab_facts(path)["n_ctx_train"])), threads)
    engine = Engine(model)
    rows = []
    try:
        for request in PROMPTS:
            job = Job(model.tokenize(prompt.build_prompt(request), True, False), new_tokens, [], Sampling())
            result: Result = asyncio.run(engine.complete(job))[1]
            rows.append({"first_token_s": result.first_token_s, "tokens_per_s": result.tokens_per_s,
                         "new_tokens": len(result.tokens), "finish": result.finish_reason})
    finally:
        engine.close()
    return {"load_s": model.load_s, "bytes": path.stat().st_size, "runs": rows}


def pytorch_runs(model_dir: Path, new_tokens: int) -> dict[str, Any]:
    model, tok, load_s = load(model_dir)
    timed = [time_generate(model, tok, request, new_tokens) for request in PROMPTS]
    # tokens/s as the engine counts them: the tokens after the first over the time after it
    return {"load_s": load_s, "runs": [{"first_token_s": t.first_token_s, "new_tokens": t.new_tokens,
                                        "tokens_per_s": t.tokens_per_s(after_first=True)} for t in timed]}


def run(gguf_dir: Path, float_model: Path, new_tokens: int, threads: int | None, out: Path) -> dict[str, Any]:
    import torch

    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")
    if threads:
        torch.set_num_threads(threads)
    files = sorted(gguf_dir.glob("*.gguf"))
    engines = {p.stem.removeprefix("model-"): gguf_runs(p, new_tokens, threads) for p in files}
    engines["pytorch"] = pytorch_runs(float_model, new_tokens)
    summary = {name: {"load_s": r["load_s"],
                      **{k: statistics.median(x[k] for x in r["runs"]) for k in ("first_token_s", "tokens_per_s")}}
               for name, r in engines.items()}
    for name, s in summary.items():
        print(f"{name:<8} load {s['load_s']:.2f} s  first token {1000 * s['first_token_s']:.1f} ms  "
              f"{s['tokens_per_s']:.1f} tokens/s")
    result = {"gguf": str(gguf_dir), "float_model": str(float_model), "new_tokens": new_tokens, "threads": threads,
              "prompts": PROMPTS, "median": summary, "engines": engines}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    params = {"gguf": str(gguf_dir), "float_model": str(float_model), "new_tokens": new_tokens, "threads": threads}
    with tracking.stage_run("benchmark", "gguf_serve", params) as mlrun:
        mlrun.log_metrics({f"{name}.{k}": v for name, s in summary.items() for k, v in s.items()})
        mlrun.log_artifact(out)
    print(f"wrote {out}")
    return result
