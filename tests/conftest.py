"""Shared fixtures: an isolated MLflow store per test, and one run of the whole workflow on a micro
config per session, whose outputs (base model, data, GPTQ, adapters, export, app) the tests read."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
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


@dataclass
class MicroRun:
    """The real Snakemake DAG on the micro config, run once per session in `workdir`."""

    workdir: Path
    result: subprocess.CompletedProcess[str]

    @property
    def results(self) -> Path:
        return self.workdir / "results"


def snakemake(workdir: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    """`snakemake` on the project's Snakefile in `workdir`, as a user runs it (its config.yaml)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", tracking.ENV_PARENT, tracking.ENV_ARTIFACTS):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


def write_config(workdir: Path, cfg: dict[str, Any]) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> MicroRun:
    """Every stage's real output, made once: tests that only read an output read this run's, so the
    suite builds each heavy artifact (base, GPTQ, adapters, ONNX/TFLite, app) exactly once."""
    workdir = tmp_path_factory.mktemp("wf")
    write_config(workdir, micro_config())
    result = snakemake(workdir)
    if result.returncode != 0:
        pytest.fail(f"the micro workflow failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return MicroRun(workdir, result)


@pytest.fixture(scope="session")
def micro_model(micro_run: MicroRun) -> Path:
    """The micro scratch model (stage base_model)."""
    return micro_run.results / "models" / "base"


@pytest.fixture(scope="session")
def micro_data(micro_run: MicroRun) -> list[Path]:
    """The data stage's outputs: [alpaca, tiny]."""
    return [micro_run.results / "data" / name for name in micro_config()["datasets"]]


@pytest.fixture(scope="session")
def micro_gptq(micro_run: MicroRun) -> Path:
    """The quantize stage's output."""
    return micro_run.results / "models" / "gptq"


EXPORT_PY = ROOT / ".venv-export" / "bin" / "python"
SOPHIA_EXPORT = ROOT / ".venv-export" / "bin" / "sophia"
EXPORT_PROMPTS = ["Give me a program that checks if a number is prime.", "Reverse a string."]
EXPORT_SPEC: dict[str, Any] = {
    "export": {"window": 32, "kv_cache": 48, "bundle_precision": "fp32", "python": str(EXPORT_PY),
               "parity": {"inputs": 2, "teacher_forced_steps": 16, "greedy_prompts": 2, "greedy_tokens": 8}},
    "reference_prompts": EXPORT_PROMPTS,
}
EXPORTED = "gptq+alpaca"  # the micro config's export.models


@pytest.fixture(scope="session")
def micro_merged(micro_run: MicroRun) -> Path:
    """The float model the export stage converted: GPTQ dequantized, the alpaca adapter merged."""
    return micro_run.results / "merged" / EXPORTED


@pytest.fixture(scope="session")
def micro_export(micro_run: MicroRun) -> Path:
    """The export stage's output for the merged micro model (both graphs, every precision)."""
    if not EXPORT_PY.is_file():
        pytest.fail(f"{EXPORT_PY} missing: `make setup` builds the export environment")
    return micro_run.results / "export" / EXPORTED


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
