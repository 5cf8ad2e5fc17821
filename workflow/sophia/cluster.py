"""Why a SLURM job of this workflow failed, said in terms a user can act on: the rule, and the
resource to raise.

The executor plugin reports only the job state ("SLURM-job '12' failed, SLURM status is: 'FAILED'").
A job over its memory request ends as FAILED when SLURM's accounting sampler kills it (clusters
without cgroups) or as OUT_OF_MEMORY (cgroups); one over its time ends as TIMEOUT. So after a
failed invocation the workflow asks sacct for every job of the run (the plugin names them all
after its run id and puts the rule into --comment) and reads the job's SLURM log for the kill."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RUN_ID = re.compile(r"SLURM run ID: ([0-9a-f-]{36})")
COMMENT = re.compile(r"^rule_(\w+?)(?:_wildcards_(.*))?$")
MEMORY_KILL = re.compile(r"exceeded memory limit|exceeded job memory limit|oom[-_ ]kill", re.I)
FIELDS = ("JobID", "Comment", "State", "ReqMem", "MaxRSS", "Timelimit", "Elapsed")
_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


@dataclass
class Job:
    """One SLURM job of the run, with the peak memory of its steps."""

    jobid: str
    rule: str
    wildcards: str
    state: str
    req_mem: str
    timelimit: str
    elapsed: str
    peak_mb: float | None = None


def megabytes(value: str) -> float | None:
    """sacct sizes (`183312K`, `4150M`, `4G`; ReqMem may end in n/c for per node/cpu) in MB."""
    m = re.fullmatch(r"([\d.]+)([KMGT])?[nc]?", value.strip())
    return None if m is None else float(m[1]) * _UNITS[m[2] or "M"]


def parse_sacct(text: str) -> list[Job]:
    """Jobs from `sacct --parsable2 --noheader --format=<FIELDS>`: the job line names the rule,
    its step lines (`12.batch`, `12.0`) carry the memory they reached."""
    jobs: dict[str, Job] = {}
    for line in text.splitlines():
        row = dict(zip(FIELDS, line.split("|"), strict=False))
        if len(row) < len(FIELDS):
            continue
        base, _, step = row["JobID"].partition(".")
        if not step:
            m = COMMENT.match(row["Comment"])
            if m:
                jobs[base] = Job(base, m[1], m[2] or "", row["State"].split()[0], row["ReqMem"],
                                 row["Timelimit"], row["Elapsed"])
        elif base in jobs and (rss := megabytes(row["MaxRSS"])) is not None:
            jobs[base].peak_mb = max(jobs[base].peak_mb or 0.0, rss)
    return list(jobs.values())


def explain(job: Job, slurm_log: str = "") -> str | None:
    """The action for a job SLURM ended for a resource; None for other failures (a bug in the
    stage, a cancel), whose cause is in the rule's own log."""
    what = f"rule {job.rule}" + (f" ({job.wildcards})" if job.wildcards else "")
    if job.state == "OUT_OF_MEMORY" or (job.state in ("FAILED", "CANCELLED") and MEMORY_KILL.search(slurm_log)):
        peak = f", and had reached {job.peak_mb:.0f} MB when it was killed" if job.peak_mb else ""
        return (f"{what}: SLURM job {job.jobid} went over its memory request (--mem {job.req_mem}{peak}). "
                f"Raise the rule's mem_mb resource, e.g. snakemake ... --set-resources {job.rule}:mem_mb=<MB> "
                f"(the model-scaled stages also grow with compute.model_gb in the config).")
    if job.state == "TIMEOUT":
        return (f"{what}: SLURM job {job.jobid} ran out of time (limit {job.timelimit}, ran {job.elapsed}). "
                f"Raise the rule's runtime resource (minutes), e.g. snakemake ... --set-resources "
                f"{job.rule}:runtime=<minutes>.")
    return None


def slurm_log_of(jobid: str, logdir: Path) -> str:
    """The plugin's log of one job (`<logdir>/rule_<rule>/<wildcards>/<jobid>.log`)."""
    for path in logdir.rglob(f"{jobid}.log"):
        return path.read_text(errors="replace")
    return ""


def hints(snakemake_logs: Iterable[str | Path] | str | Path, logdir: Path = Path(".snakemake/slurm_logs"),
          sacct: str = "sacct") -> list[str]:
    """One line per job of the failed invocation that SLURM ended for its memory or time."""
    if isinstance(snakemake_logs, (str, Path)):
        snakemake_logs = [snakemake_logs]
    run_ids = set()
    for log in snakemake_logs:
        path = Path(log)
        if path.is_file():
            run_ids.update(RUN_ID.findall(path.read_text(errors="replace")))
    out = []
    for run_id in sorted(run_ids):
        try:
            result = subprocess.run(
                [sacct, "--parsable2", "--noheader", "--name", run_id, "--starttime", "now-7days",
                 f"--format={','.join(FIELDS)}"], capture_output=True, text=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError):
            continue  # no accounting here: the plugin's own message stands alone
        for job in parse_sacct(result.stdout):
            hint = explain(job, slurm_log_of(job.jobid, logdir))
            if hint:
                out.append(hint)
    return out
