"""Benchmark: on-device decoding on this machine: the exported decode graph with the prompt through
the prefill graph (litert_kv), with the prompt one decode step per token (litert_kv_steps), the fixed
window (LiteRT, through the `sophia run` runner in the export environment) vs PyTorch `generate` with its
own KV cache, for the same prompts and greedy length. Reports load time, time to first token and
tokens/s (the paper's app figures); writes JSON and logs one MLflow run.

    .venv/bin/python benchmarks/export_decode.py --export results/export/base --model results/models/base
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import torch
from record import save
from sophia import generate_timing
from sophia.export.stage import export_python


def litert(bundle: Path, graph: str, request: str, new_tokens: int, threads: int) -> dict:
    sophia_cli = export_python(".venv-export/bin/python").parent / "sophia"
    how = ["--graph", "kv", "--no-prefill"] if graph == "kv-steps" else ["--graph", graph]
    proc = subprocess.run([str(sophia_cli), "run", "--bundle", str(bundle), "--prompt", request, *how,
                           "--max-new-tokens", str(new_tokens), "--threads", str(threads), "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pytorch(model_dir: Path, request: str, new_tokens: int) -> dict:
    """A fresh load per run, as the TFLite runner's figures include its load."""
    model, tok, load_s = generate_timing.load(model_dir)
    t = generate_timing.time_generate(model, tok, request, new_tokens, exact=True)
    return {"load_s": load_s, "first_token_s": t.first_token_s, "tokens_per_s": t.tokens_per_s(),
            "new_tokens": t.new_tokens}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", type=Path, default=Path("results/export/base"), help="an export stage output")
    p.add_argument("--model", type=Path, default=Path("results/models/base"), help="the float model it came from")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/export_decode.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    generation = json.loads((args.export / "bundle" / "generation.json").read_text())
    rows = {"litert_kv": [], "litert_kv_steps": [], "litert_window": [], "pytorch": []}
    for request in generate_timing.PROMPTS:
        rows["litert_kv"].append(litert(args.export / "bundle", "kv", request, args.new_tokens, args.threads))
        rows["litert_kv_steps"].append(litert(args.export / "bundle", "kv-steps", request, args.new_tokens,
                                              args.threads))
        rows["litert_window"].append(litert(args.export / "bundle", "window", request, args.new_tokens,
                                            args.threads))
        rows["pytorch"].append(pytorch(args.model, request, args.new_tokens))
    summary = {name: {k: statistics.median(r[k] for r in runs) for k in ("load_s", "first_token_s", "tokens_per_s")}
               for name, runs in rows.items()}
    for name, s in summary.items():
        print(f"{name:<14} load {s['load_s']:.2f} s  first token {1000 * s['first_token_s']:.1f} ms  "
              f"{s['tokens_per_s']:.1f} tok/s")
    result = {"export": str(args.export), "precision": generation["precision"], "threads": args.threads,
              "new_tokens": args.new_tokens, "median": summary, "runs": rows}
    params = {"export": str(args.export), "model": str(args.model), "new_tokens": args.new_tokens,
              "threads": args.threads, "precision": generation["precision"]}
    save(args.out, result, name="export_decode", params=params,
         metrics={f"{name}.{k}": v for name, s in summary.items() for k, v in s.items()})


if __name__ == "__main__":
    main()
