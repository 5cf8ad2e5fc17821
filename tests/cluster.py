"""The SLURM side of the suite: the one-node cluster of scripts/slurm-cluster.sh, a shared MLflow
server (as a cluster's jobs need one), and a stub `sbatch` that records what the executor plugin
submits. tests/conftest.py exposes the fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM_SCRIPT = ROOT / "scripts" / "slurm-cluster.sh"
SLURM_BINARIES = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd")


@dataclass
class SlurmCluster:
    env: dict[str, str]  # what a client needs (SLURM_CONF, and USER, which the plugin reads)
    start_seconds: float


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The one-node cluster of scripts/slurm-cluster.sh for the session. Starting is idempotent:
    a cluster already up is reused and left running; one this pytest run started is stopped at the end."""
    import getpass
    import shutil
    import subprocess
    import time

    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root: its daemons run as the slurm, munge and mysql users")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [b for b in SLURM_BINARIES if shutil.which(b, path=path) is None]
    if missing:
        pytest.skip(f"SLURM test cluster not installed (missing {', '.join(missing)}): `make system` as root")
    env = {**os.environ, "PATH": path}
    was_up = subprocess.run([SLURM_SCRIPT, "status"], env=env, capture_output=True).returncode == 0
    start = time.monotonic()
    result = subprocess.run(["timeout", "-k", "10", "300", SLURM_SCRIPT, "start"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"scripts/slurm-cluster.sh start failed:\n{result.stdout}{result.stderr}"
    seconds = time.monotonic() - start
    conf = subprocess.run([SLURM_SCRIPT, "env"], env=env, capture_output=True, text=True, check=True)
    cluster_env = {"SLURM_CONF": conf.stdout.strip().split("=", 1)[1], "USER": getpass.getuser(), "PATH": path}
    try:
        yield SlurmCluster(cluster_env, seconds)
    finally:
        if not was_up:
            subprocess.run(["timeout", "-k", "10", "120", SLURM_SCRIPT, "stop"], env=env, capture_output=True)


# MLflow's server starts a job runner (GenAI scorers, prompt optimisation; Sophia uses none): eight more
# processes that import mlflow, about 20 s of CPU per server; and four uvicorn workers, each importing the
# server app (one serves a test's few clients). As the Makefile runs `make mlflow-ui`.
LEAN_MLFLOW_SERVER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_WORKERS": "1"}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An `mlflow server` on loopback (SQLite backend, its own artifact store), as a cluster's jobs
    need it: they run on other nodes and cannot share the local SQLite file. Yields its URI."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")  # open while the server runs
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **LEAN_MLFLOW_SERVER})
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, (root / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server not up after 300 s"
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def stub_sbatch(bin_dir: Path, record: Path, then: str = "") -> None:
    """Put an `sbatch` into bin_dir (first on PATH) that records the executor plugin's arguments
    (NUL-separated, in record/args) and submits nothing. `then` also runs those arguments through a
    command (e.g. the real `sbatch --test-only`), its output and exit status in record/out and
    record/rc. record/done marks the end."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    record.mkdir(parents=True, exist_ok=True)
    check = f'{then} "$@" >"{record}/out" 2>&1; echo $? >"{record}/rc"' if then else ""
    script = bin_dir / "sbatch"
    script.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" >"{record}/args"\n{check}\ntouch "{record}/done"\n'
                      'echo "sbatch stub: arguments recorded, nothing submitted" >&2\nexit 1\n')
    script.chmod(0o755)


def submit_to_stub(cmd: list[str], env: dict[str, str], record: Path, timeout: float = 300) -> list[str]:
    """Run Snakemake until the stub sbatch has recorded its first call, then stop it: the plugin
    would otherwise sit out its fixed 40 s wait before the first status check. Returns the call."""
    import signal
    import subprocess
    import time

    with open(record.parent / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not (record / "done").exists():
                assert proc.poll() is None, (record.parent / "snakemake.out").read_text()[-3000:]
                assert time.monotonic() < deadline, "no sbatch call within the timeout"
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return (record / "args").read_text().rstrip("\0").split("\0")
