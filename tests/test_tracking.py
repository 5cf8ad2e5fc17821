from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import runs_of
from sophia import tracking


def test_metric_names_are_made_acceptable() -> None:
    assert tracking.metric_name("acc,none") == "acc_none"
    assert tracking.metric_name("pass@1") == "pass_1"
    assert tracking.metric_name("loss/train.mean") == "loss/train.mean"


def test_relative_sqlite_uri_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_uri("sqlite:///results/m.db") == f"sqlite:///{tmp_path}/results/m.db"
    assert tracking.resolve_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert tracking.resolve_uri("http://mlflow:5000") == "http://mlflow:5000"


def test_stage_run_tags_lineage_and_parent(mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracking.start_invocation({"a": 1}, ["snakemake", "all"])
    monkeypatch.setenv(tracking.ENV_PARENT, parent)
    upstream = tmp_path / "up"
    upstream.mkdir()
    with tracking.stage_run("base_model", "scratch", {"x": {"y": 1}}) as up:
        up.write_record(upstream, "base_model", "scratch")
    with tracking.stage_run("data", "alpaca", {"n": 3, "langs": ["C++"]}, inputs={"base_model": upstream}) as run:
        run.log_series({"loss": [(1, 2.0), (2, 1.5)]})
        run.log_metrics({"acc,none": 0.5})
    tracking.end_invocation(parent, ok=True)

    runs = {r.info.run_name: r for r in runs_of(mlflow_store)}
    data = runs["data:alpaca"]
    assert data.info.status == "FINISHED"
    assert data.data.tags["mlflow.parentRunId"] == parent
    assert data.data.tags["sophia.input.base_model"] == up.run_id
    assert data.data.tags["sophia.stage"] == "data" and data.data.tags["sophia.variant"] == "alpaca"
    assert len(data.data.tags["sophia.config_digest"]) == 12
    assert data.data.params == {"n": "3", "langs": '["C++"]'}
    assert data.data.metrics == {"loss": 1.5, "acc_none": 0.5}
    assert runs["base_model:scratch"].data.params == {"x.y": "1"}
    assert runs[next(n for n in runs if n.startswith("workflow"))].info.status == "FINISHED"


def test_failing_stage_marks_run_failed(mlflow_store: str) -> None:
    with pytest.raises(ValueError), tracking.stage_run("data", "broken", {}):
        raise ValueError("bad row")
    (run,) = runs_of(mlflow_store)
    assert run.info.status == "FAILED"


def test_missing_input_record_is_not_fatal(mlflow_store: str, tmp_path: Path) -> None:
    with tracking.stage_run("data", "x", {}, inputs={"base_model": tmp_path}):
        pass
    (run,) = runs_of(mlflow_store)
    assert "sophia.input.base_model" not in run.data.tags


_WRITER = """
import sys
from sophia import tracking
i = int(sys.argv[1])
with tracking.stage_run("stress", f"w{i}", {f"p{k}": k for k in range(30)}) as run:
    for chunk in range(4):
        run.log_series({f"m{j}": [(s, s * 0.5 + i) for s in range(chunk * 50, chunk * 50 + 50)] for j in range(3)})
        run.log_metrics({"single": float(chunk)}, step=chunk)
        run.set_tags({f"t{chunk}": "x"})
    run.log_text("artifact " + str(i), "note.txt")
"""


def test_parallel_writers_lose_nothing(mlflow_store: str, tmp_path: Path) -> None:
    """Snakemake runs jobs as parallel processes against one SQLite file; none may lose data.

    The store is created by the first writers racing each other, as in a first `make run`."""
    n = 8
    env = {**os.environ, tracking.ENV_PARENT: ""}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(i)], env=env, stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    runs = runs_of(mlflow_store)
    assert len(runs) == n
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 30
        for j in range(3):
            history = client.get_metric_history(run.info.run_id, f"m{j}")
            assert sorted(m.step for m in history) == list(range(200))
        assert len(client.get_metric_history(run.info.run_id, "single")) == 4
        assert {f"t{c}" for c in range(4)} <= set(run.data.tags)
        note = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path))
        assert Path(note).read_text().startswith("artifact ")


def test_run_record_roundtrip(mlflow_store: str, tmp_path: Path) -> None:
    with tracking.stage_run("s", "v", {}) as run:
        path = run.write_record(tmp_path, "s", "v")
    record = json.loads(path.read_text())
    assert record["run_id"] == run.run_id and record["tracking_uri"] == mlflow_store
    assert tracking.read_record(tmp_path / "file-inside.jsonl")["run_id"] == run.run_id
