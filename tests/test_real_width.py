"""Phi-2's real layer widths in CI: one layer of hidden 2560, intermediate 10240, 32 heads of 80 and
partial rotary 0.4 goes through the unchanged stage code: GPTQ 4-bit (group 128), one LoRA fine-tune
step (r 64), merge, and the litert_torch export with its prefill and decode graphs and their parity
gates. The opt-in rehearsal (configs/phi2-shape.yaml, benchmarks/real_width.py) adds what this test
leaves out: the 51200-token vocabulary and 4 layers (2.3 GB, past TensorFlow's 2 GB limit), every
evaluate benchmark, GGUF, the app in a browser, and the time and memory of each stage.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import EXPORT_SPEC, benchmark_script, isolated_tracking, micro_config
from safetensors.torch import load_file

PHI2 = {"hidden_size": 2560, "intermediate_size": 10240, "num_attention_heads": 32, "partial_rotary_factor": 0.4,
        "max_position_embeddings": 2048}
# 8192 rows keep the export within a couple of minutes on 2 cores; the rehearsal has Phi-2's 51200
VOCAB = 8192
GROUP = 128
RANK = 64


@pytest.fixture(scope="module")
def wide(micro_model: Path, micro_data: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(micro_model, micro_data, tmp_path_factory.mktemp("wide"))


def build(micro_model: Path, micro_data: list[Path], root: Path) -> dict[str, Path]:
    """base (random init, the micro tokenizer) → GPTQ → LoRA step → merged → export, into `root`.
    benchmarks/suite_floor.py runs it alone to measure its cost."""
    from sophia.config import validate_section
    from sophia.export import merge
    from sophia.export import stage as export_stage
    from sophia.finetune import stage as finetune_stage
    from sophia.quantize import stage as quantize_stage
    from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

    paths = {k: root / k for k in ("base", "gptq", "adapter", "merged", "export")}
    tok = AutoTokenizer.from_pretrained(micro_model)
    torch.manual_seed(0)
    cfg = PhiConfig(vocab_size=VOCAB, num_hidden_layers=1, bos_token_id=tok.eos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, **PHI2)
    PhiForCausalLM(cfg).save_pretrained(paths["base"])
    tok.save_pretrained(paths["base"])
    data = {d.name: d for d in micro_data}
    q = {**micro_config()["quantize"], "group_size": GROUP,
         "calibration": {"dataset": "alpaca", "task": "instruct", "n_samples": 4, "max_length": 64},
         "eval": {"max_samples": 2, "max_length": 64, "logit_samples": 2}}
    ft = micro_config()["finetune"]
    step = {"chain": "alpaca", "phase": {**ft["phases"]["alpaca"], "max_length": 48},
            "lora": {"r": RANK, "alpha": 16, "dropout": 0.05, "target_modules": []},
            # no warmup: a one-step run's only step would have a learning rate of 0
            "training": {**ft["training"], "batch_size": 20, "eval_steps": 1, "save_steps": 1, "warmup_ratio": 0.0},
            "reference_prompts": ["Reverse a string."], "generation": {"max_new_tokens": 2, "batch_size": 8}}
    espec_default = validate_section({}, "export", "export")  # the tolerances the workflow uses
    espec = copy.deepcopy(EXPORT_SPEC)
    espec["export"].update({"backend": "litert_torch", "precisions": ["fp32"], "window": 16, "kv_cache": 32,
                            "parity": {"inputs": 1, "teacher_forced_steps": 12, "greedy_prompts": 1,
                                       "greedy_tokens": 4}})
    with isolated_tracking(root):
        quantize_stage.run_stage({"quantize": q, "reference_prompts": ["Reverse a string."],
                                  "generation": {"max_new_tokens": 2, "batch_size": 8}},
                                 paths["base"], list(data.values()), paths["gptq"])
        finetune_stage.run_stage(step, paths["gptq"], data["alpaca"], None, paths["adapter"])
        merge.run_stage("gptq+alpaca", paths["gptq"], paths["adapter"], espec_default["parity"]["merge_max_abs"],
                        paths["merged"])
        export_stage.run_stage(espec, "gptq+alpaca", paths["merged"], paths["export"])
    return paths


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_gptq_packs_the_real_layer_shapes(wide: dict[str, Path]) -> None:
    """int4 packs 8 input rows per int32; one scale and zero point per 128 inputs and output."""
    t = tensors(wide["gptq"])
    layer = "model.layers.0"
    c, f = PHI2["hidden_size"], PHI2["intermediate_size"]
    for name, (n_in, n_out) in {"self_attn.q_proj": (c, c), "self_attn.dense": (c, c), "mlp.fc1": (c, f),
                                "mlp.fc2": (f, c)}.items():
        assert tuple(t[f"{layer}.{name}.qweight"].shape) == (n_in // 8, n_out), name
        assert tuple(t[f"{layer}.{name}.scales"].shape) == (n_in // GROUP, n_out), name
        assert tuple(t[f"{layer}.{name}.qzeros"].shape) == (n_in // GROUP, n_out // 8), name
    assert tuple(t["lm_head.weight"].shape) == (VOCAB, c)  # the head stays in float, as in the paper


def test_one_lora_step_adapts_every_projection_at_width(wide: dict[str, Path]) -> None:
    summary = json.loads((wide["adapter"] / "finetune.json").read_text())
    assert summary["global_steps"] == 1
    t = tensors(wide["adapter"])
    c, f = PHI2["hidden_size"], PHI2["intermediate_size"]
    shapes = {k.split("layers.0.")[1]: tuple(v.shape) for k, v in t.items()}
    assert shapes["mlp.fc1.lora_A.weight"] == (RANK, c) and shapes["mlp.fc1.lora_B.weight"] == (f, RANK)
    assert shapes["mlp.fc2.lora_A.weight"] == (RANK, f) and shapes["mlp.fc2.lora_B.weight"] == (c, RANK)
    assert any(torch.count_nonzero(v) for k, v in t.items() if "lora_B" in k)  # the step moved B off zero


def test_merged_model_is_float_at_real_width(wide: dict[str, Path]) -> None:
    cfg = json.loads((wide["merged"] / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (cfg["hidden_size"], cfg["intermediate_size"]) == (2560, 10240)
    assert cfg["rope_parameters"]["partial_rotary_factor"] == 0.4
    t = tensors(wide["merged"])
    assert tuple(t["model.layers.0.mlp.fc2.weight"].shape) == (2560, 10240)
    assert t["model.layers.0.mlp.fc2.weight"].dtype == torch.float32


def test_prefill_and_decode_export_passes_the_parity_gates(wide: dict[str, Path]) -> None:
    """litert_torch at real width: the prefill (window) graph's logits against PyTorch's, the decode
    graph alone and continuing the prefill's cache, and greedy tokens through prefill + decode."""
    p = json.loads((wide["export"] / "parity.json").read_text())
    assert p["failures"] == [] and p["backend"] == "litert_torch"
    assert set(p["tflite"]) == {"window_fp32", "kv_fp32"}
    assert p["tflite"]["window_fp32"]["logits"]["argmax_agreement"] == 1.0
    kv = p["tflite"]["kv_fp32"]
    assert kv["prefill_decode"]["argmax_agreement"] == 1.0 and kv["greedy_equal"]
    assert kv["greedy"][0]["tokens"] and len(kv["greedy"][0]["tokens"]) == 4
    generation = json.loads((wide["export"] / "bundle" / "generation.json").read_text())
    assert generation["models"] == {"window": "model_fp32.tflite", "kv": "model_fp32.tflite"}
    assert generation["signatures"] == {"window": "prefill", "kv": "decode"}


# --- benchmarks/real_width.py: the rehearsal's arithmetic (its runs are opt-in) --------------------
def test_parameter_count_is_transformers_own() -> None:
    from transformers import PhiConfig, PhiForCausalLM

    rw = benchmark_script("real_width")
    arch = {**PHI2, "num_hidden_layers": 2}
    with torch.device("meta"):
        model = PhiForCausalLM(PhiConfig(vocab_size=51200, **arch))
    assert rw.parameters(arch, 51200) == sum(p.numel() for p in model.parameters())
    cfg = rw.depth_config(4)  # the config's depth: 577 M parameters, 2.3 GB in float32, past the 2 GB limit
    assert cfg["base_model"]["scratch"]["architecture"]["num_hidden_layers"] == 4
    assert 4 * rw.parameters(cfg["base_model"]["scratch"]["architecture"], 51200) > 2 * 1024**3
    assert 4 * rw.parameters({**PHI2, "num_hidden_layers": 3}, 51200) < 2 * 1024**3
    assert Path(cfg["datasets"]["alpaca"]["path"]).is_absolute() and cfg["compute"]["model_gb"] == 1.154


def test_table_extrapolates_per_layer_and_flags_requests_too_low() -> None:
    """Two depths give the per-layer share; 32 layers are predicted on that line and compared with
    what configs/paper.yaml's compute asks for (export: 8000 + 16000 x 5.6 = 97600 MB, 456 min)."""
    rw = benchmark_script("real_width")
    stage = {"jobs": 1, "output_mb": 10.0, "cpu_seconds": 1.0}
    runs = {4: {"stages": {"export": {**stage, "seconds": 400.0, "max_rss_mb": 9000.0},
                           "quantize": {**stage, "seconds": 300.0, "max_rss_mb": 6000.0}},
                "browser": {"load_s": 5.0, "first_token_ms": 900.0, "decode_ms_per_token": 120.0}},
            3: {"stages": {"export": {**stage, "seconds": 350.0, "max_rss_mb": 7000.0},
                           "quantize": {**stage, "seconds": 250.0, "max_rss_mb": 5500.0}},
                "browser": {"load_s": 4.0, "first_token_ms": 700.0, "decode_ms_per_token": 100.0}}}
    t = rw.table(runs)
    export = t["stages"]["export"]
    assert export["max_rss_mb"]["per_layer"] == 2000.0 and export["max_rss_mb"]["phi2"] == 9000.0 + 28 * 2000.0
    assert export["paper_mem_mb"] == 97600 and export["mem_fits"]  # 65000 <= 97600
    assert export["paper_runtime_min"] == 456 and export["time_fits"]
    assert "paper_runtime_min" not in t["stages"]["quantize"]  # a GPU stage: CPU time says nothing
    assert t["browser"]["decode_ms_per_token"]["phi2"] == 120.0 + 28 * 20.0
    assert abs(t["browser"]["phi2_tokens_per_s"] - 1000 / 680.0) < 1e-12
    runs[4]["stages"]["export"]["max_rss_mb"] = 13000.0  # 4000 MB per layer: 125000 MB > 97600
    assert not rw.table(runs)["stages"]["export"]["mem_fits"]
    assert "TOO LOW" in rw.markdown(rw.table(runs))
    runs[4]["stages"]["quantize"]["seconds"] = 200.0  # faster with more layers: noise, not extrapolated
    assert "| quantize | wall s | 200.0 | 250.0 | -50.0 | noise |" in rw.markdown(rw.table(runs))


# --- benchmarks/real_width_app.py: the phone bundle at Phi-2's width (its runs are opt-in) ----------
def test_app_rehearsal_extrapolates_and_checks_the_targets() -> None:
    """Per-layer share from two depths, 32 layers on that line, each Phi-2 figure against its target
    (tokens/s from the extrapolated decode time, not extrapolated itself)."""
    app = benchmark_script("real_width_app")
    point = {"bundle_mb": 400.0, "load_s": 3.0, "first_token_s": 1.0, "decode_ms_per_token": 60.0,
             "browser_peak_mb": 900.0, "export_s": 200.0, "export_peak_mb": 8000.0}
    runs = {2: point, 4: {**point, "bundle_mb": 500.0, "load_s": 5.0, "decode_ms_per_token": 70.0}}
    t = app.table(runs)
    assert t["depths"] == [4, 2] and t["rows"]["bundle_mb"]["per_layer"] == 50.0
    assert t["phi2"]["bundle_mb"] == 500.0 + 28 * 50.0 and t["phi2"]["decode_ms_per_token"] == 70.0 + 28 * 5.0
    assert t["phi2"]["tokens_per_s"] == 1000 / 210.0
    met = {k: v["met"] for k, v in t["targets"].items()}
    assert met == {"bundle_mb": False, "load_s": False, "first_token_s": True, "tokens_per_s": True}
    assert "| bundle_mb | 1900.00 | <= 1700 | no |" in app.markdown({**t, "precision": "int4"})
    runs[4]["export_peak_mb"] = 7000.0  # less memory with more layers: noise, not extrapolated
    assert "| export peak RSS MB | 7000.00 | 8000.00 | -500.00 | noise |" in app.markdown(
        {**app.table(runs), "precision": "int4"})


def test_app_rehearsal_kills_a_job_past_its_memory_cap(tmp_path: Path) -> None:
    """The machine is shared: a job whose process tree grows past --max-gb is killed, and the run
    stops naming the cap (here a child of the child allocates 400 MB against a 200 MB cap)."""
    import sys
    import time

    app = benchmark_script("real_width_app")
    child = "import time; b = bytearray(400_000_000); time.sleep(20)"
    grow = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    start = time.perf_counter()
    with pytest.raises(SystemExit, match=r"passed --max-gb \(0.2 GB\) and was killed"):
        app.watched([sys.executable, "-c", grow], 200, tmp_path / "log")
    assert time.perf_counter() - start < 15
    _, peak, out = app.watched([sys.executable, "-c", "print('ok')"], 200, tmp_path / "log")
    assert out.strip() == "ok" and 0 < peak < 200
