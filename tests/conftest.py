"""Shared fixtures: an isolated MLflow store per test and a micro scratch model per session."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sophia import tracking

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "workflow" / "resources" / "data"
LANGUAGES = ["C++", "Java", "Ruby", "Rust", "Bash"]

# Small enough to build in seconds on one core; same code path as the embedded default.
MICRO_SCRATCH: dict[str, Any] = {
    "seed": 0,
    "threads": 1,
    "corpus": {"max_files": 12, "eval_files": 2},
    "tokenizer": {"vocab_size": 400},
    "architecture": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    },
    "training": {"steps": 6, "batch_size": 4, "seq_len": 32, "log_every": 2, "warmup_steps": 2},
}


def micro_config() -> dict[str, Any]:
    """A complete workflow config on the bundled fixture data, with absolute paths so it runs
    from any working directory."""
    return {
        "base_model": {"scratch": copy.deepcopy(MICRO_SCRATCH)},
        "datasets": {
            "alpaca": {
                "format": "code_alpaca",
                "path": str(FIXTURES / "codealpaca_mini.jsonl"),
                "tasks": {"instruct": {"n_train": 20, "n_eval": 5}},
            },
            "tiny": {
                "format": "tiny_codes",
                "path": str(FIXTURES / "tiny_codes_mini.jsonl"),
                "languages": list(LANGUAGES),
                "tasks": {"codegen": {"n_train": 10, "n_eval": 5}, "summary": {"n_train": 10, "n_eval": 5}},
            },
        },
    }


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every tracking call of the test at a fresh SQLite store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking.ENV_ARTIFACTS, str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "test")
    monkeypatch.delenv(tracking.ENV_PARENT, raising=False)
    return uri


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro scratch model, built once per session through the real stage function."""
    from sophia.base_model.stage import run_stage

    root = tmp_path_factory.mktemp("micro_model")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", tracking.ENV_ARTIFACTS, tracking.ENV_PARENT)}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ[tracking.ENV_ARTIFACTS] = str(root / "mlartifacts")
    os.environ.pop(tracking.ENV_PARENT, None)
    try:
        run_stage({"scratch": copy.deepcopy(MICRO_SCRATCH)}, root / "base")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return root / "base"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def runs_of(uri: str, experiment: str = "test") -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)
