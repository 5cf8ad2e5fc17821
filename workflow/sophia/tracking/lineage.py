"""The run record a stage leaves next to its output (`mlflow_run.json`): which run made it, so
downstream stages tag their lineage and find the output's LoggedModels."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sophia.provenance import digest, file_manifest

log = logging.getLogger(__name__)

RUN_RECORD = "mlflow_run.json"
# Next to a run record copied from a cache (evaluate's result cache): the output was restored, not
# computed, and the record names the run that computed it.
CACHE_HIT = "cache_hit.json"


def read_record(output: str | Path) -> dict[str, Any] | None:
    """The run record of a stage output (a directory, or a file inside one)."""
    output = Path(output)
    for candidate in (output / RUN_RECORD, output.parent / RUN_RECORD):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return None


def identity(path: str | Path) -> str:
    """What a model or adapter folder is: the run that made it, or failing that its files' hashes
    (resume fingerprints of finetune and distill)."""
    record = read_record(path)
    return record["run_id"] if record else digest(file_manifest(path))


def lineage_tags(inputs: Mapping[str, str | Path]) -> dict[str, str]:
    """Tags naming the run that produced each input (`sophia.input.<role>` → run id)."""
    tags: dict[str, str] = {}
    ids = []
    for role, path in inputs.items():
        record = read_record(path)
        if record is None:
            log.warning("input %s (%s) has no %s; lineage not recorded", role, path, RUN_RECORD)
            continue
        tags[f"sophia.input.{role}"] = record["run_id"]
        ids.append(record["run_id"])
    if ids:
        tags["sophia.input_runs"] = ",".join(ids)
    return tags
