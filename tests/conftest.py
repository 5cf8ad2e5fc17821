"""Shared fixtures: an isolated MLflow store per test, and one run of the whole workflow on a micro
config per session, whose outputs (base model, data, GPTQ, adapters, export, app) the tests read."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tiers
import yaml
from cluster import mlflow_server, slurm_cluster  # noqa: F401  (fixtures)
from family_studies import families_read, start_families
from micro_dag import MicroDag, SpreadFileScheduling, order_for_workers, shared_tmp
from sophia import tracking
from tiers import fast_tier_guard  # noqa: F401  (an autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "workflow" / "resources" / "data"
EVAL_FIXTURES = ROOT / "workflow" / "resources" / "eval" / "hub"
LANGUAGES = ["C++", "Java", "Ruby", "Rust", "Bash"]

MICRO_CONFIG = ROOT / ".test" / "config.yaml"


def micro_config() -> dict[str, Any]:
    """The micro study (.test/config.yaml), a fresh copy per call, with its paths (relative to the
    project root there) made absolute so it runs from any working directory."""
    cfg = yaml.safe_load(MICRO_CONFIG.read_text())
    for dataset in cfg["datasets"].values():
        dataset["path"] = str(ROOT / dataset["path"])
    cfg["evaluate"]["dataset_root"] = str(ROOT / cfg["evaluate"]["dataset_root"])
    return cfg


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made and nothing in them. Making the tables (Alembic's
    migrations) takes seconds; copying the file gives each test the same fresh store in milliseconds."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path_factory.mktemp("mlflow_empty")
    SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "mlartifacts")).engine.dispose()
    return root / "mlflow.db"


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> str:
    """Point every tracking call of the test at a fresh SQLite store."""
    import shutil

    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking.ENV_ARTIFACTS, str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "test")
    monkeypatch.delenv(tracking.ENV_PARENT, raising=False)
    return uri


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


@dataclass
class MicroRun:
    """The real Snakemake DAG on the micro config, run once per session in `workdir`."""

    workdir: Path
    result: subprocess.CompletedProcess[str]

    @property
    def results(self) -> Path:
        return self.workdir / "results"


def snakemake(workdir: Path, *args: str, timeout: int = 1800,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`snakemake` on the project's Snakefile in `workdir`, as a user runs it (see run_snakemake)."""
    return run_snakemake(workdir, *args, timeout=timeout, env=env)


def write_config(workdir: Path, cfg: dict[str, Any]) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


MICRO_DAG = pytest.StashKey[bool]()
FAMILY_DAGS = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    """Before the other hooks (`-m` deselects among them): mark each test's tier by what it uses
    (tiers.mark_by_fixtures). After them: micro_dag.order_for_workers on the tests left, for two
    workers, SLURM first, then by the micro output a file reads; the micro study starts only if a
    selected test reads it."""
    tiers.mark_by_fixtures(items)
    yield
    config.stash[MICRO_DAG] = order_for_workers(items)
    config.stash[FAMILY_DAGS] = families_read(items)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> SpreadFileScheduling | None:
    """`--dist loadfile` hands out whole files but the tests of micro_dag.SPREAD one by one."""
    return SpreadFileScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


@pytest.fixture(scope="session", autouse=True)
def _micro_dag_start(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MicroDag | None:
    """Starts the micro study at the run's first test when any selected test reads it, so it runs
    while the tests that do not read it run; every other worker attaches to the same run.
    pytest_sessionfinish stops it if it is still running."""
    if not request.config.stash.get(MICRO_DAG, False):
        return None
    root = shared_tmp(tmp_path_factory) / "micro"
    # Stages of a few seconds: sample system metrics every second so each run has a history.
    cmd, env = snakemake_command(root / "wf", env={"SOPHIA_SYSTEM_METRICS_INTERVAL": "1"})
    return MicroDag.start_once(root, lambda wf: write_config(wf, micro_config()), cmd, env)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without workers) stops a micro DAG (Phi or family) still running: its tests
    were deselected or failed first. Workers leave it: another may still be reading it."""
    if hasattr(session.config, "workerinput") or not hasattr(session.config, "_tmp_path_factory"):
        return
    base = session.config._tmp_path_factory.getbasetemp()
    for root in [base / "micro", *(p for p in sorted(base.glob("family-*")) if p.is_dir())]:
        MicroDag(root).stop_if_running()


@pytest.fixture(scope="session", autouse=True)
def _family_dags_start(request: pytest.FixtureRequest, _micro_dag_start: MicroDag | None,
                       tmp_path_factory: pytest.TempPathFactory) -> dict[str, MicroDag]:
    """The family studies a selected test reads (tests/family_studies.py), started with the run, each
    after the Phi micro study when that one runs."""
    families = request.config.stash.get(FAMILY_DAGS, [])
    if not families:
        return {}

    def command(wf: Path, cores: str) -> tuple[list[str], dict[str, str]]:
        return snakemake_command(wf, "--cores", cores, env={"SOPHIA_SYSTEM_METRICS_INTERVAL": "1"})

    return start_families(shared_tmp(tmp_path_factory), families, _micro_dag_start, command)


@pytest.fixture
def family_dag(family: str, _family_dags_start: dict[str, MicroDag]) -> MicroDag:
    """The micro study of `family` (a test parametrizes `family`), in progress."""
    assert family in _family_dags_start, f"the {family} study starts for every selected test that reads it"
    return _family_dags_start[family]


@pytest.fixture(scope="session")
def micro_dag(_micro_dag_start: MicroDag | None) -> MicroDag:
    """The micro study in progress: `.output(rel)` waits for one output only."""
    assert _micro_dag_start is not None, "the micro study starts for every selected test that reads it"
    return _micro_dag_start


@pytest.fixture(scope="session")
def micro_run(micro_dag: MicroDag) -> MicroRun:
    """The micro study once it has ended, every stage's real output made once: tests that only read an
    output read this run's, so the suite builds each heavy artifact (base, GPTQ, adapters,
    ONNX/TFLite, app) exactly once."""
    result = micro_dag.wait()
    if result.returncode != 0:
        pytest.fail(f"the micro workflow failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return MicroRun(micro_dag.workdir, result)


@pytest.fixture(scope="session")
def micro_model(micro_dag: MicroDag) -> Path:
    """The micro scratch model (stage base_model)."""
    return micro_dag.output("models/base")


@pytest.fixture(scope="session")
def micro_data(micro_dag: MicroDag) -> list[Path]:
    """The data stage's outputs: [alpaca, tiny]."""
    return [micro_dag.output(f"data/{name}") for name in micro_config()["datasets"]]


@pytest.fixture(scope="session")
def micro_gptq(micro_dag: MicroDag) -> Path:
    """The quantize stage's output."""
    return micro_dag.output("models/gptq")


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
def micro_merged(micro_dag: MicroDag) -> Path:
    """The float model the export stage converted: GPTQ dequantized, the alpaca adapter merged."""
    return micro_dag.output(f"merged/{EXPORTED}")


@pytest.fixture(scope="session")
def micro_export(micro_dag: MicroDag) -> Path:
    """The export stage's output for the merged micro model (both graphs, every precision)."""
    if not EXPORT_PY.is_file():
        pytest.fail(f"{EXPORT_PY} missing: `make setup` builds the export environment")
    return micro_dag.output(f"export/{EXPORTED}")


def kill_after_checkpoint(cmd: list[str], out: Path, step: int = 3, timeout: float = 300) -> None:
    """Start a training CLI and SIGKILL it once its checkpoint `step` is saved (older ones rotate away),
    the way a scheduler or a crash ends a job."""
    import signal
    import time

    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def saved_steps() -> int:
        return max((int(c.name.split("-")[1]) for c in (out / ".checkpoints").glob("checkpoint-*")), default=0)

    deadline = time.time() + timeout
    while saved_steps() < step:
        assert proc.poll() is None, "finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def assert_resumed_like_straight(resumed: Path, straight: Path, weights: str, mlflow_store: str) -> None:
    """A killed-then-resumed training ends where an uninterrupted one ends: the same `weights` file
    (CPU, fixed seeds: equal up to float summation order), and two FINISHED runs, since the resumed
    attempt continued the killed attempt's run."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(resumed / weights), load_file(straight / weights)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    runs = runs_of(mlflow_store)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


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


def benchmark_script(name: str) -> Any:
    """benchmarks/<name>.py as a module (the folder is scripts, not a package), for tests of its
    arithmetic."""
    import importlib.util

    if str(ROOT / "benchmarks") not in sys.path:  # as when run as a script: its sibling modules (record)
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def runs_of(uri: str, experiment: str = "test") -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


# --- The micro study run once through the real Snakemake DAG ----------------------------------------
VENV_BIN = Path(sys.executable).parent


def snakemake_command(workdir: Path, *args: str,
                      env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """`.venv/bin/snakemake` on `workdir/config.yaml`, as a user runs it: no activated environment,
    the environment's bin folder NOT on PATH, so jobs must find the interpreter Snakemake runs in."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and Path(p).resolve() != VENV_BIN.resolve())
    extra = env or {}
    full = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", tracking.ENV_PARENT, tracking.ENV_ARTIFACTS,
                "VIRTUAL_ENV"):
        full.pop(var, None)
    full.update(extra)
    return ([str(VENV_BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
             "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args], full)


def run_snakemake(workdir: Path, *args: str, timeout: int = 2400,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd, full = snakemake_command(workdir, *args, env=env)
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout)


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
