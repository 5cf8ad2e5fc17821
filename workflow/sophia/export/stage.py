"""Stage function: a float model (base, or a merged GPTQ+adapter) → results/export/{model}/ + one
MLflow run.

Main environment: ONNX export of both graphs and the PyTorch references. Export environment
(`export.python`, a subprocess): onnx2tf conversion and every parity measurement; or, with
`export.backend: litert_torch`, the litert-torch environment converts the same graph modules
directly and measures the same way. Back here: the gates, the phone bundle, MLflow. Output folder:

    onnx/{window,kv}.onnx          what onnx2tf converted (never modified: it gets a copy; onnx2tf only)
    {window,kv}_{fp32,fp16,int8}.tflite
    references.npz, references.json   PyTorch inputs/logits/greedy tokens the parity used
    parity.json                    every measurement and the gate verdicts
    tokenizer.json, tokenizer_config.json
    bundle/                        what the phone app loads (manifest.json with sizes and sha256)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sophia import prompt, tracking
from sophia.atomic import atomic_dir
from sophia.config import check_export_precisions, validate_section
from sophia.errors import ConfigError, ModelError, ParityError
from sophia.export import decode, graphs
from sophia.generate import STOP_STRINGS
from sophia.parity_gates import argmax_agreement, greedy_equal, max_abs, ppl_increase
from sophia.provenance import git_commit, sha256_file
from sophia.tracking import models as tracking_models

log = logging.getLogger(__name__)
PROTOBUF_LIMIT = 2 * 1024**3
KV_NAMES = (["input_ids", "pos", "k_cache", "v_cache"], ["logits", "k_cache_out", "v_cache_out"])


def load_float(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir}: no config.json, not a model directory")
    if "quantization_config" in json.loads((model_dir / "config.json").read_text()):
        raise ModelError(f"{model_dir}: a quantized checkpoint; export its merged float model (results/merged/...)")
    # eager attention: SDPA adds IsNaN/Where chains that onnx2tf handles worse
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def weight_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def check_convertible(model: Any, espec: dict[str, Any]) -> None:
    """Fail before any work when the chosen route cannot convert this model."""
    graphs.check_family(model)
    n_bytes = weight_bytes(model)
    if espec["backend"] == "onnx2tf" and n_bytes > PROTOBUF_LIMIT:
        raise ModelError(
            f"export: {n_bytes / 1e9:.1f} GB of float32 weights exceed the TensorFlow SavedModel protobuf limit "
            f"(2 GB) that onnx2tf goes through; set export.backend: litert_torch (direct PyTorch -> TFLite)")
    if "int4" in espec.get("precisions", ()) and espec["int4_block_size"]:
        check_int4_blocks(model, espec["int4_block_size"])
    limit = model.config.max_position_embeddings
    for key in ("window", "kv_cache"):
        if espec[key] > limit:
            raise ConfigError(f"export.{key}: {espec[key]} exceeds the model's max_position_embeddings ({limit})")


def check_int4_blocks(model: Any, block: int) -> None:
    """int4 weights take one scale per `block` inputs of a linear layer: the block must tile every
    layer's input width, or the quantizer fails late and without naming the setting."""
    widths: dict[int, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            widths.setdefault(module.in_features, name)
    bad = {w: n for w, n in widths.items() if w % block}
    if bad:
        raise ConfigError(f"export.int4_block_size: {block} does not divide the input width of "
                          + ", ".join(f"{n} ({w})" for w, n in sorted(bad.items()))
                          + f"; choose one that divides {', '.join(str(w) for w in sorted(widths))}")


@torch.no_grad()
def references(model: Any, tok: Any, espec: dict[str, Any], prompts: list[str]) -> tuple[dict[str, np.ndarray],
                                                                                           dict[str, Any]]:
    """Fixed-seed inputs and what PyTorch (the HF model itself, not our graph modules) says about them."""
    par, window = espec["parity"], espec["window"]
    gen = torch.Generator().manual_seed(par["seed"])
    vocab = model.config.vocab_size
    inputs = torch.randint(0, vocab, (par["inputs"], window), generator=gen, dtype=torch.int64)
    refs: dict[str, np.ndarray] = {
        "window_inputs": inputs.to(torch.int32).numpy(),
        "window_logits": torch.stack([model(input_ids=x[None]).logits[0] for x in inputs]).numpy(),
    }
    if espec["kv_cache"]:
        steps = min(par["teacher_forced_steps"], espec["kv_cache"])
        ids = torch.randint(0, vocab, (steps,), generator=gen, dtype=torch.int64)
        refs["kv_ids"] = ids.to(torch.int32).numpy()
        refs["kv_logits"] = model(input_ids=ids[None]).logits[0].numpy()
        step = graphs.KVStep(model, espec["kv_cache"]).eval()
        refs["cache_shape"] = np.array(step.cache_shape(), dtype=np.int64)
    n_new = par["greedy_tokens"]
    room = min([window] + ([espec["kv_cache"]] if espec["kv_cache"] else []))
    greedy_prompts, greedy_tokens = [], []
    for text in prompts[: par["greedy_prompts"]]:
        ids = tok(prompt.build_prompt(text)).input_ids[: room - n_new]
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=n_new, min_new_tokens=n_new,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        greedy_prompts.append(ids)
        greedy_tokens.append(out[0, len(ids):].tolist())
    nll = [answer_nll(model(input_ids=torch.tensor([p + a])).logits[0], p, a)
           for p, a in zip(greedy_prompts, greedy_tokens, strict=True)]
    return refs, {"greedy_prompts": greedy_prompts, "greedy_tokens": greedy_tokens, "greedy_nll": nll,
                  "seed": par["seed"]}


def answer_nll(logits: torch.Tensor, prompt: list[int], answer: list[int]) -> list[float]:
    """Per answer token, its negative log-likelihood given everything before it ([T, V] logits of
    prompt + answer): what the exported graphs' perplexity is compared with."""
    rows = logits[len(prompt) - 1: len(prompt) + len(answer) - 1].double().log_softmax(-1)
    return (-rows[torch.arange(len(answer)), torch.tensor(answer)]).tolist()


def window_graph(model: Any, espec: dict[str, Any]) -> torch.nn.Module:
    """With a KV cache the window graph is the prefill (it also fills the cache); without, logits only."""
    if espec["kv_cache"]:
        return graphs.KVStep(model, espec["kv_cache"], length=espec["window"]).eval()
    return graphs.WindowLM(model).eval()


def export_graphs(model: Any, espec: dict[str, Any], onnx_dir: Path) -> dict[str, Any]:
    onnx_dir.mkdir(parents=True)
    info: dict[str, Any] = {}
    start = time.perf_counter()
    window = window_graph(model, espec)
    if espec["kv_cache"]:
        graphs.export_onnx(window, window.example_inputs(), KV_NAMES, onnx_dir / "window.onnx", espec["opset"])
    else:
        graphs.export_onnx(window, (torch.zeros(1, espec["window"], dtype=torch.int32),),
                           (["input_ids"], ["logits"]), onnx_dir / "window.onnx", espec["opset"])
    info["window_export_s"] = time.perf_counter() - start
    if espec["kv_cache"]:
        step = graphs.KVStep(model, espec["kv_cache"]).eval()
        start = time.perf_counter()
        graphs.export_onnx(step, step.example_inputs(), KV_NAMES, onnx_dir / "kv.onnx", espec["opset"])
        info["kv_export_s"] = time.perf_counter() - start
    return info


def gate_failures(parity: dict[str, Any], gates: dict[str, Any]) -> list[str]:
    """Every check that misses its threshold, as 'which check: measured vs allowed'."""
    found = [max_abs(f"onnx {graph}", r["max_abs"], gates["onnx"]["max_abs"], "export.parity.gates.onnx")
             for graph, r in parity["onnx"].items()]
    for key, r in parity["tflite"].items():
        precision = key.rsplit("_", 1)[1]
        g, name, where = gates[precision], f"{key}.tflite", f"export.parity.gates.{precision}"
        # logits: the graph alone; prefill_decode: the decode graph continuing a prefilled cache
        for part, what in (("logits", ""), ("prefill_decode", " after prefill")):
            if part in r:
                found += [max_abs(name, r[part]["max_abs"], g["max_abs"], where, what),
                          argmax_agreement(name, r[part]["argmax_agreement"], g["argmax_agreement"], where, what)]
        found.append(greedy_equal(name, r["greedy"], g["greedy_equal"], where))
        if "perplexity" in r:
            found.append(ppl_increase(name, r["perplexity"]["increase"], g.get("max_ppl_increase"), where))
    return [f for f in found if f]


def export_python(setting: str, key: str = "export.python") -> Path:
    """A relative interpreter path is looked up in the working directory, then in the project root
    (where `make setup` builds it), so runs with `snakemake --directory elsewhere` find it too."""
    path = Path(setting)
    for candidate in (path, Path(__file__).resolve().parents[3] / path):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{key}: {setting} not found; `make setup` builds the export environments")


def convert(espec: dict[str, Any], work: Path, model_dir: Path) -> dict[str, Any]:
    """Conversion and parity measurements in the backend's own environment (a subprocess)."""
    if espec["backend"] == "litert_torch":
        python = export_python(espec["litert_python"], "export.litert_python")
        cmd = [str(python), "-m", "sophia.export.litert", "--work", str(work), "--model", str(model_dir),
               "--window", str(espec["window"]), "--kv-cache", str(espec["kv_cache"]),
               "--precisions", *espec["precisions"], "--int4-block-size", str(espec["int4_block_size"] or 0)]
    else:
        python = export_python(espec["python"])
        cmd = [str(python), "-m", "sophia.export.convert", "--work", str(work), "--precisions", *espec["precisions"]]
    log.info("converting in the export environment: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (work / "convert.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise ModelError(f"export: conversion failed (exit {proc.returncode}):\n{tail}")
    return json.loads((work / "parity.json").read_text(encoding="utf-8"))


def write_bundle(out: Path, model_id: str, espec: dict[str, Any], tok: Any, family: str = "phi") -> dict[str, Any]:
    """Everything the phone app needs, and nothing it does not: one precision of each graph. prompt.json
    says the model's family and the ids its tokenizer starts every text with (DeepSeek-Coder's BOS; none
    for Phi and Qwen2): the app checks that its own tokenizer gives the prompt the model was trained on."""
    bundle = out / "bundle"
    bundle.mkdir()
    precision = espec["bundle_precision"]
    models = {g: f"{g}_{precision}.tflite" for g in ("window", "kv") if (out / f"{g}_{precision}.tflite").is_file()}
    signatures: dict[str, str] = {}
    if (out / f"model_{precision}.tflite").is_file():  # litert_torch: both graphs, one file's signatures
        models = {g: f"model_{precision}.tflite" for g in decode.SIGNATURES}
        signatures = dict(decode.SIGNATURES)
    for name in set(models.values()):
        shutil.copy(out / name, bundle / name)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(out / name, bundle / name)
    generation = {"max_new_tokens": espec["generation"]["max_new_tokens"], "stop_strings": list(STOP_STRINGS),
                  "eos_token_id": tok.eos_token_id, "window": espec["window"], "kv_cache": espec["kv_cache"],
                  "precision": precision, "models": models, "signatures": signatures, "greedy": True}
    template = {"template": prompt.TEMPLATE, "answer_prefix": prompt.ANSWER_PREFIX,
                "modes": {"generate": "a request in plain words", "summarise": "a piece of code"},
                "family": family, "prefix_ids": tok("").input_ids}
    (bundle / "generation.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    (bundle / "prompt.json").write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(bundle.iterdir())}
    manifest = {"model": model_id, "git_commit": git_commit(), "files": files,
                "total_bytes": sum(f["bytes"] for f in files.values())}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def run_stage(spec: dict[str, Any], model_id: str, model_dir: Path, out: Path) -> dict[str, Any]:
    espec = validate_section(spec["export"], "export", "export")
    inputs = {"model": model_dir}
    with tracking.stage_run("export", model_id, {"model": model_id, "export": espec}, inputs=inputs) as run, \
            atomic_dir(out) as tmp:
        model, tok = load_float(model_dir)
        family = model.config.model_type
        check_convertible(model, espec)
        check_export_precisions(espec)
        kv_torch = prefill_torch = None
        if espec["kv_cache"]:  # our graph modules against the HF forward, before any conversion
            ids = list(range(1, min(16, espec["kv_cache"]) + 1))
            step = graphs.KVStep(model, espec["kv_cache"]).eval()
            with torch.no_grad():
                full = model(input_ids=torch.tensor([ids])).logits[0]
            kv_torch = float((graphs.teacher_forced(step, ids) - full).abs().max())
            prefill = window_graph(model, espec)
            prefill_torch = float((graphs.prefilled(prefill, step, ids, len(ids) // 2) - full).abs().max())
        refs, meta = references(model, tok, espec, spec["reference_prompts"])
        np.savez(tmp / "references.npz", **refs)
        (tmp / "references.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
        info = export_graphs(model, espec, tmp / "onnx") if espec["backend"] == "onnx2tf" else {}
        del model
        tok.save_pretrained(tmp / "tokenizer")
        for name in ("tokenizer.json", "tokenizer_config.json"):  # the app's tokenizer reads both
            shutil.move(tmp / "tokenizer" / name, tmp / name)
        shutil.rmtree(tmp / "tokenizer")
        parity = convert(espec, tmp, model_dir)
        parity.update({"backend": espec["backend"], "torch_kv_vs_full_max_abs": kv_torch,
                       "torch_prefill_decode_vs_full_max_abs": prefill_torch, **info})
        failures = gate_failures(parity, espec["parity"]["gates"])
        parity["gates"] = espec["parity"]["gates"]
        parity["failures"] = failures
        (tmp / "parity.json").write_text(json.dumps(parity, indent=2) + "\n", encoding="utf-8")
        run.log_artifact(tmp / "parity.json")
        run.log_metrics(parity_metrics(parity))
        if failures:
            raise ParityError("export parity gate failed:\n  " + "\n  ".join(failures))
        manifest = write_bundle(tmp, model_id, espec, tok, family)
        run.log_metrics({"bundle.total_bytes": manifest["total_bytes"]})
        run.write_record(tmp, "export", model_id)
        run.log_datasets([], model_ids=tracking.model_ids(model_dir))
        run.describe(f"`{model_id}` exported with {espec['backend']}: {len(parity['tflite'])} TFLite graphs, "
                     f"app bundle in {espec['bundle_precision']} ({manifest['total_bytes'] / 1e6:.1f} MB); every "
                     f"parity gate passed.", {k: v for k, v in parity_metrics(parity).items() if k.endswith("max_abs")})
        tracking.log_output(run, tmp, out, ("parity.json", "references.json", "bundle/manifest.json"),
                            models=(f"{model_id}@tflite",), model_type="tflite",
                            model_tags=tracking_models.manifest_tags(manifest))
        run.register_model(f"sophia-{model_id}-tflite", run.models[f"{model_id}@tflite"],
                           tracking_models.manifest_tags(manifest))
    log.info("%s exported: %s", model_id, ", ".join(sorted(parity["tflite"])))
    return parity


def parity_metrics(parity: dict[str, Any]) -> dict[str, float]:
    m: dict[str, float] = {}
    for graph, r in parity["onnx"].items():
        m[f"onnx.{graph}.max_abs"] = r["max_abs"]
    for key, r in parity["tflite"].items():
        m[f"{key}.max_abs"] = r["logits"]["max_abs"]
        m[f"{key}.argmax_agreement"] = r["logits"]["argmax_agreement"]
        if "prefill_decode" in r:
            m[f"{key}.prefill_decode.max_abs"] = r["prefill_decode"]["max_abs"]
            m[f"{key}.prefill_decode.argmax_agreement"] = r["prefill_decode"]["argmax_agreement"]
        m[f"{key}.greedy_equal"] = float(r["greedy_equal"])
        if "perplexity" in r:
            m[f"{key}.ppl_increase"] = r["perplexity"]["increase"]
        m[f"{key}.bytes"] = r["bytes"]
        m[f"{key}.load_s"] = r["load_s"]
    for graph, s in parity.get("convert_s", {}).items():
        m[f"convert_s.{graph}"] = s
    return m


def main() -> None:
    from sophia.cli import load_spec, parse, parser

    p: argparse.ArgumentParser = parser("Export a float model to ONNX and TFLite with parity gates (stage export).",
                                        threads=0)
    p.add_argument("--model-id", required=True)
    p.add_argument("--model", required=True, type=Path, help="float model directory (base or merged)")
    args = parse(p)
    run_stage(load_spec(args.spec), args.model_id, args.model, args.out)
