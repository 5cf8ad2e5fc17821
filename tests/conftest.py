"""Shared fixtures: an isolated MLflow store per test and a micro scratch model per session."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sophia import tracking

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "workflow" / "resources" / "data"
EVAL_FIXTURES = ROOT / "workflow" / "resources" / "eval" / "hub"
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
        "max_position_embeddings": 768,  # the tiny-codes fixture rows run to ~730 micro tokens
    },
    "training": {"steps": 6, "batch_size": 4, "seq_len": 32, "log_every": 2, "warmup_steps": 2},
}


# hidden 64 / intermediate 128: group size 32 divides both.
MICRO_QUANTIZE: dict[str, Any] = {
    "bits": 4,
    "group_size": 32,
    "calibration": {"dataset": "alpaca", "task": "instruct", "n_samples": 16, "max_length": 64},
    "eval": {"max_samples": 5, "max_length": 64, "logit_samples": 4},
}


MICRO_FINETUNE: dict[str, Any] = {
    "lora": {"r": 8, "alpha": 16},
    "training": {"batch_size": 4, "logging_steps": 1, "eval_steps": 2, "save_steps": 2, "learning_rate": 0.001},
    "phases": {
        "alpaca": {"dataset": "alpaca", "tasks": ["instruct"], "epochs": 1, "max_length": 64},
        "tiny_codegen": {"dataset": "tiny", "tasks": ["codegen"], "epochs": 1, "max_length": 256},
        "tiny_summary": {"dataset": "tiny", "tasks": ["summary"], "epochs": 1, "max_length": 640},
        "tiny_mixed": {"dataset": "tiny", "tasks": ["codegen", "summary"], "epochs": 1, "max_length": 640},
    },
    "curricula": {
        "alpaca": ["alpaca"],
        "tiny": ["tiny_codegen", "tiny_summary"],
        "alpaca-tiny": ["alpaca", "tiny_mixed"],
        "tiny-alpaca": ["tiny_codegen", "tiny_summary", "alpaca"],
    },
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
        "quantize": copy.deepcopy(MICRO_QUANTIZE),
        "finetune": copy.deepcopy(MICRO_FINETUNE),
        "evaluate": {
            "models": ["base", "gptq+alpaca"],
            "dataset_root": str(EVAL_FIXTURES),
            "benchmarks": {"piqa": {"limit": 2},
                           "humaneval": {"limit": 2, "max_gen_toks": 8, "n_samples": 2, "k": [1, 2]}},
            "sandbox": {"timeout_s": 5},
        },
        "export": {
            "models": ["gptq+alpaca"],
            "window": 32,
            "kv_cache": 48,
            "bundle_precision": "fp32",
            "parity": {"inputs": 2, "teacher_forced_steps": 16, "greedy_prompts": 2, "greedy_tokens": 8},
        },
        "mobile": {"model": "gptq+alpaca"},
        "reference_prompts": ["Give me a program that checks if a number is prime.", "Reverse a string."],
        "generation": {"max_new_tokens": 8},
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
    with isolated_tracking(root):
        run_stage({"scratch": copy.deepcopy(MICRO_SCRATCH)}, root / "base")
    return root / "base"


@contextmanager
def isolated_tracking(root: Path) -> Iterator[None]:
    """Session fixtures log to their own store, whatever a test's monkeypatch does later."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", tracking.ENV_ARTIFACTS, tracking.ENV_PARENT)
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "test"
    os.environ[tracking.ENV_ARTIFACTS] = str(root / "mlartifacts")
    os.environ.pop(tracking.ENV_PARENT, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def micro_data(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The data stage's outputs for the micro config, built once per session."""
    from sophia.config import validate
    from sophia.data.stage import run_stage

    root = tmp_path_factory.mktemp("micro_data")
    cfg = validate(micro_config())
    with isolated_tracking(root):
        for name, spec in cfg["datasets"].items():
            run_stage(name, spec, micro_model, root / name)
    return [root / name for name in cfg["datasets"]]


@pytest.fixture(scope="session")
def micro_gptq(micro_model: Path, micro_data: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quantize stage's output for the micro config, built once per session."""
    from sophia.config import validate
    from sophia.quantize.stage import run_stage

    root = tmp_path_factory.mktemp("micro_gptq")
    cfg = validate(micro_config())
    spec = {k: cfg[k] for k in ("quantize", "reference_prompts", "generation")}
    with isolated_tracking(root):
        run_stage(spec, micro_model, micro_data, root / "gptq")
    return root / "gptq"


EXPORT_PY = ROOT / ".venv-export" / "bin" / "python"
SOPHIA_EXPORT = ROOT / ".venv-export" / "bin" / "sophia"
EXPORT_PROMPTS = ["Give me a program that checks if a number is prime.", "Reverse a string."]
EXPORT_SPEC: dict[str, Any] = {
    "export": {"window": 32, "kv_cache": 48, "bundle_precision": "fp32", "python": str(EXPORT_PY),
               "parity": {"inputs": 2, "teacher_forced_steps": 16, "greedy_prompts": 2, "greedy_tokens": 8}},
    "reference_prompts": EXPORT_PROMPTS,
}


@pytest.fixture(scope="session")
def micro_export(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export stage's output for the micro base model (both graphs, every precision)."""
    from sophia.export import stage

    if not EXPORT_PY.is_file():
        pytest.fail(f"{EXPORT_PY} missing: `make setup` builds the export environment")
    root = tmp_path_factory.mktemp("export")
    with isolated_tracking(root):
        stage.run_stage(copy.deepcopy(EXPORT_SPEC), "base", micro_model, root / "base")
    return root / "base"


def config_error(mutate: Any, section: str | None = None) -> str:
    """The ConfigError message of the micro config after `mutate` (applied to one section or all)."""
    from sophia.config import validate
    from sophia.errors import ConfigError

    cfg = micro_config()
    mutate(cfg if section is None else cfg[section])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    return str(err.value)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def runs_of(uri: str, experiment: str = "test") -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


GGUF_SPEC: dict[str, Any] = {
    "gguf": {"types": ["f16", "Q4_K_M"], "parity": {"greedy_tokens": 12, "logit_texts": 2,
                                                   "eval": {"max_samples": 4, "max_length": 64}}},
    "pre_tokenizer": "gpt-2",
    "reference_prompts": ["Give me a program that checks if a number is prime.", "Reverse a string."],
}


@pytest.fixture(scope="session")
def micro_gguf(micro_model: Path, micro_data: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gguf stage's output for the micro base model (f16 and Q4_K_M, Modelfile, parity.json)."""
    from sophia.gguf import stage

    root = tmp_path_factory.mktemp("gguf")
    with isolated_tracking(root):
        stage.run_stage(copy.deepcopy(GGUF_SPEC), "base", micro_model, micro_data, root / "base", threads=2)
    return root / "base"
