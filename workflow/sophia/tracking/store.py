"""Where runs go: the tracking URI, the experiment, and a client that survives a busy SQLite store.

Why retries: several Snakemake jobs write to one SQLite file at once, SQLite allows one writer,
and a busy database raises "database is locked".
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_EXPERIMENT = "sophia"
DEFAULT_ARTIFACT_LOCATION = "results/mlartifacts"
ENV_ARTIFACTS = "SOPHIA_MLFLOW_ARTIFACT_LOCATION"
# MLflow 3's UI opens an experiment in its GenAI view unless told it holds model training.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
T = TypeVar("T")


def tracking_uri() -> str:
    return resolve_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)


def resolve_uri(uri: str) -> str:
    """Make a relative sqlite URI absolute so every job, whatever its cwd, hits the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def metric_name(name: str) -> str:
    """MLflow accepts [A-Za-z0-9_-. /]; tools like lm-eval emit `acc,none`, so map the rest to `_`."""
    return re.sub(r"[^\w\-. /]", "_", name).strip("_") or "metric"


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def with_retry(fn: Callable[..., T], *args: Any, attempts: int = 40, **kwargs: Any) -> T:
    """Call `fn`, retrying with jittered backoff while SQLite reports a concurrent writer."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MLflow wraps SQLAlchemy errors in MlflowException
            if not _is_lock_error(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


@contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """Serialise first contact with a SQLite store: MLflow creates tables and runs migrations
    on connect, and two processes doing that at once corrupt each other's schema setup."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def artifact_location() -> str | None:
    """A URI (s3://...) is used as given. A local path is used with a local store only: behind a
    tracking server, jobs on other nodes could not reach it, so the server's artifact store
    (`mlflow server --artifacts-destination`) receives the artifacts instead."""
    loc = os.environ.get(ENV_ARTIFACTS) or DEFAULT_ARTIFACT_LOCATION
    if "://" in loc:
        return loc
    if tracking_uri().startswith(("http://", "https://")):
        return None
    return Path(loc).resolve().as_uri()


def connect() -> tuple[Any, str]:
    """Return (MlflowClient, experiment id), creating the experiment on first use."""
    from mlflow import MlflowClient

    uri = tracking_uri()
    with _init_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        name = experiment_name()
        exp = with_retry(client.get_experiment_by_name, name)
        if exp is None:
            exp_id = with_retry(client.create_experiment, name, artifact_location=artifact_location(),
                                tags={EXPERIMENT_KIND: MODEL_TRAINING})
        else:
            exp_id = exp.experiment_id
    return client, exp_id
