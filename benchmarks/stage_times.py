"""Benchmark: wall time per stage of one workflow invocation, read back from MLflow.

Every stage run is nested under the invocation's `workflow ...` run; this sums their durations
per stage (and lists the slowest jobs), for the embedded default, the GPU smoke config or a
cluster run alike. Writes JSON and logs it onto the invocation's run.

    .venv/bin/python benchmarks/stage_times.py                      # latest invocation, experiment sophia
    .venv/bin/python benchmarks/stage_times.py --experiment sophia-gpu-smoke
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from sophia import tracking


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=tracking.experiment_name())
    p.add_argument("--run-id", help="the invocation's run (default: the latest `workflow ...` run)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/stage_times.json"))
    args = p.parse_args()

    client, _ = tracking.connect()
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment '{args.experiment}' at {tracking.tracking_uri()}")
    if args.run_id:
        parent = client.get_run(args.run_id)
    else:
        parents = client.search_runs([exp.experiment_id], "tags.`sophia.stage` = 'workflow'",
                                     order_by=["attributes.start_time DESC"], max_results=1)
        if not parents:
            raise SystemExit(f"no workflow run in experiment '{args.experiment}'")
        parent = parents[0]
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  max_results=5000)
    per_stage: dict[str, float] = defaultdict(float)
    jobs = []
    for run in children:
        if run.info.end_time is None:
            continue
        seconds = (run.info.end_time - run.info.start_time) / 1000
        stage = run.data.tags.get("sophia.stage", "?")
        per_stage[stage] += seconds
        jobs.append({"run": run.info.run_name, "stage": stage, "seconds": seconds})
    wall = ((parent.info.end_time or max(r.info.end_time or 0 for r in children)) - parent.info.start_time) / 1000
    result = {"invocation": parent.info.run_name, "run_id": parent.info.run_id, "wall_seconds": wall,
              "stage_seconds": dict(sorted(per_stage.items(), key=lambda kv: -kv[1])),
              "jobs": sorted(jobs, key=lambda j: -j["seconds"])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{parent.info.run_name}: {wall:.0f} s wall")
    for stage, seconds in result["stage_seconds"].items():
        n = sum(1 for j in jobs if j["stage"] == stage)
        print(f"  {stage:<12} {seconds:8.1f} s in {n} job(s)")
    run = tracking.Run(client, parent.info.run_id, exp.experiment_id)
    run.log_metrics({f"stage_seconds.{k}": v for k, v in per_stage.items()})
    run.log_artifact(args.out, "benchmarks")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
