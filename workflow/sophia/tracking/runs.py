"""MLflow runs of the workflow: one per stage output, nested under the run of the workflow
invocation, tagged with lineage (the run ids of the inputs).

Why not the fluent `mlflow.start_run` API: it keeps global state, and stages need explicit
control of parent/child runs and of retries when several Snakemake jobs write to one SQLite
file at once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sophia.provenance import digest, file_manifest, flatten, git_commit
from sophia.tracking.data import dataset_inputs
from sophia.tracking.lineage import RUN_RECORD, lineage_tags
from sophia.tracking.models import create_external, register
from sophia.tracking.notes import description, fmt, source_tags
from sophia.tracking.store import EXPERIMENT_KIND, MODEL_TRAINING, connect, metric_name, tracking_uri, with_retry
from sophia.tracking.system import SystemMetrics
from sophia.tracking.views import save_views

log = logging.getLogger(__name__)

ENV_PARENT = "SOPHIA_PARENT_RUN_ID"
MLFLOW_RUN_NOTE = "mlflow.note.content"  # the UI's run description (Markdown)

_PARAM_VALUE_LIMIT = 6000  # MLflow rejects longer param values
_BATCH = 500


@dataclass
class Run:
    """A live MLflow run with the few logging calls stages need, all retried and batched."""

    client: Any
    run_id: str
    experiment_id: str
    models: dict[str, str] = field(default_factory=dict)  # LoggedModel name -> model id
    output_path: str | None = None
    notes: list[str] = field(default_factory=list)  # Markdown for the run description

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [
            Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v))
            for k, v in flatten(params).items()
        ]
        for item in items:
            if len(item.value) > _PARAM_VALUE_LIMIT:
                raise ValueError(f"param {item.key} longer than {_PARAM_VALUE_LIMIT} chars")
        for i in range(0, len(items), 100):  # MLflow caps params per batch at 100
            with_retry(self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, model_id: str | None = None,
                    dataset: Any = None) -> None:
        """`model_id` (a LoggedModel, see `model_id_of`) also files the values under that model,
        which is what the UI's *Models* tab compares; `dataset` (an `mlflow.data` dataset, logged
        as an input of this run) says what they were measured on, so the tab keeps one column
        per benchmark even where metric names repeat (`acc` for PIQA and for ARC)."""
        self.log_series({k: [(step, v)] for k, v in metrics.items()}, model_id=model_id, dataset=dataset)

    def log_series(self, series: Mapping[str, list[tuple[int, float]]], model_id: str | None = None,
                   dataset: Any = None) -> None:
        """Log whole metric histories (e.g. a loss curve) in a few batched writes."""
        from mlflow.entities import LoggedModelInput, Metric

        now = int(time.time() * 1000)
        linked = {"model_id": model_id} if model_id else {}
        if model_id and dataset is not None:
            linked.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        items = [
            Metric(metric_name(name), float(value), now, int(step), **linked)
            for name, points in series.items()
            for step, value in points
        ]
        if model_id and items:
            with_retry(self.client.log_inputs, self.run_id, models=[LoggedModelInput(model_id)])
        for i in range(0, len(items), _BATCH):
            with_retry(self.client.log_batch, self.run_id, metrics=items[i : i + _BATCH])

    def log_model(self, name: str, path: str | Path, manifest: Mapping[str, Mapping[str, Any]],
                  model_type: str, tags: Mapping[str, Any] | None = None,
                  params: Mapping[str, Any] | None = None) -> str:
        """An external LoggedModel (path + sha256, nothing uploaded), output of this run."""
        model_id = create_external(self.client, self.experiment_id, self.run_id, name, str(path), manifest,
                                   model_type, tags, params)
        self.models[name] = model_id
        return model_id

    def register_model(self, name: str, model_id: str, tags: Mapping[str, Any]) -> str:
        """A Model Registry version of a LoggedModel (exported forms); returns the version."""
        version = register(self.client, name, model_id, self.run_id, tags)
        self.set_tags({"sophia.registered_model": f"{name}/{version}"})
        return version

    def log_datasets(self, datasets: list[tuple[Any, str]], model_ids: tuple[str, ...] = ()) -> None:
        """Inputs of this run: `(mlflow.data dataset, context)` pairs (see sophia.tracking.data)
        and the LoggedModels it read."""
        from mlflow.entities import LoggedModelInput

        if not datasets and not model_ids:
            return
        with_retry(self.client.log_inputs, self.run_id, datasets=dataset_inputs(datasets) or None,
                   models=[LoggedModelInput(m) for m in model_ids] or None)

    def describe(self, summary: str, numbers: Mapping[str, Any] | None = None) -> None:
        """Add to the run's Markdown description (the *Description* box): a sentence and the key
        numbers. The description is written when the stage ends, with what it made."""
        self.notes.append(summary)
        if numbers:
            rows = "\n".join(f"| {k} | {fmt(v)} |" for k, v in numbers.items())
            self.notes.append(f"| | |\n|---|---|\n{rows}")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        with_retry(self.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with_retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        with_retry(self.client.log_text, self.run_id, text, artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.log_text(json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file)

    def write_record(self, out_dir: str | Path, stage: str, variant: str) -> Path:
        """Leave the run id next to the output, so downstream stages can tag their lineage
        (and, once `log_output` made them, find the output's LoggedModels: `models`)."""
        path = Path(out_dir) / RUN_RECORD
        record = {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": tracking_uri(),
            "stage": stage,
            "variant": variant,
        }
        if self.models:
            record["models"] = dict(self.models)
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return path


def _common_tags() -> dict[str, str]:
    commit = git_commit()
    return {"sophia.git_commit": commit, "mlflow.source.git.commit": commit.removesuffix("-dirty")}


@contextmanager
def stage_run(
    stage: str,
    variant: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | Path] | None = None,
    resume_run_id: str | None = None,
) -> Iterator[Run]:
    """One MLflow run for one stage output; FAILED if the block raises, FINISHED otherwise.

    `resume_run_id` continues the run of an interrupted attempt (its metrics keep their steps)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    client, exp_id = connect()
    run = _reopen(client, resume_run_id, exp_id) if resume_run_id else None
    if run is None:
        tags = {
            MLFLOW_RUN_NAME: f"{stage}:{variant}",
            "sophia.stage": stage,
            "sophia.variant": variant,
            "sophia.config_digest": digest(params),
            **_common_tags(),
            **lineage_tags(inputs or {}),
            **source_tags(stage),
        }
        parent = os.environ.get(ENV_PARENT)
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        mlrun = with_retry(client.create_run, exp_id, tags=tags, run_name=f"{stage}:{variant}")
        run = Run(client, mlrun.info.run_id, exp_id)
        run.log_params(params)
    else:
        run.set_tags(source_tags(stage))
    monitor = SystemMetrics(run, resumed=run.run_id == resume_run_id).start()
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        monitor.stop()
        try:
            run.set_tags({MLFLOW_RUN_NOTE: description(stage, variant, run, status)})
        finally:
            with_retry(client.set_terminated, run.run_id, status)


def _reopen(client: Any, run_id: str, exp_id: str) -> Run | None:
    """Mark an interrupted attempt's run RUNNING again; None if it is gone (deleted, other store)."""
    try:
        with_retry(client.update_run, run_id, status="RUNNING")
    except Exception as exc:
        log.warning("cannot resume MLflow run %s (%s); starting a new one", run_id, exc)
        return None
    return Run(client, run_id, exp_id)


def start_invocation(config: Mapping[str, Any], command: list[str]) -> str:
    """The parent run of one `snakemake` invocation; stage runs nest under it."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    client, exp_id = connect()
    with_retry(client.set_experiment_tag, exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
    save_views(client, exp_id)
    name = "workflow " + time.strftime("%Y-%m-%d %H:%M:%S")
    mlrun = with_retry(
        client.create_run,
        exp_id,
        run_name=name,
        tags={
            MLFLOW_RUN_NAME: name,
            "sophia.stage": "workflow",
            "sophia.config_digest": digest(config),
            "sophia.command": " ".join(command)[:5000],
            "mlflow.source.type": "JOB",
            "mlflow.source.name": " ".join(["snakemake", *command[1:]])[:500],
            MLFLOW_RUN_NOTE: "**workflow** invocation: one nested run per stage output; the report stage adds "
                             "the comparison table here (and its figures under *Artifacts* → `report/`).",
            **_common_tags(),
        },
    )
    run = Run(client, mlrun.info.run_id, exp_id)
    run.log_dict(dict(config), "config.json")
    return run.run_id


def end_invocation(run_id: str, ok: bool) -> None:
    client, _ = connect()
    with_retry(client.set_terminated, run_id, "FINISHED" if ok else "FAILED")


def log_output(
    run: Run, out_dir: str | Path, final: str | Path, small_files: tuple[str, ...] = (),
    models: tuple[str, ...] = (), model_type: str = "", model_tags: Mapping[str, Any] | None = None,
    model_params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Log an output directory by path + sha256 manifest (weights are never uploaded) and
    upload the named small files as artifacts. `out_dir` is where the files are now (the
    atomic scratch dir), `final` where they will live.

    `models`: the output is a model; one external LoggedModel per name (usually one: the variant,
    e.g. `gptq+alpaca`), linked to this run, and its id added to the output's run record so
    downstream stages find it (`model_id_of`)."""
    out_dir = Path(out_dir)
    final = str(Path(final).resolve())
    manifest = file_manifest(out_dir)
    run.log_dict({"path": final, "files": manifest}, "manifest.json")
    run.set_tags({"sophia.output_path": final})
    run.output_path = final
    for name in small_files:
        if (out_dir / name).is_file():
            run.log_artifact(out_dir / name)
    if models:
        weights = {k: v for k, v in manifest.items() if k != RUN_RECORD}  # bookkeeping, rewritten below
        for name in models:
            run.log_model(name, final, weights, model_type, model_tags, model_params)
        record = out_dir / RUN_RECORD
        if record.is_file():
            data = json.loads(record.read_text(encoding="utf-8"))
            run.write_record(out_dir, data["stage"], data["variant"])
    return manifest

