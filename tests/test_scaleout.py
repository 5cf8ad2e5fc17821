"""Planning proof without a GPU: the paper's and the DeepSeek-Coder study plan exactly the expected
jobs, every GPU job asks SLURM for a GPU on the GPU partition, and the executor plugin's own
submit-string code turns those requests into the right sbatch arguments."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from sophia import tracking
from sophia.config import validate

STUDY = {"base_model": 1, "data": 2, "quantize": 1, "finetune": 5, "evaluate": 6 * 9, "report": 1, "all": 1}
# the paper's study also builds the phone app from the tiny->alpaca curriculum (litert-torch route),
# and GGUF files of the same model (gguf.models defaults to export.models)
PHONE = {"merge": 1, "export": 1, "mobile": 1, "gguf": 1}
PLANS = {"paper": STUDY | PHONE, "deepseek-coder": STUDY}
GPU_RULES = {"base_model", "quantize", "finetune", "evaluate"}


def dry_run(workdir: Path, config: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", tracking.ENV_PARENT, tracking.ENV_ARTIFACTS):
        env.pop(var, None)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config), *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result.stdout + result.stderr


def job_counts(text: str) -> dict[str, int]:
    table = text.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def jobs(text: str) -> list[dict[str, Any]]:
    """Each planned job's rule and resources, from the dry run's job listing."""
    out = []
    for block in re.split(r"\n(?=rule \w+:|localrule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        r = re.search(r"^\s+resources: (.*)$", block, re.M)
        if not m:
            continue
        resources = dict(kv.split("=", 1) for kv in r[1].split(", ")) if r else {}
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        out.append({"rule": m[1], "resources": resources, "threads": int(threads[1]) if threads else 1})
    return out


@pytest.mark.parametrize("name", ["paper", "deepseek-coder"])
def test_study_plans_every_model_on_every_benchmark(name: str, tmp_path: Path) -> None:
    config = ROOT / "configs" / f"{name}.yaml"
    cfg = validate(yaml.safe_load(config.read_text()))
    assert cfg["compute"]["gpus"] == 1 and cfg["evaluate"]["dataset_root"] is None
    assert len(cfg["evaluate"]["benchmarks"]) == 9 and len(cfg["finetune"]["curricula"]) == 4
    assert job_counts(dry_run(tmp_path, config)) == PLANS[name]


def test_paper_config_keeps_the_papers_settings() -> None:
    cfg = validate(yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text()))
    assert cfg["base_model"]["hub"] == "microsoft/phi-2"
    assert cfg["datasets"]["alpaca"]["tasks"]["instruct"]["n_train"] == 7450
    assert cfg["datasets"]["tiny"]["languages"] == ["C++", "Java", "Ruby", "Rust", "Bash"]
    assert cfg["quantize"]["bits"] == 4 and cfg["finetune"]["lora"]["r"] == 64
    assert all(not b.get("limit") and not b.get("max_gen_toks") for b in cfg["evaluate"]["benchmarks"].values())
    assert cfg["evaluate"]["benchmarks"]["humaneval"]["k"] == [1, 10]
    assert cfg["report"]["reference"]["scores"] == {"bbh": 59.2, "commonsense": 68.8, "math": 61.1, "coding": 53.7}
    assert cfg["export"]["backend"] == "litert_torch" and cfg["mobile"]["model"] in cfg["export"]["models"]
    deepseek = validate(yaml.safe_load((ROOT / "configs" / "deepseek-coder.yaml").read_text()))
    assert deepseek["report"]["reference"]["scores"] == {"humaneval": 34.8, "mbpp": 46.8}


@pytest.fixture(scope="module")
def slurm_plan(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    text = dry_run(tmp_path_factory.mktemp("slurm"), ROOT / "configs" / "paper.yaml",
                   "--profile", str(ROOT / "profiles" / "slurm"))
    assert "Using profiles" in text and "profiles/slurm" in text
    return [j for j in jobs(text) if j["rule"] != "all"]


def test_every_gpu_job_requests_a_gpu_on_the_gpu_partition(slurm_plan: list[dict[str, Any]]) -> None:
    assert {j["rule"] for j in slurm_plan} == set(PLANS["paper"]) - {"all"}
    for job in slurm_plan:
        res = job["resources"]
        if job["rule"] in GPU_RULES:
            assert res["gpu"] == "1" and res["slurm_partition"] == "gpu", job
            assert int(res["mem_mb"]) > 10_000 and int(res["runtime"]) > 60, job  # scaled for Phi-2's 5.6 GB
        else:
            assert res.get("gpu", "0") == "0" and res["slurm_partition"] == "cpu", job


class _Resources(dict):
    def __getattr__(self, name: str) -> Any:
        return self[name]


class _Job:
    def __init__(self, resources: dict[str, str], threads: int) -> None:
        typed = {k: int(v) if v.isdigit() else v for k, v in resources.items()}
        self.resources = _Resources(typed)
        self.threads = threads


def test_sbatch_arguments_from_the_executor_plugin(slurm_plan: list[dict[str, Any]]) -> None:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "c", "account": "-A lab",
              "workdir": "/w"}
    for rule in ("finetune", "evaluate", "data", "report"):
        job_info = next(j for j in slurm_plan if j["rule"] == rule)
        job = _Job(job_info["resources"], job_info["threads"])
        part = f"-p {job.resources['slurm_partition']}"
        call = get_submit_command(job, {**params, "partition": part}) + set_gres_string(job)
        assert f" -t {job.resources['runtime']}" in call and f" --mem {job.resources['mem_mb']}" in call
        if rule in GPU_RULES:
            assert "-p gpu" in call and "--gpus=1" in call and "--ntasks-per-gpu=1" in call, call
            assert f"--cpus-per-gpu={job.threads}" in call or f"--cpus-per-task={job.threads}" in call, call
        else:
            assert "-p cpu" in call and "--gpus" not in call and "--ntasks=1" in call, call


def test_workstation_profile_serialises_gpu_jobs() -> None:
    profile = yaml.safe_load((ROOT / "profiles" / "workstation" / "config.yaml").read_text())
    assert profile["resources"] == ["gpu=1"] and profile["cores"] == "all"


def test_gpu_smoke_is_the_embedded_default_on_a_gpu(tmp_path: Path) -> None:
    smoke = yaml.safe_load((ROOT / "configs" / "gpu-smoke.yaml").read_text())
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert smoke.pop("compute")["gpus"] == 1
    assert smoke.pop("mlflow")["experiment"] == "sophia-gpu-smoke"
    default.pop("mlflow")
    assert smoke == default
    # its data paths are relative to the project root: plan it from a copy with absolute paths
    text = (ROOT / "configs" / "gpu-smoke.yaml").read_text().replace("workflow/resources", f"{ROOT}/workflow/resources")
    (tmp_path / "smoke.yaml").write_text(text)
    counts = job_counts(dry_run(tmp_path, tmp_path / "smoke.yaml"))
    assert counts["evaluate"] == 54 and counts["export"] == 2 and counts["mobile"] == 1
