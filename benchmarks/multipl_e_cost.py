"""Benchmark: what a MultiPL-E program costs in the sandbox, per language, and what the ten
MultiPL-E benchmarks add to one evaluate job of the embedded default.

Per language: the snapshot's programs (each problem's correct and wrong completion) compiled and
run in the bubblewrap sandbox, `--repeats` rounds with 1 and with 2 workers: programs/s and
seconds per program; and the same programs with the compile step alone, so the compile's share
of a program's time shows. With `--model`, the configured MultiPL-E benchmarks of `--config`
(generation, toolchain self-test, execution, scores) on that model through the evaluate stage, no
cache: the seconds one variant's job gains (`make run` runs one job per variant).

    .venv/bin/python benchmarks/multipl_e_cost.py --model results/models/base --config config.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import yaml
from record import ROOT, save
from sophia.evaluate import languages, sandbox, toolchain
from sophia.evaluate import multipl_e_fixture as fixture
from sophia.evaluate.benchmarks import BENCHMARKS, MULTIPL_E_LANGUAGES


def timed(lang: languages.Language, box: sandbox.Sandbox, programs: list[str], workers: int,
          repeats: int) -> dict:
    rounds, statuses = [], set()
    for _ in range(repeats):
        start = time.perf_counter()
        outcomes = toolchain.run_many(lang, box, programs, workers)
        rounds.append(time.perf_counter() - start)
        statuses |= {o.status for o in outcomes}
    seconds = statistics.median(rounds)
    return {"programs": len(programs), "workers": workers, "seconds": seconds,
            "programs_per_second": len(programs) / seconds, "seconds_per_program": seconds * workers / len(programs),
            "statuses": sorted(statuses)}


def per_language(repeats: int) -> dict:
    box = sandbox.Sandbox(sandbox.Limits(), "bwrap")
    out = {}
    for code in MULTIPL_E_LANGUAGES:
        lang = languages.language(code)
        programs = [p for _, p, _ in fixture.programs(code)]
        row = {"title": lang.title, "toolchain": languages.version(lang),
               "workers_1": timed(lang, box, programs, 1, repeats), "workers_2": timed(lang, box, programs, 2, repeats)}
        compile_steps = tuple(s for s in lang.steps if s.name == "compile")
        if compile_steps:
            alone = timed(dataclasses.replace(lang, steps=compile_steps), box, programs, 1, repeats)
            row["compile_share"] = alone["seconds"] / row["workers_1"]["seconds"]
        out[code] = row
        print(code, {k: v for k, v in row["workers_1"].items() if k != "statuses"})
    return out


def job_cost(model: Path, config: Path) -> dict:
    """The configured MultiPL-E benchmarks of one variant through the evaluate stage, uncached."""
    from sophia.evaluate import stage

    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    espec = cfg["evaluate"]
    names = [b for b in espec["benchmarks"] if BENCHMARKS[b].language]
    if espec.get("dataset_root") and not Path(espec["dataset_root"]).is_absolute():
        espec["dataset_root"] = str(ROOT / espec["dataset_root"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = stage.run_stage({"evaluate": espec}, "base", model, None, names, Path(tmp) / "eval")
        seconds = time.perf_counter() - start
    execs = {b: s["executions"] for b, s in done.scores.items()}
    return {"benchmarks": names, "seconds": seconds,
            "generation_seconds": sum(s["eval_seconds"] for s in done.scores.values()),
            "execution_seconds": sum(e["seconds"] for e in execs.values()),
            "programs": sum(e["programs"] for e in execs.values()),
            "distinct_programs": sum(e.get("distinct_programs", e["programs"]) for e in execs.values())}


def table(result: dict) -> str:
    lines = ["| language | toolchain | programs | 1 worker: programs/s | s/program | 2 workers: programs/s "
             "| compile share |", "|---|---|---|---|---|---|---|"]
    for row in result["languages"].values():
        one, two = row["workers_1"], row["workers_2"]
        share = f"{100 * row['compile_share']:.0f} %" if "compile_share" in row else "— (interpreted)"
        lines.append(f"| {row['title']} | {row['toolchain']} | {one['programs']} | {one['programs_per_second']:.2f} "
                     f"| {one['seconds_per_program']:.2f} | {two['programs_per_second']:.2f} | {share} |")
    job = result.get("job")
    if job:
        lines += ["", f"One evaluate job's MultiPL-E benchmarks ({len(job['benchmarks'])}, {job['programs']} programs, "
                      f"{job['distinct_programs']} distinct): {job['seconds']:.1f} s in all, of which "
                      f"{job['generation_seconds']:.1f} s generation and {job['execution_seconds']:.1f} s execution."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds per setting (the median is kept)")
    p.add_argument("--model", type=Path, help="also time one variant's MultiPL-E benchmarks on this model")
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multipl_e_cost.json")
    args = p.parse_args()
    languages.check_installed(list(MULTIPL_E_LANGUAGES), "benchmark")
    result: dict = {"languages": per_language(args.repeats), "repeats": args.repeats,
                    "limits": vars(sandbox.Limits())}
    if args.model:
        result["job"] = job_cost(args.model, args.config)
    metrics = {f"{c}.programs_per_second": r["workers_1"]["programs_per_second"]
               for c, r in result["languages"].items()}
    save(args.out, result, name="multipl_e_cost", params={"repeats": args.repeats}, metrics=metrics,
         markdown_body=table(result))


if __name__ == "__main__":
    main()
