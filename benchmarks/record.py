"""The record every benchmark leaves: `benchmarks/results/<name>.json` and `.md`, stamped with what a
reader needs to trust or redo the figures (the command, the machine: cores, RAM, CPU model; the
date; the git commit), and an MLflow run (experiment `sophia-benchmarks` unless
`MLFLOW_EXPERIMENT_NAME` names another) with the metrics and both files as artifacts.

    from record import save
    save(args.out, result, name="export_decode", params=params, metrics=metrics, markdown_body=table)

The JSON holds the benchmark's own result plus a `record` key with the stamp; the markdown starts
with the stamp and then shows `markdown` (the benchmark's table), or else every scalar of the result.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sophia.provenance import flatten, git_commit

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "sophia-benchmarks"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Cores (all, and those this process may use), RAM, CPU model, OS and Python, and the load average
    when the record was written (timings on a busy machine are slower; the reader should know)."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "ram_gb": round(ram / 2**30, 1),
            "cpu_model": cpu_model(), "os": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def stamp() -> dict[str, Any]:
    """Command, machine, UTC date and commit (`-dirty` when tracked files differ from it)."""
    return {"command": shlex.join(sys.orig_argv), "machine": machine(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "commit": git_commit(ROOT)}


def scalars_table(result: Mapping[str, Any]) -> str:
    """Every number and string of a nested result (lists left out) as a two-column table."""
    rows = [f"| {k} | {v} |" for k, v in flatten(result).items()
            if isinstance(v, (int, float, str, bool)) or v is None]
    return "| key | value |\n|---|---|\n" + "\n".join(rows) + "\n"


def markdown(name: str, info: Mapping[str, Any], body: str) -> str:
    m = info["machine"]
    return (f"# {name}\n\n"
            f"- command: `{info['command']}`\n"
            f"- machine: {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gb']} GiB RAM, {m['cpu_model']}, "
            f"{m['os']}, Python {m['python']}; load average {m['load_average']} (1, 5, 15 min) at the end\n"
            f"- date: {info['date']}\n- commit: `{info['commit']}`\n\n{body}")


def save(out: Path, result: Mapping[str, Any], *, name: str, params: Mapping[str, Any] | None = None,
         metrics: Mapping[str, float] | None = None, markdown_body: str | None = None,
         log: bool = True) -> dict[str, Any]:
    """Write `out` (JSON) and `out` with suffix .md, and (unless `log` is false) log `metrics` and
    both files to an MLflow run called `benchmark:<name>`; returns the record as written."""
    info = stamp()
    record = {**result, "record": info}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text(markdown(name, info, markdown_body if markdown_body is not None else scalars_table(result)),
                  encoding="utf-8")
    if log:
        from sophia import tracking

        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        with tracking.stage_run("benchmark", name, {**(params or {}), "command": info["command"][:1000]}) as run:
            if metrics:
                run.log_metrics(metrics)
            run.log_artifact(out)
            run.log_artifact(md)
    print(f"wrote {out} and {md}")
    return record
