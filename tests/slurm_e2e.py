"""The SLURM end-to-end run of tests/test_slurm.py and the helpers its tests share. The run goes
through the real executor plugin, its status checks every 2 s instead of the plugin's fixed 40 s
(tests/snakemake_quick_status.py); its worker mostly waits for the cluster's jobs, so `make test`
starts it first (tests/micro_dag.py: order_for_workers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cluster import SlurmCluster
from conftest import ROOT, micro_config
from sophia import cluster, tracking

EXPERIMENT = "slurm-e2e"
RUN_TIMEOUT_S = 1500


def slurm_config(experiment: str = EXPERIMENT, **compute: Any) -> dict[str, Any]:
    """micro_config() with one job per stage: base model, one dataset, GPTQ, one curriculum step,
    one evaluation, the report; no export or app."""
    cfg = micro_config()
    del cfg["datasets"]["tiny"]
    ft = cfg["finetune"]
    # enough steps, each checkpointed, that the job can be cancelled after a checkpoint and before its end
    ft["phases"] = {"alpaca": {**ft["phases"]["alpaca"], "epochs": 3}}
    ft["training"]["save_steps"] = 1
    ft["curricula"] = {"alpaca": ["alpaca"]}
    cfg["evaluate"]["models"] = ["gptq+alpaca"]
    cfg["evaluate"]["benchmarks"] = {"piqa": {"limit": 2}}
    cfg["export"]["models"] = []
    cfg["mobile"]["model"] = None
    cfg["mlflow"] = {"experiment": experiment}
    if compute:
        cfg["compute"] = compute
    return cfg


def snakemake_cmd(workdir: Path, *args: str, timeout: int = RUN_TIMEOUT_S) -> list[str]:
    """Snakemake through the SLURM profile, its status checks every 2 s (tests/snakemake_quick_status.py)."""
    # timeout -k: if status polling ever hangs, Snakemake ignores TERM while it waits for its jobs
    quick = Path(__file__).parent / "snakemake_quick_status.py"
    return ["timeout", "-k", "20", str(timeout), sys.executable, str(quick), "-s", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--profile", str(ROOT / "profiles" / "slurm"), "--slurm-keep-successful-logs", *args]


def job_env(cluster_: SlurmCluster, mlflow_uri: str) -> dict[str, str]:
    env = {**os.environ, **cluster_.env, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": mlflow_uri}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    for var in ("MLFLOW_EXPERIMENT_NAME", tracking.ENV_PARENT, tracking.ENV_ARTIFACTS):
        env.pop(var, None)
    return env


def sacct(env: dict[str, str], *args: str) -> list[dict[str, str]]:
    fields = ["JobID", "Comment", "Partition", "ReqMem", "Timelimit", "State", "ExitCode"]
    out = subprocess.run(["sacct", "-X", "--parsable2", "--noheader", "--starttime", "now-1days",
                          f"--format={','.join(fields)}", *args], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


def requested(log: str) -> dict[str, dict[str, str]]:
    """Each rule's resources as Snakemake printed them when it submitted the job."""
    out = {}
    for m in re.finditer(r"^(?:local)?rule (\w+):\n(?:\s+.*\n)*?\s+resources: (.*)$", log, re.M):
        out[m[1]] = dict(kv.split("=", 1) for kv in m[2].split(", "))
    return out


def slurm_time(minutes: str) -> str:
    return f"{int(minutes) // 60:02d}:{int(minutes) % 60:02d}:00"


@dataclass
class SlurmRun:
    workdir: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str]
    jobs: list[dict[str, str]]  # sacct, one line per job of this invocation
    cancelled: str  # the finetune job id the test cancelled
    seconds: float


def cancel_finetune_after_checkpoint(proc: subprocess.Popen[str], workdir: Path, env: dict[str, str]) -> str:
    """Wait until the finetune job has saved a complete checkpoint, then scancel it, as a cluster
    would preempt or kill it. Returns the cancelled job's id."""
    checkpoints = workdir / "results" / "adapters" / "alpaca" / ".checkpoints"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not any((c / "trainer_state.json").is_file() for c in checkpoints.glob("checkpoint-*")):
        assert proc.poll() is None, "the workflow ended before finetune saved a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%k"], env=env, capture_output=True, text=True, check=True)
    ids = [line.split("|")[0] for line in queue.stdout.splitlines() if line.endswith("|rule_finetune_wildcards_alpaca")]
    assert len(ids) == 1, queue.stdout
    subprocess.run(["scancel", ids[0]], env=env, check=True)
    assert not (workdir / "results" / "adapters" / "alpaca" / "finetune.json").exists(), "finished before the cancel"
    return ids[0]


class BackgroundSlurmRun:
    """The micro study submitted through the SLURM profile, started now; `wait()` returns its SlurmRun.
    A thread cancels the finetune job after its first checkpoint while the workflow runs."""

    def __init__(self, cluster_: SlurmCluster, mlflow_uri: str, workdir: Path) -> None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(slurm_config()))
        self.workdir, self.cluster = workdir, cluster_
        self.env = job_env(cluster_, mlflow_uri)
        self.log_path = workdir / "snakemake.out"
        self.start = time.monotonic()
        # the log goes to a file: nobody reads a pipe while the tests run, and a full one would stall it
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(snakemake_cmd(workdir), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.cancelled: list[str] = []
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._cancel, daemon=True)
        self.thread.start()

    def _cancel(self) -> None:
        try:
            self.cancelled.append(cancel_finetune_after_checkpoint(self.proc, self.workdir, self.env))
        except BaseException as exc:  # re-raised by wait(), in the test that reads the run
            self.error.append(exc)

    def wait(self) -> SlurmRun:
        try:
            self.proc.wait(timeout=max(1.0, RUN_TIMEOUT_S + 60 - (time.monotonic() - self.start)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join()
        seconds = time.monotonic() - self.start
        log = self.log_path.read_text()
        if self.error:
            raise AssertionError(f"cancelling the finetune job failed; workflow log:\n{log[-3000:]}") from self.error[0]
        result = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, log, "")
        run_id = cluster.RUN_ID.search(log)
        assert run_id, log[-3000:]
        jobs = sacct(self.env, "--name", run_id[1])
        print(f"\nSLURM cluster start {self.cluster.start_seconds:.1f} s, workflow {seconds:.0f} s; sacct:\n"
              + "\n".join("|".join(j.values()) for j in jobs))
        return SlurmRun(self.workdir, self.env, result, jobs, self.cancelled[0], seconds)
