"""MLflow tracking shared by every stage: one run per stage output, nested under the run of the
workflow invocation, with lineage, LoggedModels, datasets and system metrics.

Modules, each importing only those listed before it: `store` (URI, experiment, retried client),
`lineage` (run records next to outputs), `models` (LoggedModels), `data` (datasets), `notes`
(the UI's source and description), `system` (system metrics), `views` (saved UI views), `runs`
(stage runs and the workflow's parent run). Stages use the names re-exported here
(`tracking.stage_run`); the modules themselves never import this file's names back.
"""

from sophia.tracking.lineage import CACHE_HIT, RUN_RECORD, identity, lineage_tags, read_record
from sophia.tracking.models import model_id_of, model_ids
from sophia.tracking.runs import (
    ENV_PARENT,
    MLFLOW_RUN_NOTE,
    Run,
    end_invocation,
    log_output,
    stage_run,
    start_invocation,
)
from sophia.tracking.store import (
    ENV_ARTIFACTS,
    artifact_location,
    connect,
    experiment_name,
    metric_name,
    resolve_uri,
    tracking_uri,
    with_retry,
)

__all__ = [
    "CACHE_HIT", "ENV_ARTIFACTS", "ENV_PARENT", "MLFLOW_RUN_NOTE", "RUN_RECORD", "Run", "artifact_location", "connect",
    "end_invocation", "experiment_name", "identity", "lineage_tags", "log_output", "metric_name", "model_id_of",
    "model_ids", "read_record", "resolve_uri", "stage_run", "start_invocation", "tracking_uri", "with_retry",
]
