"""Export stage: the graph modules, the gates, a real export of the micro model through every
precision and both graphs, the LiteRT runner against PyTorch, the bundle manifest, corruption."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import EXPORT_PROMPTS as PROMPTS
from conftest import EXPORT_PY, EXPORT_SPEC, EXPORTED, SOPHIA_EXPORT
from sophia.errors import ConfigError, ModelError, ParityError
from sophia.export import graphs, stage
from sophia.provenance import sha256_file


def micro_phi(**overrides: Any) -> Any:
    from transformers import PhiConfig, PhiForCausalLM

    torch.manual_seed(0)
    cfg = PhiConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=128, **overrides)
    model = PhiForCausalLM(cfg).eval()
    model.config._attn_implementation = "eager"
    return model


def test_kv_step_equals_the_full_forward() -> None:
    model = micro_phi()
    step = graphs.KVStep(model, 40).eval()
    ids = torch.randint(0, 300, (30,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0]
        window = graphs.WindowLM(model)(torch.tensor([ids], dtype=torch.int32))[0]
    assert (graphs.teacher_forced(step, ids) - full).abs().max() < 1e-5
    assert (window - full).abs().max() == 0


@pytest.mark.parametrize("n_prefill", [1, 7, 8, 19, 30])
def test_prefill_then_decode_equals_the_full_forward(n_prefill: int) -> None:
    """The prefill graph takes the prompt 8 tokens per call (the last chunk padded, 19 = 8 + 8 + 3),
    the decode graph carries on from its cache: the logits of every position are the full forward's,
    partial rotary factor 0.4 (Phi-2's) included."""
    model = micro_phi(partial_rotary_factor=0.4)
    prefill, step = graphs.KVStep(model, 40, length=8).eval(), graphs.KVStep(model, 40).eval()
    ids = torch.randint(0, 300, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0]
    assert (graphs.prefilled(prefill, step, ids, n_prefill) - full).abs().max() < 1e-5


def test_folded_layer_norms_compute_the_same_function() -> None:
    """litert_torch's two-signature file: the norms' scale and shift moved into the linears that
    read them (non-trivial ones: a fresh LayerNorm is the identity affine map)."""
    model = micro_phi(partial_rotary_factor=0.4)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for norm in [*(layer.input_layernorm for layer in model.model.layers), model.model.final_layernorm]:
            norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=g))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=g))
        ids = torch.randint(0, 300, (1, 20), generator=g)
        want = model(input_ids=ids).logits
        folded = graphs.fold_layer_norms(model)
        got = folded(input_ids=ids).logits
    assert not folded.model.final_layernorm.elementwise_affine
    assert all(not layer.input_layernorm.elementwise_affine for layer in folded.model.layers)
    assert (got - want).abs().max() < 1e-4 and (got - want).abs().max() / want.abs().max() < 1e-5


def test_prefill_past_the_cache_end_writes_nothing() -> None:
    """A last chunk's padding beyond the cache's positions is dropped, not wrapped or clamped in."""
    model = micro_phi()
    prefill = graphs.KVStep(model, 12, length=8).eval()
    ids = torch.arange(1, 9, dtype=torch.int32)[None]
    short = graphs.KVStep(model, 12, length=4).eval()  # the same 4 tokens that fit, without padding
    with torch.no_grad():
        _, k, v = prefill(ids, torch.tensor([0], dtype=torch.int32), prefill.empty_cache(), prefill.empty_cache())
        _, k2, v2 = prefill(ids, torch.tensor([8], dtype=torch.int32), k, v)
        _, k3, v3 = short(ids[:, :4], torch.tensor([8], dtype=torch.int32), k, v)
    assert k2.shape == k.shape == prefill.empty_cache().shape
    assert torch.equal(k2[..., :8, :], k[..., :8, :]) and torch.equal(v2[..., :8, :], v[..., :8, :])
    assert (k2 - k3).abs().max() < 1e-6 and (v2 - v3).abs().max() < 1e-6


def test_unsupported_family_and_sizes_fail_early(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    mistral = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(ModelError, match=r"model_type 'mistral' is not supported \(supported: phi .*llama .*qwen2"):
        stage.check_convertible(mistral, {"backend": "onnx2tf", "window": 8, "kv_cache": 8})
    with pytest.raises(ConfigError, match=r"export\.window: 512 exceeds"):
        stage.check_convertible(micro_phi(), {"backend": "onnx2tf", "window": 512, "kv_cache": 8})
    monkeypatch.setattr(stage, "weight_bytes", lambda model: 11 * 10**9)  # Phi-2 in float32
    with pytest.raises(ModelError, match=r"11\.0 GB of float32 weights exceed .*export.backend: litert_torch"):
        stage.check_convertible(micro_phi(), {"backend": "onnx2tf", "window": 8, "kv_cache": 8})


def parity(max_abs: float, argmax: float, greedy: bool) -> dict[str, Any]:
    return {"logits": {"max_abs": max_abs, "argmax_agreement": argmax},
            "greedy": [{"equal": greedy, "first_difference": None if greedy else 3}], "greedy_equal": greedy}


def test_gates_name_the_check_and_the_amount() -> None:
    from sophia.config import validate_section

    gates = validate_section({}, "export", "export")["parity"]["gates"]
    ok = {"onnx": {"window": {"max_abs": 1e-6}}, "tflite": {"window_fp32": parity(2e-6, 1.0, True),
                                                          "kv_fp16": parity(3e-3, 1.0, True),
                                                          "kv_int8": parity(0.2, 0.9, False)}}
    assert stage.gate_failures(ok, gates) == []
    bad = {"onnx": {"kv": {"max_abs": 0.5}}, "tflite": {"window_fp32": parity(0.01, 0.95, False)}}
    failures = stage.gate_failures(bad, gates)
    assert failures[0] == "onnx kv: max |logit diff| 0.5 > export.parity.gates.onnx.max_abs=0.0001"
    assert "window_fp32.tflite: max |logit diff| 0.01 > export.parity.gates.fp32.max_abs=0.0001" in failures
    assert any("argmax agreement 0.950 < export.parity.gates.fp32.argmax_agreement=0.99" in f for f in failures)
    assert any("greedy tokens differ" in f and "[(0, 3)]" in f for f in failures)


def test_perplexity_gate_names_its_key() -> None:
    from sophia.config import validate_section

    gates = validate_section({}, "export", "export")["parity"]["gates"]
    measured = {**parity(0.5, 0.9, False), "perplexity": {"torch": 4.0, "tflite": 6.0, "increase": 0.5}}
    failures = stage.gate_failures({"onnx": {}, "tflite": {"kv_int4": measured}}, gates)
    assert failures == [f"kv_int4.tflite: perplexity +50.00% vs PyTorch > export.parity.gates.int4.max_ppl_increase="
                        f"{gates['int4']['max_ppl_increase']}"]
    measured["perplexity"]["increase"] = gates["int4"]["max_ppl_increase"] / 2
    assert stage.gate_failures({"onnx": {}, "tflite": {"kv_int4": measured}}, gates) == []


def test_int4_settings_are_checked_up_front() -> None:
    """int4 only on the route that makes it, with a block size from the quantizer's list that tiles
    every linear layer's input width (the error names the key and the layer)."""
    from conftest import config_error

    msg = config_error(lambda e: e.update(precisions=["fp32", "int4"]), "export")
    assert "export.precisions: int4 needs export.backend litert_torch" in msg
    assert "export.int4_block_size" in config_error(lambda e: e.update(backend="litert_torch", int4_block_size=48),
                                                    "export")
    espec = {"backend": "litert_torch", "window": 8, "kv_cache": 8, "precisions": ["int4"], "int4_block_size": 128}
    with pytest.raises(ConfigError, match=r"export\.int4_block_size: 128 does not divide the input width of "
                                          r"model\.layers\.0\.self_attn\.q_proj \(64\);.* 64, 128"):
        stage.check_convertible(micro_phi(), espec)
    stage.check_convertible(micro_phi(), {**espec, "int4_block_size": 64})
    stage.check_convertible(micro_phi(), {**espec, "precisions": ["int8"]})  # no int4, no constraint
    stage.check_convertible(micro_phi(), {**espec, "int4_block_size": None})  # one scale per output channel


# --- a real export of the micro model ---------------------------------------------------------------



@pytest.fixture(scope="module")
def exported(micro_export: Path) -> Path:
    return micro_export


def test_every_precision_and_graph_passes_its_gates(exported: Path) -> None:
    p = json.loads((exported / "parity.json").read_text())
    assert p["failures"] == []
    assert set(p["tflite"]) == {f"{g}_{q}" for g in ("window", "kv") for q in ("fp32", "fp16", "int8")}
    for key in ("window_fp32", "kv_fp32", "window_fp16", "kv_fp16"):
        assert p["tflite"][key]["greedy_equal"], key
    assert p["tflite"]["window_fp32"]["logits"]["max_abs"] < 1e-4
    assert p["onnx"]["kv"]["max_abs"] < 1e-4 and p["onnx"]["window"]["max_abs"] < 1e-4
    # the decode graph carrying on from the prefill graph's cache, in every precision
    for q in ("fp32", "fp16", "int8"):
        assert p["tflite"][f"kv_{q}"]["prefill_decode"]["argmax_agreement"] >= 0.9, q
    assert p["tflite"]["kv_fp32"]["prefill_decode"]["max_abs"] < 1e-4
    assert p["torch_prefill_decode_vs_full_max_abs"] < 1e-5 and p["torch_kv_vs_full_max_abs"] < 1e-5
    assert (exported / "onnx" / "window.onnx").is_file() and (exported / "onnx" / "kv.onnx").is_file()
    leftovers = [x.name for x in exported.iterdir() if x.name.startswith(("onnx2tf-", "saved_model"))]
    assert leftovers == []  # temporaries cleaned


def test_bundle_manifest_matches_its_files(exported: Path) -> None:
    bundle = exported / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert names == set(manifest["files"]) == {"window_fp32.tflite", "kv_fp32.tflite", "tokenizer.json",
                                               "tokenizer_config.json", "generation.json", "prompt.json"}
    for name, entry in manifest["files"].items():
        assert sha256_file(bundle / name) == entry["sha256"] and (bundle / name).stat().st_size == entry["bytes"]


def run_cli(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SOPHIA_EXPORT), "run", "--bundle", str(bundle), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("graph", ["kv", "kv-steps", "window"])
def test_runner_greedy_output_equals_pytorch(exported: Path, micro_merged: Path, graph: str) -> None:
    """kv: the prompt through the prefill graph in one call; kv-steps: one decode step per token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    how = ["--graph", "kv", "--no-prefill"] if graph == "kv-steps" else ["--graph", graph]
    result = run_cli(exported / "bundle", "--prompt", PROMPTS[1], *how, "--max-new-tokens", "8", "--no-stop", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    tok = AutoTokenizer.from_pretrained(micro_merged)
    model = AutoModelForCausalLM.from_pretrained(micro_merged, dtype=torch.float32).eval()
    ids = tok(f"Instruct: {PROMPTS[1]}\nOutput:").input_ids
    assert got["prompt_tokens"] == len(ids)
    # EOS and stop strings off on both sides: exactly 8 tokens, each PyTorch's argmax (a plain loop:
    # generate()'s min_new_tokens would mask EOS instead of taking it)
    seq = list(ids)
    with torch.no_grad():
        for _ in range(8):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    want = seq[len(ids):]
    assert len(got["tokens"]) == 8 and got["tokens"] == want
    assert got["finish"] == "length"
    assert got["load_s"] > 0 and got["first_token_s"] > 0 and got["tokens_per_s"] > 0
    assert (got["graph"], got["prefill"]) == {"kv": ("kv", True), "kv-steps": ("kv", False),
                                              "window": ("window", False)}[graph]


def test_runner_refuses_a_corrupt_bundle(exported: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(exported / "bundle", bundle)
    data = bytearray((bundle / "kv_fp32.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "kv_fp32.tflite").write_bytes(bytes(data))
    result = run_cli(bundle, "--prompt", "hi")
    assert result.returncode == 2
    assert f"error: {bundle / 'kv_fp32.tflite'}: corrupt (size or sha256 differs from manifest.json)" in result.stderr


def test_corrupted_model_fails_the_parity_gates(exported: Path, micro_merged: Path, tmp_path: Path) -> None:
    """Damaged weights in a converted file (same size, so only the parity check can tell): the
    damage goes where lm_head's float32 weights are stored, found by their bytes (a blind offset may
    hit the flatbuffer's structure instead, and the interpreter crashes rather than measures)."""
    from safetensors.torch import load_file
    from sophia.config import validate_section

    work = tmp_path / "work"
    shutil.copytree(exported, work, ignore=shutil.ignore_patterns("bundle"))
    path = work / "window_fp32.tflite"
    data = bytearray(path.read_bytes())
    head = load_file(micro_merged / "model.safetensors")["lm_head.weight"].float().numpy().tobytes()
    at = data.find(head[:64])
    assert at > 0 and data[at: at + len(head)] == head
    data[at: at + 4096] = bytes([0x3F]) * 4096  # weights become ~0.75 everywhere in that span
    path.write_bytes(bytes(data))
    out = tmp_path / "parity.json"
    proc = subprocess.run([str(EXPORT_PY), "-m", "sophia.export.convert", "--work", str(work), "--check-only",
                           "--precisions", "fp32", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gates = validate_section({}, "export", "export")["parity"]["gates"]
    failures = stage.gate_failures(json.loads(out.read_text()), gates)
    assert any(f.startswith("window_fp32.tflite") for f in failures), failures
    # the damaged window graph is also kv_fp32's prefill: the decode graph alone still passes, the
    # checks that go through the prefill (logits after it, greedy) fail with it
    kv = [f for f in failures if f.startswith("kv_fp32.tflite")]
    assert kv and all("after prefill" in f or "greedy" in f for f in kv), failures
    assert all(f.startswith(("window_fp32.tflite", "kv_fp32.tflite")) for f in failures), failures


@pytest.mark.e2e  # runs the export environment
def test_unconvertible_graph_fails_naming_it(tmp_path: Path) -> None:
    """onnx2tf's failure surfaces as one error naming the graph; its scratch folder goes with it."""
    (tmp_path / "kv.onnx").write_bytes(b"not an ONNX protobuf")
    script = ("import sys; from pathlib import Path; from sophia.export.convert import onnx2tf\n"
              "onnx2tf(Path(sys.argv[1]) / 'kv.onnx', Path(sys.argv[1]), 'kv', ['fp32'], Path(sys.argv[1]) / 'log')\n")
    proc = subprocess.run([str(EXPORT_PY), "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "RuntimeError: onnx2tf failed on kv.onnx" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv.onnx", "log"]


@pytest.mark.e2e  # runs the export environment
def test_runner_refuses_a_file_without_signature(tmp_path: Path) -> None:
    """The runner calls graphs by their signature's names; a file without one is named, not guessed at."""
    script = ("import sys, tensorflow as tf\n"
              "f = tf.function(lambda x: x + 1.0, input_signature=[tf.TensorSpec([1], tf.float32)])\n"
              "open(sys.argv[1], 'wb').write(tf.lite.TFLiteConverter.from_concrete_functions("
              "[f.get_concrete_function()]).convert())\n"
              "from sophia.export.decode import Graph\n"
              "Graph(sys.argv[1], ['logits'])\n")
    path = tmp_path / "window_fp32.tflite"
    proc = subprocess.run([str(EXPORT_PY), "-c", script, str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and f"{path}: no signature to call it by" in proc.stderr, proc.stderr[-2000:]


def test_failed_gate_leaves_no_output(exported: Path, micro_merged: Path, tmp_path: Path, mlflow_store: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate no conversion meets: the stage fails naming the check and leaves no output. The
    conversion's measurements are the session export's (the gate, not the converter, is on trial)."""
    measured = json.loads((exported / "parity.json").read_text())
    monkeypatch.setattr(stage, "convert", lambda espec, work, model_dir: copy.deepcopy(measured))
    spec = json.loads(json.dumps(EXPORT_SPEC))
    spec["export"]["parity"]["gates"] = {"onnx": {"max_abs": 0.0}}  # nothing is bit-exact: must fail
    with pytest.raises(ParityError, match=r"onnx window: max \|logit diff\| .* > export.parity.gates.onnx.max_abs=0"):
        stage.run_stage(spec, EXPORTED, micro_merged, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_litert_torch_route_passes_the_same_gates(micro_model: Path, tmp_path: Path, mlflow_store: str) -> None:
    """The direct PyTorch -> TFLite route (for models past onnx2tf's 2 GB limit), same parity harness."""
    from transformers import AutoModelForCausalLM

    spec = json.loads(json.dumps(EXPORT_SPEC))
    spec["export"].update({"backend": "litert_torch", "precisions": ["fp32", "int8", "int4"],
                           "bundle_precision": "int4"})
    out = tmp_path / "base"
    parity = stage.run_stage(spec, "base", micro_model, out)
    assert parity["failures"] == [] and parity["backend"] == "litert_torch"
    assert set(parity["tflite"]) == {f"{g}_{q}" for g in ("window", "kv") for q in ("fp32", "int8", "int4")}
    assert parity["tflite"]["kv_fp32"]["greedy_equal"] and parity["tflite"]["window_fp32"]["logits"]["max_abs"] < 1e-4
    assert parity["tflite"]["kv_fp32"]["prefill_decode"]["max_abs"] < 1e-4
    # perplexity on PyTorch's own greedy answers: fp32 reproduces it, int4 loses more than int8
    ppl = {k: r["perplexity"]["increase"] for k, r in parity["tflite"].items()}
    assert abs(ppl["kv_fp32"]) < 1e-4 and abs(ppl["window_fp32"]) < 1e-4, ppl
    assert not (out / "onnx").exists()
    # one file per precision: prefill and decode are two signatures over one copy of the weights
    # (two single-graph files of the same model would each be about as large as this one)
    files = {p.name: p.stat().st_size for p in out.glob("*.tflite")}
    assert sorted(files) == ["model_fp32.tflite", "model_int4.tflite", "model_int8.tflite"]
    weights = sum(p.numel() * 4 for p in AutoModelForCausalLM.from_pretrained(micro_model).parameters())
    assert files["model_fp32.tflite"] < 1.25 * weights
    # int4: the linear layers' weights in 4 bits (+ a 16-bit scale per 32), the embedding's in 8
    assert files["model_int4.tflite"] < 0.75 * files["model_int8.tflite"], files
    generation = json.loads((out / "bundle" / "generation.json").read_text())
    assert generation["models"] == {"window": "model_int4.tflite", "kv": "model_int4.tflite"}
    assert generation["precision"] == "int4"
    assert generation["signatures"] == {"window": "prefill", "kv": "decode"}
    result = run_cli(out / "bundle", "--prompt", PROMPTS[1], "--max-new-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert (got["graph"], got["prefill"]) == ("kv", True)


def test_litert_torch_has_no_fp16() -> None:
    from conftest import config_error

    msg = config_error(lambda e: e.update(backend="litert_torch", precisions=["fp32", "fp16"]), "export")
    assert "fp16 is not available with export.backend litert_torch" in msg
