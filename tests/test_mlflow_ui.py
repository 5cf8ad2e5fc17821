"""The study as its users read it: the micro run's MLflow store (LoggedModels per variant, metrics
filed under them, datasets, registry, system metrics, descriptions), then the MLflow UI itself in
headless Chromium, opened at the link `make mlflow-ui` prints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import LEAN_MLFLOW_SERVER
from conftest import ROOT, VENV_BIN, MicroRun

pytestmark = pytest.mark.e2e
ARTIFACTS = ROOT / "test-artifacts"
# The micro config: curricula alpaca, tiny, alpaca-tiny, tiny-alpaca; export and app of gptq+alpaca.
VARIANTS = ["base", "gptq", "gptq+alpaca", "gptq+tiny", "gptq+alpaca-tiny", "gptq+tiny-alpaca"]
INTERMEDIATE = ["gptq+tiny_codegen"]  # a step that completes no curriculum, named after its chain
FORMS = ["gptq+alpaca@merged", "gptq+alpaca@tflite"]


def _client(workdir: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")


@pytest.fixture(scope="module")
def study(micro_run: MicroRun) -> dict[str, Any]:
    workdir, result = micro_run.workdir, micro_run.result
    assert result.returncode == 0, result.stderr[-3000:]
    client = _client(workdir)
    exp = client.get_experiment_by_name("sophia")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=1000)}
    models = {m.name: m for m in client.search_logged_models([exp.experiment_id], max_results=1000)}
    return {"workdir": workdir, "client": client, "exp": exp, "runs": runs, "models": models}


def test_every_variant_is_a_logged_model_of_the_run_that_made_it(study: dict[str, Any]) -> None:
    runs, models = study["runs"], study["models"]
    assert sorted(models) == sorted(VARIANTS + INTERMEDIATE + FORMS)
    made_by = {"base": "base_model:scratch", "gptq": "quantize:w4g32", "gptq+alpaca": "finetune:alpaca",
               "gptq+tiny": "finetune:tiny_codegen/tiny_summary",
               "gptq+tiny-alpaca": "finetune:tiny_codegen/tiny_summary/alpaca",
               "gptq+alpaca-tiny": "finetune:alpaca/tiny_mixed", "gptq+tiny_codegen": "finetune:tiny_codegen",
               "gptq+alpaca@merged": "merge:gptq+alpaca", "gptq+alpaca@tflite": "export:gptq+alpaca"}
    for name, run_name in made_by.items():
        model, run = models[name], runs[run_name]
        assert model.source_run_id == run.info.run_id, name
        assert model.status == "READY" and model.tags["mlflow.model.isExternal"] == "true"
        assert Path(model.tags["sophia.path"]) == Path(run.data.tags["sophia.output_path"])
        assert len(model.tags["sophia.sha256"]) == 64
        assert model.model_id in {o.model_id for o in run.outputs.model_outputs}
        record = json.loads((Path(model.tags["sophia.path"]) / "mlflow_run.json").read_text())
        assert model.model_id in record["models"].values()


def test_evaluation_metrics_are_filed_under_the_variant_and_benchmark(study: dict[str, Any]) -> None:
    runs, models = study["runs"], study["models"]
    for variant in ("base", "gptq+alpaca"):
        by_dataset = {(m.dataset_name, m.key): m.value for m in models[variant].metrics}
        assert not [key for _, key in by_dataset if key.endswith((".stderr", ".n", "_seconds"))]
        for bench, metric in (("piqa", "acc"), ("humaneval", "pass_at_1")):
            run = runs[f"evaluate:{variant}:{bench}"]
            assert by_dataset[(bench, metric)] == run.data.metrics[metric]
            (dataset,) = run.inputs.dataset_inputs
            assert dataset.dataset.name == bench and [t.value for t in dataset.tags] == ["evaluation"]
            assert json.loads(dataset.dataset.profile)["num_rows"] >= 2
            inputs = study["client"].get_run(run.info.run_id).inputs  # search_runs leaves out model inputs
            assert [m.model_id for m in inputs.model_inputs] == [models[variant].model_id]
            assert run.data.tags["mlflow.note.content"].startswith(f"**evaluate** `{variant}:{bench}`")


def test_datasets_system_metrics_description_and_source(study: dict[str, Any]) -> None:
    runs, client = study["runs"], study["client"]
    step = runs["finetune:alpaca"]
    contexts = {d.dataset.name: [t.value for t in d.tags] for d in step.inputs.dataset_inputs}
    assert contexts == {"alpaca/instruct/train": ["training"], "alpaca/instruct/eval": ["evaluation"]}
    model_inputs = client.get_run(step.info.run_id).inputs.model_inputs
    assert {m.model_id for m in model_inputs} == {study["models"]["gptq"].model_id}
    data = {d.dataset.name: d.dataset for d in runs["data:alpaca"].inputs.dataset_inputs}
    assert json.loads(data["alpaca/instruct/train"].profile)["num_rows"] == 20
    quantize = {d.dataset.name: [t.value for t in d.tags] for d in runs["quantize:w4g32"].inputs.dataset_inputs}
    assert quantize["alpaca/instruct/train"] == ["calibration"]
    for name, run in runs.items():
        if name.startswith("workflow"):
            continue
        assert "system/cpu_utilization_percentage" in run.data.metrics, name
        assert "system/process_rss_megabytes" in run.data.metrics, name
        assert run.data.tags["mlflow.source.name"].startswith(f"rule {name.split(':')[0]}: python -m sophia."), name
        assert run.data.tags["mlflow.note.content"].startswith(f"**{name.split(':')[0]}**"), name
    assert len(client.get_metric_history(step.info.run_id, "system/cpu_utilization_percentage")) >= 2
    assert "| final_train_loss |" in step.data.tags["mlflow.note.content"]


def test_exported_form_is_registered_with_its_manifest(study: dict[str, Any]) -> None:
    client, workdir = study["client"], study["workdir"]
    (version,) = client.search_model_versions("name='sophia-gptq+alpaca-tflite'")
    manifest = json.loads((workdir / "results/export/gptq+alpaca/bundle/manifest.json").read_text())
    model = study["models"]["gptq+alpaca@tflite"]
    assert version.source == f"models:/{model.model_id}" and version.run_id == model.source_run_id
    assert version.tags["manifest.total_bytes"] == str(manifest["total_bytes"])
    for name, f in manifest["files"].items():
        assert version.tags[f"file.{name}.sha256"] == f["sha256"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SOPHIA_"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p).resolve() != VENV_BIN.resolve())
    return {**env, **LEAN_MLFLOW_SERVER}  # as `make mlflow-ui` runs it


@pytest.fixture(scope="module")
def mlflow_ui(study: dict[str, Any]) -> Iterator[str]:
    """The README's `mlflow ui` command in the run's folder (a free port instead of 5000); yields
    the link `python -m sophia.ui` prints (what `make mlflow-ui` and `make run` show)."""
    workdir, port = study["workdir"], _free_port()
    server = subprocess.Popen([str(VENV_BIN / "mlflow"), "ui", "--backend-store-uri", "sqlite:///results/mlflow.db",
                               "--port", str(port)], cwd=workdir, env=_env(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow ui did not start: {server.stderr.read()[-2000:] if server.stderr else ''}")
                time.sleep(1)
        printed = subprocess.run([sys.executable, "-m", "sophia.ui", "--port", str(port)], cwd=workdir, env=_env(),
                                 capture_output=True, text=True, check=True).stdout.strip()
        yield printed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_printed_link_opens_the_study_in_the_browser(study: dict[str, Any], mlflow_ui: str, tmp_path: Path) -> None:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.fail("Debian's chromium is missing: `make setup` installs it (apt-get install chromium)")
    if not (ROOT / "mobile" / "node_modules" / "playwright-core").is_dir():
        pytest.fail("mobile/node_modules missing: `make setup` runs npm ci in mobile/")
    runs, exp = study["runs"], study["exp"]
    link = f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    assert mlflow_ui.splitlines()[0].endswith(link), mlflow_ui
    assert mlflow_ui.splitlines()[1].endswith(link + "&viewStateShareKey=sophia-by-model"), mlflow_ui
    workflow = next(n for n in runs if n.startswith("workflow"))
    step = runs["finetune:alpaca"]
    expect = {
        "link": mlflow_ui.splitlines()[0].split()[-1], "workflow_run": workflow, "view": "sophia-by-model",
        "metrics": ["acc", "pass_at_1", "piqa (#", "humaneval (#"],
        "nested_runs": ["base_model:scratch", "quantize:w4g32", "finetune:alpaca", "evaluate:gptq+alpaca:piqa"],
        "models": VARIANTS + FORMS,
        "finetune": {"run_id": step.info.run_id, "model": "gptq+alpaca",
                     "datasets": ["alpaca/instruct/train"]},  # the UI shows the first, "+1" for the rest
    }
    (tmp_path / "expect.json").write_text(json.dumps(expect))
    result = subprocess.run(["node", str(ROOT / "tests" / "mlflow_ui.mjs"), "--expect", str(tmp_path / "expect.json"),
                             "--artifacts", str(ARTIFACTS)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
