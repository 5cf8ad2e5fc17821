"""ONNX → TensorFlow (onnx2tf) → TFLite, then parity against the PyTorch references
(export environment: `.venv-export/bin/python -m sophia.export.convert`).

Reads `<work>/onnx/{window,kv}.onnx` and `<work>/references.npz` + `references.json` written by
the main environment, writes `<work>/{graph}_{precision}.tflite` and `<work>/parity.json`. It only
measures; the gates are applied by the export stage, which reads parity.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sophia.export import decode
from sophia.export.decode import KVModel, WindowModel, greedy

PRECISIONS = ("fp32", "fp16", "int8")  # int8: dynamic-range quantized weights
KV_INPUTS = ["k_cache", "v_cache"]  # 5-D tensors onnx2tf must keep as they are


def onnx2tf(onnx_path: Path, out: Path, graph: str, precisions: list[str], log: Path) -> dict[str, Path]:
    """Convert one graph: onnx2tf builds the TensorFlow model from the ONNX graph, then TFLite's
    converter writes each precision with the settings onnx2tf's own CLI uses.

    Why not the CLI: it converts its float files through `from_keras_model`, which serializes the
    whole Keras model to a temporary SavedModel on each call (most of a conversion's time), and
    the SavedModel it also writes (-osd) is never used. The concrete function with a plain
    `tf.Module` as its trackable skips that, gives logits bitwise-equal to the CLI's fp32, fp16
    and dynamic-range files, and gives every file the `serving_default` signature (the CLI's
    dynamic-range file has none).
    """
    import onnx2tf as o2t
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix=f"onnx2tf-{graph}-", dir=out) as scratch:
        scratch_dir = Path(scratch).resolve()
        src = scratch_dir / f"{graph}.onnx"  # a copy: onnx2tf may rewrite its input
        shutil.copy(onnx_path, src)
        data = onnx_path.with_suffix(".onnx.data")
        if data.exists():
            shutil.copy(data, scratch_dir / data.name)
        keep = cache_inputs(onnx_path)  # the decode and the prefill graph's
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"onnx2tf.convert {src.name}: not_use_onnxsim, keep_shape_absolutely {keep}\n")
        try:
            model = o2t.convert(input_onnx_file_path=str(src), output_folder_path=str(scratch_dir / "tf"),
                                not_use_onnxsim=True, non_verbose=True, disable_model_save=True,
                                keep_shape_absolutely_input_names=keep or None)
        except Exception as e:  # onnx2tf raises bare Exceptions, or exits
            raise RuntimeError(f"onnx2tf failed on {graph}.onnx: {type(e).__name__}: {e}") from e
        except SystemExit as e:
            raise RuntimeError(f"onnx2tf failed on {graph}.onnx (exit {e.code}); see {log}") from e
        names = list(model.output_names)  # the ONNX output names: logits, k_cache_out, v_cache_out
        specs = [tf.TensorSpec(t.shape, t.dtype, t.name.split(":")[0]) for t in model.inputs]

        def outputs(*inputs: Any) -> dict[str, Any]:
            got = model(list(inputs))
            return dict(zip(names, got if len(names) > 1 else [got], strict=True))

        module = tf.Module()  # tracks the weights the signature needs, without Keras serialization
        module.weights = list(model.variables)
        module.serve = tf.function(outputs, input_signature=specs)
        fn = module.serve.get_concrete_function()
        made = {}
        for precision in precisions:
            converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
            converter.unfold_batchmatmul = False
            if precision != "fp32":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16] if precision == "fp16" else []
            start = time.perf_counter()
            made[precision] = out / f"{graph}_{precision}.tflite"
            made[precision].write_bytes(converter.convert())
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{graph}_{precision}.tflite: {made[precision].stat().st_size} bytes in "
                         f"{time.perf_counter() - start:.1f} s\n")
    return made


def cache_inputs(onnx_path: Path) -> list[str]:
    """The graph's KV-cache inputs: 5-D tensors that onnx2tf would otherwise transpose."""
    import onnx

    try:
        names = {i.name for i in onnx.load(str(onnx_path), load_external_data=False).graph.input}
    except Exception:  # not an ONNX protobuf: onnx2tf gets to say so, naming the graph
        return []
    return [n for n in KV_INPUTS if n in names]


def compare(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).mean()),
            "logit_scale": float(np.abs(want).max())}


def onnx_parity(work: Path, refs: dict[str, np.ndarray]) -> dict[str, Any]:
    import onnxruntime as ort

    out = {}
    win = ort.InferenceSession(str(work / "onnx" / "window.onnx"), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {}
    if "pos" in {i.name for i in win.get_inputs()}:  # the prefill graph: from position 0, empty cache
        empty = np.zeros(tuple(refs["cache_shape"]), dtype=np.float32)
        feeds = {"pos": np.zeros(1, np.int32), "k_cache": empty, "v_cache": empty}
    got = np.stack([win.run(["logits"], {"input_ids": x[None], **feeds})[0][0] for x in refs["window_inputs"]])
    out["window"] = compare(got, refs["window_logits"])
    if (work / "onnx" / "kv.onnx").is_file():
        kv = ort.InferenceSession(str(work / "onnx" / "kv.onnx"), providers=["CPUExecutionProvider"])
        k = np.zeros(tuple(refs["cache_shape"]), dtype=np.float32)
        v = k.copy()
        rows = []
        for p, t in enumerate(refs["kv_ids"]):
            logits, k, v = kv.run(["logits", "k_cache_out", "v_cache_out"],
                                  {"input_ids": np.array([[t]], np.int32), "pos": np.array([p], np.int32),
                                   "k_cache": k, "v_cache": v})
            rows.append(logits.reshape(-1))
        out["kv"] = compare(np.stack(rows), refs["kv_logits"])
    return out


def tflite_parity(files: dict[str, Path], graph: str, refs: dict[str, np.ndarray], meta: dict[str, Any],
                  signatures: dict[str, str] | None = None) -> dict[str, Any]:
    """Logits against PyTorch's, and greedy tokens against PyTorch generate, decoded the way the
    runner decodes (`decode.load`): the decode graph (kv) takes the prompt through the same
    precision's window graph when `files` has it, and `prefill_decode` measures that hand-over."""
    start = time.perf_counter()
    model = decode.load(files, graph, signatures=signatures)
    result: dict[str, Any] = {"load_s": time.perf_counter() - start, "bytes": files[graph].stat().st_size}
    if isinstance(model, WindowModel):
        got = np.stack([model.logits(x[None])[0] for x in refs["window_inputs"]])
        result["logits"] = compare(got, refs["window_logits"])
    else:
        ids = [int(t) for t in refs["kv_ids"]]
        result["logits"] = compare(model.teacher_forced(ids), refs["kv_logits"])
        if model.prefill is not None:
            half = max(2, len(ids) // 2)
            model.reset()
            rows = [model.feed(ids[:half])] + [model.step(t) for t in ids[half:]]
            result["prefill_decode"] = compare(np.stack(rows), refs["kv_logits"][half - 1:])
    matches = []
    for prompt, want in zip(meta["greedy_prompts"], meta["greedy_tokens"], strict=True):
        got_tokens = list(greedy(model, prompt, len(want)))
        first_diff = next((i for i, (a, b) in enumerate(zip(got_tokens, want, strict=False)) if a != b), None)
        matches.append({"equal": got_tokens == want, "first_difference": first_diff, "tokens": got_tokens})
    result["greedy"] = matches
    result["greedy_equal"] = all(m["equal"] for m in matches)
    if "greedy_nll" in meta:  # PyTorch's greedy answers, teacher-forced through this graph
        want_nll = [x for row in meta["greedy_nll"] for x in row]
        got_nll = [x for p, a in zip(meta["greedy_prompts"], meta["greedy_tokens"], strict=True)
                   for x in answer_nll(model, p, a)]
        ppl = {"torch": float(np.exp(np.mean(want_nll))), "tflite": float(np.exp(np.mean(got_nll)))}
        result["perplexity"] = {**ppl, "increase": ppl["tflite"] / ppl["torch"] - 1, "tokens": len(got_nll)}
    return result


def answer_nll(model: WindowModel | KVModel, prompt: list[int], answer: list[int]) -> list[float]:
    """Per answer token, its negative log-likelihood under the graph, given the prompt and the
    answer before it: the prompt through `feed` (the prefill, as the app does), then one decode step
    per token; a window graph sees prompt + answer in one call."""
    if isinstance(model, KVModel):
        model.reset()
        rows = np.stack([model.feed(list(prompt))] + [model.step(t) for t in answer[:-1]])
    else:
        ids = np.zeros((1, model.window), dtype=np.int32)
        ids[0, : len(prompt) + len(answer)] = list(prompt) + list(answer)
        rows = model.logits(ids)[0, len(prompt) - 1: len(prompt) + len(answer) - 1]
    rows = rows.astype(np.float64)
    top = rows.max(-1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(rows - top).sum(-1))
    return (log_z - rows[np.arange(len(answer)), answer]).tolist()


def graph_files(work: Path, graph: str, precision: str) -> dict[str, Path]:
    """The files a graph of one precision is decoded with: itself, and for kv the window graph
    (its prefill) when it was made."""
    files = {graph: work / f"{graph}_{precision}.tflite"}
    window = work / f"window_{precision}.tflite"
    if graph == "kv" and window.is_file():
        files["window"] = window
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"], choices=PRECISIONS)
    p.add_argument("--check-only", action="store_true",
                   help="skip conversion: measure the .tflite files already in --work (e.g. a copied export)")
    p.add_argument("--out", type=Path, help="where to write parity.json (default: --work)")
    args = p.parse_args()
    work: Path = args.work.resolve()  # onnx2tf runs in its scratch folder: no relative paths
    refs = dict(np.load(work / "references.npz"))
    meta = json.loads((work / "references.json").read_text(encoding="utf-8"))
    log = work / "onnx2tf.log"
    graphs = ["window"] + (["kv"] if (work / "onnx" / "kv.onnx").is_file() else [])
    parity: dict[str, Any] = {"onnx": onnx_parity(work, refs), "tflite": {}, "convert_s": {}}
    for graph in graphs:
        if args.check_only:
            existing = {p: work / f"{graph}_{p}.tflite" for p in args.precisions}
            made = {p: f for p, f in existing.items() if f.is_file()}
        else:
            start = time.perf_counter()
            made = onnx2tf(work / "onnx" / f"{graph}.onnx", work, graph, args.precisions, log)
            parity["convert_s"][graph] = time.perf_counter() - start
        for precision in made:
            parity["tflite"][f"{graph}_{precision}"] = tflite_parity(graph_files(work, graph, precision), graph,
                                                                     refs, meta)
            print(f"{graph} {precision}: {json.dumps(parity['tflite'][f'{graph}_{precision}']['logits'])}",
                  flush=True)
    (args.out or work / "parity.json").write_text(json.dumps(parity, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
