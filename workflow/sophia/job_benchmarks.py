"""Snakemake's `benchmark:` files (one TSV per job: wall time, peak RSS, I/O, CPU time) read back
and logged onto the MLflow run of the output each job made.

Every rule writes `results/benchmarks/<output path under results/>.tsv`, so a benchmark file maps
to its output folder, and that folder's `mlflow_run.json` names the run. A job with several outputs
under one folder (evaluate: `results/benchmarks/eval/{model}.tsv` for every
`results/eval/{model}/{benchmark}/`) maps to that folder, whose sub-folders hold the runs: each gets
the job's figures and `job.outputs`, the number of outputs that shared the job (its time is theirs
together). An output restored from a cache (`cache_hit.json`) is skipped: its run is the one that
computed it, and already has the figures of the job that did. Snakemake writes the file after the
job ends, so the workflow's `onsuccess` handler logs them (not the stage itself).
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
    """results/benchmarks/eval/base.tsv -> results/eval/base."""
    return results / tsv.relative_to(results / "benchmarks").with_suffix("")


def outputs_of(out: Path) -> list[Path]:
    """The run-bearing outputs of one job: its output folder when that holds a run record, else
    the immediate sub-folders that do (a job writing several outputs under one folder)."""
    if (out / tracking.RUN_RECORD).is_file():
        return [out]
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if (p / tracking.RUN_RECORD).is_file())


def collect(results: str | Path) -> list[dict[str, Any]]:
    """Every job's benchmark with the stage and outputs it belongs to (for reports and the MLflow
    log): one entry per job, `outputs` listing each output with its run record and whether it was
    restored from a cache."""
    results = Path(results)
    jobs = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        out = output_of(tsv, results)
        outputs = [{"output": str(p), "record": tracking.read_record(p), "cached": (p / tracking.CACHE_HIT).is_file()}
                   for p in outputs_of(out)]
        record = outputs[0]["record"] if outputs else None
        jobs.append({"benchmark": str(tsv), "output": str(out), "metrics": read(tsv), "outputs": outputs,
                     "stage": (record or {}).get("stage") or out.relative_to(results).parts[0],
                     "record": record})
    return jobs


def log_to_runs(results: str | Path) -> int:
    """Log each job's benchmark onto the runs of the outputs it computed, once per benchmark file
    content; returns how many runs got new figures. Outputs without a run record (the app build)
    and outputs restored from a cache are skipped. Where two benchmark files name one run (a file
    left from an older layout of the rule), the newer file wins."""
    from mlflow import MlflowClient

    latest: dict[str, tuple[float, dict[str, Any], dict[str, float], str]] = {}
    for job in collect(results):
        tsv = Path(job["benchmark"])
        outputs = job["outputs"]
        metrics = {**job["metrics"], "job.outputs": float(len(outputs) or 1),
                   "job.cached_outputs": float(sum(o["cached"] for o in outputs))}
        mtime = tsv.stat().st_mtime
        for o in outputs:
            record = o["record"]
            if record is None or o["cached"]:
                continue
            seen = latest.get(record["run_id"])
            if seen is None or mtime > seen[0]:
                latest[record["run_id"]] = (mtime, record, metrics, str(tsv))
    logged = 0
    for _, record, metrics, tsv in latest.values():
        sha = hashlib.sha256(Path(tsv).read_bytes()).hexdigest()
        client = MlflowClient(tracking_uri=record["tracking_uri"])
        existing = tracking.with_retry(client.get_run, record["run_id"]).data.tags.get(TAG)
        if existing == sha:
            continue
        run = tracking.Run(client, record["run_id"], record["experiment_id"])
        run.log_metrics(metrics)
        run.set_tags({TAG: sha})
        logged += 1
    return logged
