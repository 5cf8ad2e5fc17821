"""What a user opens in the MLflow UI: the experiment's runs table in model-training mode (MLflow 3
opens on its GenAI overview otherwise, where the study's runs are not listed), and a saved view of
it with the evaluation runs grouped by model variant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sophia.tracking.store import experiment_name, tracking_uri, with_retry

RUNS_VIEW = "#/experiments/{id}/runs?workflowType=machine_learning"
# A saved view of the runs table, stored as an experiment tag the UI reads for `viewStateShareKey`
# (what its *Share* button writes): the evaluation runs grouped by model variant, so each group's
# row (and chart bar) is one variant's mean over its benchmarks' runs, and its rows the benchmarks.
SHARED_VIEW_TAG = "mlflow.sharedViewState."
BY_MODEL = "sophia-by-model"
BY_MODEL_STATE = {
    "searchFilter": "tags.`sophia.stage` = 'evaluate'",
    "orderByKey": "attributes.start_time",
    "orderByAsc": False,
    "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "sophia.model"}]},
    "useGroupedValuesInCharts": True,
}


def runs_url(base: str, experiment_id: str, view: str | None = None) -> str:
    url = base.rstrip("/") + "/" + RUNS_VIEW.format(id=experiment_id)
    return url + (f"&viewStateShareKey={view}" if view else "")


def save_views(client: Any, experiment_id: str) -> None:
    """(Re)write the saved views; cheap and idempotent, so every invocation does it."""
    with_retry(client.set_experiment_tag, experiment_id, SHARED_VIEW_TAG + BY_MODEL, json.dumps(BY_MODEL_STATE))


def experiment_id(uri: str | None = None, name: str | None = None) -> str | None:
    """The experiment's id, read without creating anything (None when no run was logged yet)."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None
    from mlflow import MlflowClient

    exp = with_retry(MlflowClient(tracking_uri=uri).get_experiment_by_name, name or experiment_name())
    return None if exp is None else exp.experiment_id
