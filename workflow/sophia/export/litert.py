"""The direct PyTorch → TFLite route (export.backend: litert_torch), for models whose float32
weights exceed the 2 GB TensorFlow SavedModel limit of the onnx2tf route (Phi-2). Runs in its own
environment (`.venv-litert/bin/python -m sophia.export.litert`, envs/litert.txt): litert-torch
traces the same graph modules and writes `model_{fp32,int8,int4}.tflite`: one file per precision
with two signatures over one copy of the weights, `prefill` (`graphs.KVStep` of `window` tokens) and
`decode` (one token), as the LiteRT LLM exports do; without a KV cache, `window_*.tflite` of
`graphs.WindowLM`. int8 and int4 are ai-edge-quantizer's dynamic-range recipes on the fp32 file
(`quantize`). The parity
measurements are the onnx2tf route's own (`convert.tflite_parity`), written to the same
parity.json, so the export stage applies the same gates.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sophia.export import decode, graphs
from sophia.export.convert import tflite_parity

PRECISIONS = ("fp32", "int8", "int4")  # the quantizer offers no fp16 weight recipe
BLOCK_SIZES = (32, 64, 128, 256)  # the blockwise granularities ai-edge-quantizer has
KV_INPUTS = ("input_ids", "pos", "k_cache", "v_cache")
KV_OUTPUTS = ("logits", "k_cache_out", "v_cache_out")


class _Named(torch.nn.Module):
    """Keyword inputs and a dict of outputs, so the .tflite signature keeps the graph's names."""

    def __init__(self, inner: torch.nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.inner, self.outputs = inner, outputs

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.inner(*inputs.values())
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip(self.outputs, out, strict=True))


def convert_graphs(modules: dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor], tuple[str, ...]]],
                   path: Path) -> None:
    """{signature: (module, inputs, output names)} → one .tflite; modules over the same parameters
    share their weights in the file."""
    import litert_torch

    converter = None
    for signature, (module, inputs, outputs) in modules.items():
        named = _Named(module, outputs).eval()
        converter = (converter or litert_torch).signature(signature, named, sample_kwargs=inputs)
    converter.convert().export(str(path))


def quantize(src: Path, dst: Path, precision: str, block_size: int | None = 32) -> None:
    """The fp32 file's weights quantized, activations left float (XNNPACK quantizes them on the fly).
    int8: every weight-carrying op channelwise. int4: the fully-connected layers (all of a layer's
    matrices and the lm_head: nearly every weight) int4 with one fp16 scale per `block_size` inputs
    (None: one per output channel), the rest (the embedding table) int8 as above; a float
    embedding would be a fifth of Phi-2's int4 bundle."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    ops = qtyping.TFLOperationName
    rules = recipe_manager.RecipeManager()  # a later rule wins for the ops it names
    rules.add_dynamic_config(regex=".*", operation_name=ops.ALL_SUPPORTED, num_bits=8)
    if precision == "int4":
        rules.add_dynamic_config(regex=".*", operation_name=ops.FULLY_CONNECTED, num_bits=4,
                                 granularity=qtyping.QuantGranularity(
                                     f"BLOCKWISE_{block_size}" if block_size else "CHANNELWISE"))
    q = quantizer.Quantizer(str(src))
    q.load_quantization_recipe(rules.get_quantization_recipe())
    q.quantize().export_model(str(dst), overwrite=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, type=Path, help="export folder with references.npz/.json")
    p.add_argument("--model", required=True, type=Path, help="float model directory")
    p.add_argument("--window", required=True, type=int)
    p.add_argument("--kv-cache", required=True, type=int)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--int4-block-size", type=int, default=32, choices=(0, *BLOCK_SIZES), help="0: per channel")
    args = p.parse_args()
    from transformers import AutoModelForCausalLM

    work: Path = args.work.resolve()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    refs = dict(np.load(work / "references.npz"))
    meta = json.loads((work / "references.json").read_text(encoding="utf-8"))
    parity: dict[str, Any] = {"onnx": {}, "tflite": {}, "convert_s": {}, "backend": "litert_torch"}
    if args.kv_cache:
        # one file, two signatures over one copy of the weights: the prefill (window) and decode (kv)
        # graphs. Two files would hold the weights twice, and an app would load them twice (the int8
        # pair of a 4-layer Phi-2-width model did not fit the browser's WebAssembly memory).
        name, signatures = "model", decode.SIGNATURES
        graphs.fold_layer_norms(model)  # or the converter copies q, k, v, fc1 and lm_head (see there)
        modules = {}
        for graph, length in (("window", args.window), ("kv", 1)):
            step = graphs.KVStep(model, args.kv_cache, length=length).eval()
            modules[signatures[graph]] = (step, dict(zip(KV_INPUTS, step.example_inputs(), strict=True)), KV_OUTPUTS)
    else:
        name, signatures = "window", {}
        modules = {"window": (graphs.WindowLM(model), {"input_ids": torch.zeros(1, args.window, dtype=torch.int32)},
                              ("logits",))}
    start = time.perf_counter()
    fp32 = work / f"{name}_fp32.tflite"
    convert_graphs(modules, fp32)
    made = {"fp32": fp32}
    for precision in ("int8", "int4"):
        if precision in args.precisions:
            made[precision] = work / f"{name}_{precision}.tflite"
            quantize(fp32, made[precision], precision, args.int4_block_size or None)
    if "fp32" not in args.precisions:
        fp32.unlink()
        made.pop("fp32")
    parity["convert_s"][name] = time.perf_counter() - start
    for precision, path in made.items():
        files = {graph: path for graph in (("window", "kv") if args.kv_cache else ("window",))}
        for graph in files:
            parity["tflite"][f"{graph}_{precision}"] = tflite_parity(files, graph, refs, meta, signatures)
            print(f"{graph} {precision}: {json.dumps(parity['tflite'][f'{graph}_{precision}']['logits'])}",
                  flush=True)
    (work / "parity.json").write_text(json.dumps(parity, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
