from __future__ import annotations

import hashlib
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
    assert {k: v for k, v in data.data.metrics.items() if not k.startswith("system/")} == {"loss": 1.5, "acc_none": 0.5}
    assert "system/cpu_utilization_percentage" in data.data.metrics  # every stage run samples its machine
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
import json, sys
from pathlib import Path
from sophia import tracking
from sophia.tracking import data as tracking_data
i, root = int(sys.argv[1]), Path(sys.argv[2])
out = root / f"out{i}"
(out / "task").mkdir(parents=True)
(out / "task" / "train.jsonl").write_text("".join(json.dumps({"n": n, "w": i}) + "\\n" for n in range(i + 1)))
(out / "weights.bin").write_bytes(bytes([i]) * 64)
with tracking.stage_run("stress", f"w{i}", {f"p{k}": k for k in range(30)}) as run:
    run.log_datasets(tracking_data.data_splits(out))
    for chunk in range(4):
        run.log_series({f"m{j}": [(s, s * 0.5 + i) for s in range(chunk * 50, chunk * 50 + 50)] for j in range(3)})
        run.log_metrics({"single": float(chunk)}, step=chunk)
        run.set_tags({f"t{chunk}": "x"})
    run.log_text("artifact " + str(i), "note.txt")
    run.write_record(out, "stress", f"w{i}")
    tracking.log_output(run, out, out, models=(f"v{i}",), model_type="test")
    ds = tracking_data.from_records([{"q": i}], "bench", "bench")
    run.log_datasets([(ds, "evaluation")])
    run.log_metrics({"score": i / 10}, model_id=tracking.model_id_of(out, f"v{i}"), dataset=ds)
    run.register_model("stress-registry", tracking.model_id_of(out), {"writer": i})
    run.describe(f"writer {i}", {"score": i / 10})
"""


@pytest.mark.e2e  # processes writing to one store at once: a load test
def test_parallel_writers_lose_nothing(mlflow_store: str, tmp_path: Path) -> None:
    """Snakemake runs jobs as parallel processes against one SQLite file; none may lose data:
    metrics, tags, artifacts, LoggedModels and their metrics, dataset inputs, registry versions,
    system metrics sampled by a background thread, descriptions.

    The store is created by the first writers racing each other, as in a first `make run`."""
    n = 4  # two per core: every write contends; 8 caught nothing more here and cost twice the CPU
    env = {**os.environ, tracking.ENV_PARENT: "", "SOPHIA_SYSTEM_METRICS_INTERVAL": "0.2"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(i), str(tmp_path)], env=env, stderr=subprocess.PIPE,
                         text=True)
        for i in range(n)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    runs = runs_of(mlflow_store)
    assert len(runs) == n
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    for run in runs:
        i = int(run.info.run_name.split(":w")[1])
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 30
        for j in range(3):
            history = client.get_metric_history(run.info.run_id, f"m{j}")
            assert sorted(m.step for m in history) == list(range(200))
        assert len(client.get_metric_history(run.info.run_id, "single")) == 4
        assert {f"t{c}" for c in range(4)} <= set(run.data.tags)
        note = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path))
        assert Path(note).read_text().startswith("artifact ")
        # at least the first and the closing sample, with consecutive steps
        cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        assert len(cpu) >= 2 and sorted(m.step for m in cpu) == list(range(len(cpu)))
        assert "system/process_rss_megabytes" in run.data.metrics
        contexts = {d.dataset.name: [t.value for t in d.tags] for d in run.inputs.dataset_inputs}
        assert contexts == {f"out{i}/task/train": ["training"], "bench": ["evaluation"]}
        assert json.loads(run.inputs.dataset_inputs[0].dataset.profile)["num_rows"] in (1, i + 1)
        (output,) = run.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.name == f"v{i}" and model.source_run_id == run.info.run_id and model.status == "READY"
        assert model.tags["sophia.path"] == str(tmp_path / f"out{i}")
        assert model.tags["mlflow.model.isExternal"] == "true"
        assert [(m.key, m.value, m.dataset_name) for m in model.metrics] == [("score", i / 10, "bench")]
        assert run.data.tags["mlflow.note.content"].startswith(f"**stress** `w{i}`")
        assert "| score | " in run.data.tags["mlflow.note.content"]
    versions = client.search_model_versions("name='stress-registry'")
    assert {v.source for v in versions} == {f"models:/{r.outputs.model_outputs[0].model_id}" for r in runs}
    assert sorted(int(v.version) for v in versions) == list(range(1, n + 1))
    assert sorted(int(v.tags["writer"]) for v in versions) == list(range(n))


def test_run_record_roundtrip(mlflow_store: str, tmp_path: Path) -> None:
    with tracking.stage_run("s", "v", {}) as run:
        path = run.write_record(tmp_path, "s", "v")
    record = json.loads(path.read_text())
    assert record["run_id"] == run.run_id and record["tracking_uri"] == mlflow_store
    assert tracking.read_record(tmp_path / "file-inside.jsonl")["run_id"] == run.run_id


def test_model_names_digests_and_links() -> None:
    from sophia.tracking import models as tracking_models
    from sophia.tracking import views

    assert tracking_models.model_name("gptq+tiny_codegen/tiny_summary") == "gptq+tiny_codegen+tiny_summary"
    assert tracking_models.model_name("hub:microsoft/phi-2") == "hub+microsoft+phi-2"
    manifest = {"b.bin": {"sha256": "2" * 64, "bytes": 2}, "a.json": {"sha256": "1" * 64, "bytes": 1}}
    lines = f"{'1' * 64}  a.json\n{'2' * 64}  b.bin\n"  # `sha256sum` order and format
    assert tracking_models.manifest_sha256(manifest) == hashlib.sha256(lines.encode()).hexdigest()
    tags = tracking_models.manifest_tags({"model": "m", "total_bytes": 3, "files": manifest})
    assert tags == {"manifest.model": "m", "manifest.total_bytes": "3", "file.a.json.sha256": "1" * 64,
                    "file.a.json.bytes": "1", "file.b.bin.sha256": "2" * 64, "file.b.bin.bytes": "2"}
    assert views.runs_url("http://h:1/", "7") == "http://h:1/#/experiments/7/runs?workflowType=machine_learning"
    assert views.runs_url("http://h:1", "7", "v").endswith("runs?workflowType=machine_learning&viewStateShareKey=v")


def test_model_id_of_reads_the_record(tmp_path: Path, caplog: pytest.LogCaptureFixture, mlflow_store: str) -> None:
    record = {"run_id": "r", "tracking_uri": mlflow_store, "models": {"gptq+a": "m-1", "gptq+b": "m-2"}}
    (tmp_path / "mlflow_run.json").write_text(json.dumps(record))
    assert tracking.model_id_of(tmp_path, "gptq+b") == "m-2"
    assert tracking.model_id_of(tmp_path / "scores.json", "gptq+a") == "m-1"
    assert tracking.model_ids(tmp_path, None) == ("m-1", "m-2")
    assert tracking.model_id_of(tmp_path, "gptq+c") is None and "no LoggedModel gptq+c" in caplog.text
    assert tracking.model_id_of(tmp_path / "nowhere") is None
    # an output logged to another store (e.g. before MLFLOW_TRACKING_URI changed): nothing to link
    (tmp_path / "mlflow_run.json").write_text(json.dumps({**record, "tracking_uri": "http://elsewhere"}))
    assert tracking.model_id_of(tmp_path, "gptq+a") is None and tracking.model_ids(tmp_path) == ()
