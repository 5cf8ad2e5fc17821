"""The cluster path for real: the micro study, trimmed to one job per stage, submitted through
`snakemake --profile profiles/slurm` (the executor plugin's own sbatch/sacct calls) to a one-node
SLURM 22.05 cluster (scripts/slurm-cluster.sh), with an `mlflow server` as the shared store.

One workflow invocation carries most tests: it is the expensive part (each job costs the plugin's
status polling on top of its work, every 2 s here: tests/snakemake_quick_status.py), and the
finetune job is cancelled mid-way in it, so retry and resume are proven on the run whose outputs
and MLflow runs are checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cluster import SlurmCluster, stub_sbatch, submit_to_stub
from slurm_e2e import (
    EXPERIMENT,
    BackgroundSlurmRun,
    SlurmRun,
    job_env,
    requested,
    sacct,
    slurm_config,
    slurm_time,
    snakemake_cmd,
)
from sophia import cluster, tracking

pytestmark = pytest.mark.e2e

HEAVY = ("base_model", "data", "quantize", "finetune", "evaluate")  # each must be a SLURM job


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: SlurmCluster, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> SlurmRun:
    """The run most tests here read. This file goes first (micro_dag.order_for_workers): while one
    worker waits for the run (its jobs run under slurmd), the other runs the rest."""
    return BackgroundSlurmRun(slurm_cluster, mlflow_server, tmp_path_factory.mktemp("slurm_wf")).wait()


def test_every_heavy_stage_ran_as_a_slurm_job_with_its_resources(slurm_run: SlurmRun) -> None:
    log = slurm_run.result.stdout
    assert slurm_run.result.returncode == 0, log[-5000:]
    asked = requested(log)
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in slurm_run.jobs:
        by_rule.setdefault(cluster.COMMENT.match(job["Comment"])[1], []).append(job)
    assert sorted(by_rule) == sorted(HEAVY)  # report (a local rule) ran here, not as a job
    assert re.search(r"^localrule report:", log, re.M)
    for rule in HEAVY:
        res = asked[rule]
        for job in by_rule[rule]:
            assert job["Partition"] == res["slurm_partition"], job
            assert job["ReqMem"] == f"{res['mem_mb']}M", job
            assert job["Timelimit"] == slurm_time(res["runtime"]), job
    assert {rule: [j["State"] for j in jobs] for rule, jobs in by_rule.items()} == {
        "base_model": ["COMPLETED"], "data": ["COMPLETED"], "quantize": ["COMPLETED"],
        "finetune": [f"CANCELLED by {os.getuid()}", "COMPLETED"], "evaluate": ["COMPLETED"]}
    # the profile's own partitions: GPU stages on gpu, the rest on cpu
    assert {r: asked[r]["slurm_partition"] for r in HEAVY} == {
        "base_model": "gpu", "data": "cpu", "quantize": "gpu", "finetune": "gpu", "evaluate": "gpu"}


def test_outputs_and_mlflow_runs_are_complete(slurm_run: SlurmRun, mlflow_server: str) -> None:
    from mlflow import MlflowClient

    results = slurm_run.workdir / "results"
    assert (results / "models" / "base" / "model.safetensors").is_file()
    assert (results / "data" / "alpaca" / "stats.json").is_file()
    assert (results / "models" / "gptq" / "quantize.json").is_file()
    assert (results / "adapters" / "alpaca" / "adapter_model.safetensors").is_file()
    scores = json.loads((results / "eval" / "gptq+alpaca" / "piqa" / "scores.json").read_text())
    assert scores["model"] == "gptq+alpaca"
    assert "| gptq+alpaca |" in (results / "report" / "table.md").read_text()

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # the server's store, not a local path
    found = client.search_runs([exp.experiment_id])
    stages = ["base_model:scratch", "data:alpaca", "quantize:w4g32", "finetune:alpaca", "evaluate:gptq+alpaca:piqa"]
    names = [r.info.run_name for r in found]
    assert all(names.count(name) == 1 for name in stages), names  # the resumed step kept its one run
    runs = {r.info.run_name: r for r in found}
    parent = client.get_run(runs["base_model:scratch"].data.tags["mlflow.parentRunId"])
    assert parent.info.run_name.startswith("workflow") and parent.info.status == "FINISHED"
    for name in stages:
        assert runs[name].info.status == "FINISHED", name
        assert runs[name].data.tags["mlflow.parentRunId"] == parent.info.run_id
    ids = {name: runs[name].info.run_id for name in stages}
    tags = {name: runs[name].data.tags for name in stages}
    assert tags["data:alpaca"]["sophia.input.base_model"] == ids["base_model:scratch"]
    assert tags["quantize:w4g32"]["sophia.input.data.alpaca"] == ids["data:alpaca"]
    assert tags["finetune:alpaca"]["sophia.input.model"] == ids["quantize:w4g32"]
    assert tags["evaluate:gptq+alpaca:piqa"]["sophia.input.adapter"] == ids["finetune:alpaca"]
    artifacts = {a.path for a in client.list_artifacts(ids["base_model:scratch"])}
    assert {"README.md", "manifest.json"} <= artifacts
    assert {"report/table.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id, "report")}


def test_cancelled_finetune_is_resubmitted_and_resumes(slurm_run: SlurmRun, mlflow_server: str) -> None:
    from mlflow import MlflowClient

    finetune = [j for j in slurm_run.jobs if j["Comment"] == "rule_finetune_wildcards_alpaca"]
    assert [j["JobID"] for j in finetune] == [slurm_run.cancelled, finetune[1]["JobID"]]
    summary = json.loads((slurm_run.workdir / "results" / "adapters" / "alpaca" / "finetune.json").read_text())
    assert summary["resumed"] is True
    assert not (slurm_run.workdir / "results" / "adapters" / "alpaca" / ".checkpoints").exists()
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id], "attributes.run_name = 'finetune:alpaca'")
    assert run.data.tags["sophia.resumed"] == "True" and run.info.status == "FINISHED"
    # one loss curve across both attempts: every optimizer step is on it (a step logged just before
    # the cancel and redone from the checkpoint is on it twice)
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train_loss")}
    assert steps == set(range(1, summary["global_steps"] + 1))


def test_rerun_submits_nothing(slurm_run: SlurmRun) -> None:
    before = sacct(slurm_run.env)
    rerun = subprocess.run(snakemake_cmd(slurm_run.workdir, timeout=600), env=slurm_run.env, capture_output=True,
                           text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    assert sacct(slurm_run.env) == before


def test_job_over_its_memory_fails_naming_rule_and_resource(slurm_cluster: SlurmCluster, mlflow_server: str,
                                                            tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(slurm_config("slurm-memory")))
    env = job_env(slurm_cluster, mlflow_server)
    result = subprocess.run(
        snakemake_cmd(tmp_path, "results/models/base", "--set-resources", "base_model:mem_mb=300", "--retries", "0",
                      timeout=600), env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    (job,) = sacct(env, "--name", cluster.RUN_ID.search(log)[1])
    assert job["ReqMem"] == "300M" and job["State"] in ("FAILED", "OUT_OF_MEMORY"), job
    assert (f"rule base_model: SLURM job {job['JobID']} went over its memory request (--mem 300M" in log
            and "--set-resources base_model:mem_mb=<MB>" in log), log[-3000:]
    assert not (tmp_path / "results" / "models" / "base").exists()
    print("\n" + "\n".join(line for line in log.splitlines() if "went over its memory" in line))


def test_gpu_request_of_the_plugin_is_accepted_by_slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """The plugin's sbatch call for a GPU job (compute.gpus: 1), through the real `sbatch --test-only`
    against the cluster's gres.conf (one GPU). Two GPUs are refused: the check can fail."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(slurm_config("slurm-gpu", gpus=1)))
    sbatch = shutil.which("sbatch", path=slurm_cluster.env["PATH"])
    stub_sbatch(tmp_path / "bin", tmp_path / "record", then=f"{sbatch} --test-only")
    env = job_env(slurm_cluster, f"sqlite:///{tmp_path / 'mlflow.db'}")
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    args = submit_to_stub(snakemake_cmd(tmp_path, "results/models/base", timeout=300), env, tmp_path / "record")
    assert args[args.index("-p") + 1] == "gpu" and "--gpus=1" in args, args
    out = (tmp_path / "record" / "out").read_text()
    assert (tmp_path / "record" / "rc").read_text().strip() == "0" and "in partition gpu" in out, out
    two = ["--gpus=2" if a == "--gpus=1" else a for a in args]
    refused = subprocess.run([sbatch, "--test-only", *two], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "Requested node configuration is not available" in refused.stderr


# sacct lines of real jobs of the test cluster (a job over --mem 100M; a job past its time limit)
SACCT_OVER_MEMORY = """3|rule_quantize|FAILED|100M||00:05:00|00:00:02
3.batch||FAILED||10636K||00:00:02
3.0||CANCELLED by 0||183312K||00:00:02
"""
SLURM_LOG_OVER_MEMORY = "slurmstepd-vm: error: StepId=3.0 exceeded memory limit (187711488 > 104857600), being killed\n"


def test_failure_hints_name_the_rule_and_the_resource() -> None:
    (job,) = cluster.parse_sacct(SACCT_OVER_MEMORY)
    assert (job.rule, job.state, job.req_mem, job.peak_mb) == ("quantize", "FAILED", "100M", 183312 / 1024)
    assert cluster.explain(job, SLURM_LOG_OVER_MEMORY) == (
        "rule quantize: SLURM job 3 went over its memory request (--mem 100M, and had reached 179 MB when it was "
        "killed). Raise the rule's mem_mb resource, e.g. snakemake ... --set-resources quantize:mem_mb=<MB> "
        "(the model-scaled stages also grow with compute.model_gb in the config).")
    assert cluster.explain(job, "") is None  # FAILED without a memory kill: the rule's own log says why
    (timeout,) = cluster.parse_sacct("7|rule_finetune_wildcards_alpaca|TIMEOUT|8300M||00:01:00|00:01:04\n")
    assert cluster.explain(timeout) == (
        "rule finetune (alpaca): SLURM job 7 ran out of time (limit 00:01:00, ran 00:01:04). Raise the rule's "
        "runtime resource (minutes), e.g. snakemake ... --set-resources finetune:runtime=<minutes>.")
    (oom,) = cluster.parse_sacct("9|rule_base_model|OUT_OF_MEMORY|4150M||01:00:00|00:00:09\n")
    assert "rule base_model: SLURM job 9 went over its memory request (--mem 4150M)" in cluster.explain(oom)
    assert cluster.parse_sacct("12|wrap|COMPLETED|1M||00:01:00|00:00:01\n") == []  # not a workflow job


def test_artifacts_go_to_the_servers_store_behind_a_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tracking.ENV_ARTIFACTS, "results/mlartifacts")  # the config's default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.artifact_location() is None  # the server decides (--artifacts-destination)
    monkeypatch.setenv(tracking.ENV_ARTIFACTS, "s3://bucket/mlflow")
    assert tracking.artifact_location() == "s3://bucket/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db")
    monkeypatch.setenv(tracking.ENV_ARTIFACTS, "results/mlartifacts")
    assert tracking.artifact_location() == (tmp_path / "results" / "mlartifacts").as_uri()
