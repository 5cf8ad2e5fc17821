"""Snakemake's `benchmark:` files (one TSV per job: wall time, peak RSS, I/O, CPU time) read back
and logged onto the MLflow run of the output each job made.

Every rule writes `results/benchmarks/<output path under results/>.tsv`, so a benchmark file maps
to its output folder, and that folder's `mlflow_run.json` names the run. Snakemake writes the file
after the job ends, so the workflow's `onsuccess` handler logs them (not the stage itself).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path
from typing import Any

from sophia import tracking

log = logging.getLogger(__name__)

TAG = "sophia.job_benchmark_sha256"
# Snakemake column -> (metric name, scale): MB stay MB, seconds stay seconds.
COLUMNS = {"s": ("job.seconds", 1.0), "max_rss": ("job.max_rss_mb", 1.0), "max_uss": ("job.max_uss_mb", 1.0),
           "io_in": ("job.io_in_mb", 1.0), "io_out": ("job.io_out_mb", 1.0), "mean_load": ("job.mean_load", 1.0),
           "cpu_time": ("job.cpu_seconds", 1.0)}


def read(tsv: str | Path) -> dict[str, float]:
    """The last row of one benchmark file as metrics (a rerun appends nothing: Snakemake rewrites it).
    Columns Snakemake could not measure ('NA', '-') are left out."""
    with open(tsv, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ValueError(f"{tsv}: no benchmark row")
    out: dict[str, float] = {}
    for column, (name, scale) in COLUMNS.items():
        try:
            out[name] = float(rows[-1][column]) * scale
        except (KeyError, TypeError, ValueError):
            continue
    return out


def output_of(tsv: Path, results: Path) -> Path:
    """results/benchmarks/eval/base/piqa.tsv -> results/eval/base/piqa."""
    return results / tsv.relative_to(results / "benchmarks").with_suffix("")


def collect(results: str | Path) -> list[dict[str, Any]]:
    """Every job's benchmark with the stage and output it belongs to (for reports and the MLflow log)."""
    results = Path(results)
    jobs = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        out = output_of(tsv, results)
        record = tracking.read_record(out) if out.is_dir() else None
        jobs.append({"benchmark": str(tsv), "output": str(out), "metrics": read(tsv),
                     "stage": (record or {}).get("stage") or out.relative_to(results).parts[0],
                     "record": record})
    return jobs


def log_to_runs(results: str | Path) -> int:
    """Log each job's benchmark onto its output's run, once per benchmark file content; returns
    how many runs got new figures. A job whose output has no run record (the app build) is skipped."""
    from mlflow import MlflowClient

    logged = 0
    for job in collect(results):
        record = job["record"]
        if record is None:
            continue
        sha = hashlib.sha256(Path(job["benchmark"]).read_bytes()).hexdigest()
        client = MlflowClient(tracking_uri=record["tracking_uri"])
        existing = tracking.with_retry(client.get_run, record["run_id"]).data.tags.get(TAG)
        if existing == sha:
            continue
        run = tracking.Run(client, record["run_id"], record["experiment_id"])
        run.log_metrics(job["metrics"])
        run.set_tags({TAG: sha})
        logged += 1
    return logged
