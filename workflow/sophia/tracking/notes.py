"""What the MLflow UI shows about a stage run besides its numbers: the *Source* (rule and
command) and the Markdown *Description*."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

ENV_RULE = "SOPHIA_RULE"  # the Snakemake rule, when it differs from the stage name


def source_tags(rule: str) -> dict[str, str]:
    """The UI's *Source*: the Snakemake rule and the command this job ran (long values such as the
    `--spec` JSON elided; the run's params hold them). Type JOB: the UI shows the whole name."""
    args = [Path(sys.orig_argv[0]).name, *sys.orig_argv[1:]]
    command = " ".join("'…'" if len(a) > 80 else shlex.quote(a) for a in args)
    rule = os.environ.get(ENV_RULE, rule)
    return {"mlflow.source.type": "JOB", "mlflow.source.name": f"rule {rule}: {command}"[:500],
            "sophia.rule": rule, "sophia.command": shlex.join(sys.orig_argv)[:5000]}


def description(stage: str, variant: str, run: Any, status: str) -> str:
    """The run's Markdown description: what it made, its models, what the stage said."""
    parts = [f"**{stage}** `{variant}`" + ("" if status == "FINISHED" else f" ({status})")]
    output = run.output_path
    if output:
        parts[0] += f" → `{output}`"
    if run.models:
        parts.append("Models: " + ", ".join(f"`{name}`" for name in run.models))
    parts += run.notes
    return "\n\n".join(parts)


def fmt(value: Any) -> str:
    """A number as the description's tables show it."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
