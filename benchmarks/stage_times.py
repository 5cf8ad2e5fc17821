"""Benchmark: job time and peak memory per stage of a finished workflow, from Snakemake's own
`benchmark:` files (results/benchmarks/**.tsv: wall time, max RSS, I/O, CPU time per job).

Writes JSON, prints a per-stage table (the README's), and logs the totals onto the latest
`workflow ...` MLflow run of the experiment.

    .venv/bin/python benchmarks/stage_times.py                  # results/ of this checkout
    .venv/bin/python benchmarks/stage_times.py --results /scratch/study/results
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from record import save
from sophia import job_benchmarks, tracking


def summarise(jobs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage: jobs, the outputs they made (evaluate: one job per model writes one folder per
    benchmark; outputs restored from its cache counted apart), job time and peak memory."""
    per_stage: dict[str, dict[str, float]] = defaultdict(
        lambda: {"jobs": 0, "outputs": 0, "cached_outputs": 0, "seconds": 0.0, "max_rss_mb": 0.0})
    for job in jobs:
        s = per_stage[job["stage"]]
        s["jobs"] += 1
        s["outputs"] += len(job["outputs"]) or 1
        s["cached_outputs"] += sum(o["cached"] for o in job["outputs"])
        s["seconds"] += job["metrics"].get("job.seconds", 0.0)
        s["max_rss_mb"] = max(s["max_rss_mb"], job["metrics"].get("job.max_rss_mb", 0.0))
    return dict(sorted(per_stage.items(), key=lambda kv: -kv[1]["seconds"]))


def markdown(stages: dict[str, dict[str, float]], jobs: int, job_seconds: float) -> str:
    lines = ["| stage | jobs | outputs (cached) | job time (s) | max RSS (MB) |", "|---|---|---|---|---|"]
    lines += [f"| {stage} | {s['jobs']:.0f} | {s['outputs']:.0f} ({s['cached_outputs']:.0f}) | {s['seconds']:.1f} "
              f"| {s['max_rss_mb']:.0f} |" for stage, s in stages.items()]
    lines.append(f"| total | {jobs} | {sum(s['outputs'] for s in stages.values()):.0f} | {job_seconds:.1f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/stage_times.json"))
    args = p.parse_args()

    jobs = job_benchmarks.collect(args.results)
    if not jobs:
        raise SystemExit(f"no benchmark files under {args.results / 'benchmarks'}: run the workflow first")
    stages = summarise(jobs)
    result = {"results": str(args.results.resolve()), "stages": stages,
              "job_seconds": sum(s["seconds"] for s in stages.values()),
              "jobs": sorted(({**{k: j[k] for k in ("stage", "output", "metrics")},
                              "outputs": [o["output"] for o in j["outputs"]]} for j in jobs),
                             key=lambda j: -j["metrics"].get("job.seconds", 0.0))}
    md = markdown(stages, len(jobs), result["job_seconds"])
    print(md)
    save(args.out, result, name="stage_times", markdown_body=md, log=False)  # logged to the workflow's run below

    client, exp_id = tracking.connect()
    parents = client.search_runs([exp_id], "tags.`sophia.stage` = 'workflow'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if parents:
        run = tracking.Run(client, parents[0].info.run_id, exp_id)
        run.log_metrics({f"stage_seconds.{k}": v["seconds"] for k, v in stages.items()})
        run.log_artifact(args.out, "benchmarks")


if __name__ == "__main__":
    main()
