from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import micro_config, runs_of
from sophia import checkpoint
from sophia.base_model import corpus
from sophia.base_model.stage import run_stage
from sophia.errors import ConfigError, ModelError


def scratch_spec(**training: Any) -> dict[str, Any]:
    spec = {"scratch": micro_config()["base_model"]["scratch"]}
    spec["scratch"]["training"].update(training)
    return spec


def test_corpus_is_stdlib_and_held_out() -> None:
    c = corpus.load_corpus(max_files=10, eval_files=3, seed=1)
    assert len(c.train) == 7 and len(c.eval) == 3
    assert all(f.endswith(".py") and "test" not in Path(f).parts[:-1] for f in c.files)
    assert corpus.load_corpus(10, 3, 1).digest == c.digest != corpus.load_corpus(10, 3, 2).digest


def test_scratch_model_outputs(micro_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = json.loads((micro_model / "base_model.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(micro_model)
    tok = AutoTokenizer.from_pretrained(micro_model)
    assert type(model).__name__ == "PhiForCausalLM"
    assert sum(summary["parameters"].values()) == sum(p.numel() for p in model.parameters())
    assert summary["weights_bytes"] == (micro_model / "model.safetensors").stat().st_size
    assert tok.decode(tok("def f(x):\n    return x")["input_ids"]) == "def f(x):\n    return x"
    assert tok.eos_token == "<|endoftext|>" and model.config.eos_token_id == tok.eos_token_id
    t = summary["training"]
    assert t["eval_loss_after"] < t["eval_loss_before"]  # six steps already learn something
    card = (micro_model / "README.md").read_text()
    assert "tiny test model" in card and "not** a useful coding assistant" in card
    assert (micro_model / "loss_curve.png").stat().st_size > 1000


def test_scratch_is_deterministic_per_seed(micro_model: Path, mlflow_store: str, tmp_path: Path) -> None:
    again = tmp_path / "again"
    run_stage(scratch_spec(), again)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (micro_model / name).read_bytes(), name
    other = copy.deepcopy(scratch_spec())
    other["scratch"]["seed"] = 1
    run_stage(other, tmp_path / "other")
    assert (tmp_path / "other" / "model.safetensors").read_bytes() != (micro_model / "model.safetensors").read_bytes()


def test_scratch_run_logs_curve_and_size(micro_model: Path, mlflow_store: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_stage(scratch_spec(), tmp_path / "m")
    (run,) = runs_of(mlflow_store)
    assert run.info.status == "FINISHED" and run.info.run_name == "base_model:scratch"
    assert run.data.metrics["parameters"] > 0 and run.data.metrics["weights_bytes"] > 0
    history = MlflowClient(mlflow_store).get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [2, 4, 6]
    assert run.data.params["scratch.training.steps"] == "6"
    counts = json.loads((micro_model / "base_model.json").read_text())["parameters"]
    assert run.data.params["parameters_float32"] == str(sum(counts.values()))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["scratch"]["architecture"].update(hidden_size=65), "not divisible by num_attention_heads"),
        (lambda s: s["scratch"]["training"].update(seq_len=1024), "exceeds architecture.max_position_embeddings"),
        (lambda s: s.update(path="/x"), "set exactly one of hub, path, scratch"),
        (lambda s: s["scratch"].update(colour="red"), "base_model.scratch.colour: unknown key"),
    ],
)
def test_bad_scratch_spec(mutate, expected: str, mlflow_store: str, tmp_path: Path) -> None:
    spec = scratch_spec()
    mutate(spec)
    with pytest.raises(ConfigError, match=expected):
        run_stage(spec, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert runs_of(mlflow_store) == []  # refused before any work: no corpus read, no run started


def test_local_path_source(micro_model: Path, mlflow_store: str, tmp_path: Path) -> None:
    src = tmp_path / "mine"
    shutil.copytree(micro_model, src)
    summary = run_stage({"path": str(src)}, tmp_path / "base")
    assert summary["source"] == "path:mine"
    assert (tmp_path / "base" / "model.safetensors").read_bytes() == (micro_model / "model.safetensors").read_bytes()
    record = json.loads((tmp_path / "base" / "mlflow_run.json").read_text())
    assert record["run_id"] != json.loads((micro_model / "mlflow_run.json").read_text())["run_id"]


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("config.json", "has no config.json"),
        ("model.safetensors", "has no weights"),
        ("tokenizer.json tokenizer_config.json", "has no tokenizer files"),
    ],
)
def test_incomplete_local_model(remove: str, expected: str, micro_model: Path, mlflow_store: str,
                                tmp_path: Path) -> None:
    src = tmp_path / "broken"
    shutil.copytree(micro_model, src)
    for name in remove.split():
        (src / name).unlink()
    with pytest.raises(ModelError, match=expected):
        run_stage({"path": str(src)}, tmp_path / "base")
    assert not (tmp_path / "base").exists()
    assert [r.info.status for r in runs_of(mlflow_store)] == ["FAILED"]


def test_missing_local_path(mlflow_store: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is not a directory"):
        run_stage({"path": str(tmp_path / "nope")}, tmp_path / "base")


class _Info:
    sha = "0123abcd"


def test_hub_source(micro_model: Path, mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real download code, with the hub replaced by a local snapshot (no network here)."""
    import huggingface_hub

    calls: dict[str, Any] = {}

    def model_info(self: Any, repo_id: str, revision: str) -> _Info:
        calls["info"] = (repo_id, revision)
        return _Info()

    def snapshot_download(repo_id: str, revision: str, local_dir: Path, allow_patterns: list[str]) -> str:
        calls["download"] = (repo_id, revision, allow_patterns)
        for f in micro_model.iterdir():
            shutil.copy2(f, local_dir)
        (Path(local_dir) / ".cache").mkdir()
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    summary = run_stage({"hub": "microsoft/phi-2", "revision": "main"}, tmp_path / "base")
    assert calls["info"] == ("microsoft/phi-2", "main")
    assert calls["download"][1] == "0123abcd"  # pinned to the resolved commit, not the moving branch
    assert "*.safetensors" in calls["download"][2] and "*.bin" not in calls["download"][2]
    assert summary["hub_commit"] == "0123abcd" and summary["source"] == "hub:microsoft/phi-2"
    assert not (tmp_path / "base" / ".cache").exists()


def test_hub_failure(mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*_: Any, **__: Any) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", offline)
    with pytest.raises(ModelError, match=r"base_model.hub: cannot download microsoft/phi-2@main: network unreachable"):
        run_stage({"hub": "microsoft/phi-2"}, tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_parameter_counts_without_safetensors(micro_model: Path, tmp_path: Path) -> None:
    """Legacy .bin checkpoints are counted on the meta device, never unpickled."""
    src = tmp_path / "bin"
    shutil.copytree(micro_model, src)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    assert checkpoint.parameter_counts(src) == checkpoint.parameter_counts(micro_model)
