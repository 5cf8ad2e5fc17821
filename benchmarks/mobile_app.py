"""Benchmark: the phone app in headless Chromium (Debian's, on a 390x844 phone viewport): load time,
time to first token, tokens/s and decode ms/token for the bundle's KV-cache graph with its prefill
graph (kv), without it (kv-steps: the prompt one step per token) and its fixed window, each from a
first start with an empty cache. Runs `mobile/bench.mjs` on a built app; writes JSON and logs one
MLflow run.

    .venv/bin/python benchmarks/mobile_app.py --app results/mobile
    .venv/bin/python benchmarks/mobile_app.py --app ... --prompt-tokens 100 --graphs kv --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

from record import save

MOBILE = Path(__file__).resolve().parents[1] / "mobile"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app", type=Path, default=Path("results/mobile"), help="a built app (the mobile rule's output)")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="first starts per graph (3 prompts each)")
    p.add_argument("--prompt-tokens", type=int, default=0, help="one request of exactly this many prompt tokens")
    p.add_argument("--graphs", default="kv,kv-steps,window", help="comma-separated: kv, kv-steps, window")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/mobile_app.json"))
    args = p.parse_args()
    if not (args.app / "bundle" / "manifest.json").is_file():
        p.error(f"{args.app}: not a built app (no bundle/manifest.json); `make run` builds results/mobile")
    proc = subprocess.run(["node", "bench.mjs", "--app", str(args.app.resolve()), "--new-tokens", str(args.new_tokens),
                           "--repeats", str(args.repeats), "--prompt-tokens", str(args.prompt_tokens),
                           "--graphs", args.graphs], cwd=MOBILE, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"mobile/bench.mjs failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = json.loads((args.app / "bundle" / "manifest.json").read_text())
    result["model"] = manifest.get("model")
    for graph, s in result["graphs"].items():
        if s["timed_runs"] == 0:
            print(f"{graph:<7} load {s['load_ms'] / 1000:.2f} s  no answer: every prompt exceeds its window")
            continue
        decode = f"{s['decode_ms_per_token']:.1f} ms/token" if s["decode_ms_per_token"] is not None else ""
        print(f"{graph:<8} load {s['load_ms'] / 1000:.2f} s  first token {s['first_token_ms']:.1f} ms  "
              f"{s['tokens_per_s']:.1f} tok/s  {decode}  ({s['timed_runs']}/{len(s['runs'])} runs answered)")
    params = {"app": str(args.app), "model": result["model"], "new_tokens": args.new_tokens, "repeats": args.repeats,
              "prompt_tokens": args.prompt_tokens, "graphs": args.graphs}
    save(args.out, result, name="mobile_app", params=params,
         metrics={f"{graph}.{k}": s[k] for graph, s in result["graphs"].items()
                  for k in ("load_ms", "first_token_ms", "tokens_per_s", "decode_ms_per_token", "timed_runs")
                  if s[k] is not None})


if __name__ == "__main__":
    main()
