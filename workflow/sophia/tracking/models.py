"""Model variants as MLflow 3 LoggedModels: one per stage output that is a model (base, gptq, each
curriculum step, merged, exported), linked to the run that made it, so the UI's *Models* tab lists
the study's variants and compares them on the metrics evaluation logs with their model id.

Weights stay where the workflow wrote them: each model is *external* (MLflow holds a stub MLmodel
file, the tags hold the path and the sha256 of the file manifest), never a multi-GB upload.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sophia.tracking.lineage import RUN_RECORD, read_record
from sophia.tracking.store import tracking_uri, with_retry

log = logging.getLogger(__name__)
MODEL_NAME_BAD = re.compile(r"[/:.%\"']")  # characters MLflow refuses in a LoggedModel name


def model_name(variant: str) -> str:
    """`gptq+tiny_codegen/tiny_summary` → `gptq+tiny_codegen+tiny_summary` (MLflow refuses `/:.`)."""
    return MODEL_NAME_BAD.sub("+", variant)


def manifest_sha256(manifest: Mapping[str, Mapping[str, Any]]) -> str:
    """One digest for a folder: sha256 over its sorted `path sha256` lines (`sha256sum` format)."""
    lines = "".join(f"{m['sha256']}  {path}\n" for path, m in sorted(manifest.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def create_external(client: Any, experiment_id: str, run_id: str, name: str, path: str,
                    manifest: Mapping[str, Mapping[str, Any]], model_type: str,
                    tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None) -> str:
    """Create a READY external LoggedModel, output of `run_id`; return its model id.

    Same steps as `mlflow.create_external_model`, but on the given client (that function uses the
    fluent API's global tracking URI and active run)."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.models.utils import get_external_mlflow_model_spec
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_IS_EXTERNAL

    all_tags = {
        MLFLOW_MODEL_IS_EXTERNAL: "true",
        "sophia.path": path,
        "sophia.sha256": manifest_sha256(manifest),
        "sophia.bytes": str(sum(m["bytes"] for m in manifest.values())),
        "sophia.files": str(len(manifest)),
        **{k: str(v) for k, v in (tags or {}).items()},
    }
    model = with_retry(client.create_logged_model, experiment_id, name=model_name(name), source_run_id=run_id,
                       tags=all_tags, params={k: str(v) for k, v in (params or {}).items()},
                       model_type=model_type)
    with tempfile.TemporaryDirectory(prefix="sophia-mlmodel-") as tmp:
        get_external_mlflow_model_spec(model).save(str(Path(tmp) / MLMODEL_FILE_NAME))
        with_retry(client.log_model_artifacts, model.model_id, tmp)
    with_retry(client.finalize_logged_model, model.model_id, LoggedModelStatus.READY)
    with_retry(client.log_outputs, run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model.model_id


def register(client: Any, name: str, model_id: str, run_id: str, tags: Mapping[str, Any]) -> str:
    """A new version of registered model `name` pointing at the LoggedModel; returns the version."""
    from mlflow.exceptions import MlflowException

    try:
        with_retry(client.create_registered_model, name, description="Sophia export bundles (sophia.tracking)")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower():
            raise
    version = with_retry(client.create_model_version, name, f"models:/{model_id}", run_id=run_id,
                         tags={k: str(v)[:5000] for k, v in tags.items()}, model_id=model_id)
    return str(version.version)


def manifest_tags(manifest: Mapping[str, Any]) -> dict[str, str]:
    """A bundle's manifest.json as registry tags: model, commit, total bytes, one sha256 per file."""
    tags = {f"manifest.{k}": str(v) for k, v in manifest.items() if not isinstance(v, (dict, list))}
    for name, f in (manifest.get("files") or {}).items():
        tags[f"file.{name}.sha256"] = f["sha256"]
        tags[f"file.{name}.bytes"] = str(f["bytes"])
    return tags


def model_id_of(output: str | Path, name: str | None = None) -> str | None:
    """The LoggedModel id of a stage output (from its run record): the one called `name`, or the
    only one; None (with a warning) for outputs made before models were logged."""
    record = read_record(output) or {}
    if record.get("tracking_uri", tracking_uri()) != tracking_uri():
        log.info("%s was logged to %s, not %s: its LoggedModel is not linked", output, record["tracking_uri"],
                 tracking_uri())
        return None
    models = record.get("models") or {}
    if name is not None and (name in models or model_name(name) in models):
        return models.get(name) or models[model_name(name)]
    if len(models) == 1:
        return next(iter(models.values()))
    log.warning("%s: no LoggedModel %s in its %s (have: %s)", output, name or "", RUN_RECORD, sorted(models))
    return None


def model_ids(*outputs: str | Path | None, name: str | None = None) -> tuple[str, ...]:
    """The LoggedModel ids of some input folders (None entries skipped; all of a folder's models
    unless `name` picks one), for `Run.log_datasets`."""
    ids: list[str] = []
    for output in outputs:
        if output is None:
            continue
        record = read_record(output) or {}
        if name is None and record.get("tracking_uri", tracking_uri()) == tracking_uri():
            ids += (record.get("models") or {}).values()
        elif found := model_id_of(output, name):
            ids.append(found)
    return tuple(ids)
