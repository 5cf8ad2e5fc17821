"""Benchmark: the rerankers' likelihood feature (mean log-prob of each sampled program given its
prompt) with each problem's prompt run once and its key/value cache shared by the candidates,
against every (prompt, program) pair run in full, side by side on one model and the sampled
candidates of one finished code evaluation. Reports seconds (median of alternating repeats),
tokens the model ran each way and the largest difference of the two results.

    .venv/bin/python benchmarks/likelihoods.py --model results/models/gptq --eval results/eval/gptq/mbpp
    .venv/bin/python benchmarks/likelihoods.py --model results/models/gptq \
        --adapter results/adapters/alpaca --eval results/eval/gptq+alpaca/humaneval
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import torch
from record import save
from sophia import lm
from sophia.evaluate import engine, rerank

WAYS = {"shared_context": engine.HFEngine.mean_logprobs, "full": engine.HFEngine.full_logprobs}


def candidates(eval_dir: Path) -> list[tuple[str, str]]:
    """(prompt, program) of every sampled candidate in an evaluation's samples.jsonl.gz."""
    path = eval_dir / "samples.jsonl.gz"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; --eval is a code benchmark's output folder (results/eval/<model>/mbpp)")
    samples: dict[str, list[dict[str, Any]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            samples.setdefault(row["task"], []).append(row)
    pairs = [(p.context, c) for p in rerank.sampled_problems(samples) for c in p.completions]
    if not pairs:
        raise SystemExit(f"{path}: no sampled candidates (n_samples 1?)")
    return pairs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--adapter", type=Path)
    p.add_argument("--eval", type=Path, required=True, help="a code benchmark's output folder")
    p.add_argument("--batch-size", type=int, default=8, help="evaluate.batch_size")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per way")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/likelihoods.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pairs = candidates(args.eval)
    model, tok = lm.load_variant(args.model, args.adapter, lm.device())
    tokens: list[int] = []
    embed = model.get_input_embeddings()
    embed.register_forward_hook(lambda _m, inputs, _out: tokens.append(inputs[0].numel()))
    seconds: dict[str, list[float]] = {w: [] for w in WAYS}
    ran: dict[str, int] = {}
    values: dict[str, list[tuple[float, int]]] = {}
    for _ in range(args.repeats):
        for way, fn in WAYS.items():
            tokens.clear()
            start = time.perf_counter()
            values[way] = fn(engine.HFEngine(model, tok, args.batch_size), pairs)
            seconds[way].append(time.perf_counter() - start)
            ran[way] = sum(tokens)
    diff = max(abs(a[0] - b[0]) for a, b in zip(values["shared_context"], values["full"], strict=True))
    result = {"model": str(args.model), "adapter": str(args.adapter) if args.adapter else None,
              "eval": str(args.eval), "candidates": len(pairs), "prompts": len({c for c, _ in pairs}),
              "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
              **{f"{w}.seconds": s for w, s in seconds.items()},
              **{f"{w}.seconds_median": statistics.median(s) for w, s in seconds.items()},
              **{f"{w}.tokens": n for w, n in ran.items()},
              "speedup": statistics.median(seconds["full"]) / statistics.median(seconds["shared_context"]),
              "max_abs_difference": diff,
              "same_token_counts": [n for _, n in values["shared_context"]] == [n for _, n in values["full"]]}
    print(json.dumps({k: v for k, v in result.items() if not k.endswith(".seconds")}, indent=2))
    save(args.out, result, name="likelihoods",
         params={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         metrics={k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)})


if __name__ == "__main__":
    main()
