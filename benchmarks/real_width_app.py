"""Benchmark: the phone bundle at Phi-2's width. A model with Phi-2's exact layer shapes and vocabulary
(configs/phi2-shape.yaml's architecture, random weights: this measures size, memory and speed, not
quality) at two depths goes through the unchanged export stage (litert_torch route, its parity
gates) and the app in headless Chromium (mobile/bench.mjs: load, first token for a 100-token prompt,
decode); each figure is extrapolated linearly through the two depths to Phi-2's 32 layers and set
against the targets below. Cheaper than the whole-workflow rehearsal (benchmarks/real_width.py): no
training, only what decides the phone figures.

    .venv/bin/python benchmarks/real_width_app.py                         # int4, depths 2 and 4
    .venv/bin/python benchmarks/real_width_app.py --precision int8 --out benchmarks/results/real_width_app_int8.json
    .venv/bin/python benchmarks/real_width_app.py --int4-block-size 0 --out ...   # one int4 scale per channel

Memory is the peak of the summed resident memory of a process and all its children, sampled every
0.2 s: the export stage with its converter subprocess, and the browser (every Chromium process). A
job past --max-gb is killed (the machine is shared) and the run fails naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from real_width import extrapolate, parameters
from record import save

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "phi2-shape.yaml"
# what full Phi-2 must beat: the paper's Android app loads in ~30 s and answers in ~10 s
TARGETS = {"bundle_mb": ("<=", 1700), "load_s": ("<=", 20), "first_token_s": ("<=", 8), "tokens_per_s": (">=", 4)}


class Peak:
    """Peak summed RSS (MB) of a process tree while it runs; past `cap_mb` the tree is killed."""

    def __init__(self, proc: subprocess.Popen, cap_mb: float) -> None:
        self.root, self.cap_mb, self.mb, self.killed = psutil.Process(proc.pid), cap_mb, 0.0, False
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _alive(self) -> bool:
        try:
            return self.root.is_running() and self.root.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:  # reaped between the two questions
            return False

    def _watch(self) -> None:
        while self._alive():
            total = 0
            tree = self._tree()
            for p in tree:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.mb = max(self.mb, total / 1e6)
            if self.mb > self.cap_mb:
                self.killed = True
                for p in reversed(tree):
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        pass
                return
            time.sleep(0.2)

    def join(self) -> None:
        self._thread.join(timeout=5)


def watched(cmd: list[str], cap_mb: float, log: Path, **kw: Any) -> tuple[float, float, str]:
    """Run `cmd` (output to `log`); returns (wall s, peak tree RSS MB, stdout)."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, **kw)
        peak = Peak(proc, cap_mb)
        out, _ = proc.communicate()
    peak.join()
    wall = time.perf_counter() - start
    if peak.killed:
        raise SystemExit(f"{cmd[0]} ... passed --max-gb ({cap_mb / 1000:g} GB) and was killed; see {log}")
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{tail}")
    return wall, peak.mb, out


def build_model(dest: Path, layers: int) -> int:
    """Phi-2's shapes at `layers` layers, random weights, and a small byte-level BPE tokenizer (the
    token ids it yields all lie inside the 51200-row vocabulary); returns the parameter count."""
    import torch
    from sophia.base_model.corpus import load_corpus
    from sophia.base_model.families import model_config
    from sophia.base_model.tokenizer import train_tokenizer

    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    arch = {**cfg["base_model"]["scratch"]["architecture"], "num_hidden_layers": layers}
    vocab = cfg["base_model"]["scratch"]["tokenizer"]["vocab_size"]
    tok = train_tokenizer(load_corpus(40, 1, 0).train, 1024, arch["max_position_embeddings"])
    ids = {"vocab_size": vocab, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.eos_token_id}
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(model_config("phi", arch, ids))
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return parameters(arch, vocab)


def export_spec(precision: str, block: int | None = 32) -> dict[str, Any]:
    """The rehearsal config's export settings, with `precision` in the bundle. Every parity figure is
    measured and recorded, but the quality gates are off: random weights spread 51200 logits thin,
    so the top two lie closer than a quantization's error, and a rounding error moves the
    perplexity of answers the model has no reason to prefer by more than it would a trained
    model's. The gates hold on trained models (the test suite's); here the bundle is on trial for
    size, memory and speed."""
    from sophia.config import validate_section

    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    espec = {**cfg["export"], "precisions": [precision], "bundle_precision": precision, "int4_block_size": block}
    espec.pop("models", None)
    gates = validate_section({}, "export", "export")["parity"]["gates"]
    espec["parity"] = {"gates": {precision: {**gates[precision], "argmax_agreement": 0.0, "greedy_equal": False,
                                             "max_ppl_increase": None}}}
    return {"export": espec, "reference_prompts": cfg.get("reference_prompts") or
            ["Give me a program that checks if a number is prime.", "Reverse a string."]}


def depth(workdir: Path, layers: int, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    wd = workdir / f"{layers}L"
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    params = build_model(wd / "model", layers)
    env = {k: v for k, v in os.environ.items() if k != "SOPHIA_PARENT_RUN_ID"}
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{wd / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": "real-width-app",
                "SOPHIA_MLFLOW_ARTIFACT_LOCATION": str(wd / "mlartifacts")})
    spec = export_spec(precision, args.int4_block_size or None)
    cmd = [sys.executable, "-m", "sophia.export", "--spec", json.dumps(spec), "--model-id", "base",
           "--model", str(wd / "model"), "--out", str(wd / "export")]
    print(f"[{layers} layers] export ({params / 1e6:.0f} M parameters)", flush=True)
    export_s, export_mb, _ = watched(cmd, args.max_gb * 1000, wd / "export.log", env=env)
    parity = json.loads((wd / "export" / "parity.json").read_text(encoding="utf-8"))
    manifest = json.loads((wd / "export" / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    node = shutil.which("node") or "node"
    subprocess.run([node, "build.mjs", "--bundle", str(wd / "export" / "bundle"), "--out", str(wd / "app")],
                   cwd=ROOT / "mobile", check=True, capture_output=True)
    print(f"[{layers} layers] browser", flush=True)
    _, browser_mb, out = watched([node, "bench.mjs", "--app", str(wd / "app"), "--graphs", "kv", "--repeats",
                                  str(args.repeats), "--prompt-tokens", str(args.prompt_tokens), "--new-tokens",
                                  str(args.new_tokens)], args.max_gb * 1000, wd / "bench.log", cwd=ROOT / "mobile")
    kv = json.loads(out.strip().splitlines()[-1])["graphs"]["kv"]
    gates = {k: {"logits": r["logits"], "prefill_decode": r.get("prefill_decode"), "greedy_equal": r["greedy_equal"],
                 "perplexity": r.get("perplexity")} for k, r in parity["tflite"].items()}
    return {"parameters": params, "export_s": export_s, "export_peak_mb": export_mb,
            "convert_s": sum(parity["convert_s"].values()), "parity": gates, "gates": parity["gates"],
            "bundle_mb": manifest["total_bytes"] / 1e6, "load_s": kv["load_ms"] / 1000,
            "first_token_s": kv["first_token_ms"] / 1000, "decode_ms_per_token": kv["decode_ms_per_token"],
            "prompt_tokens": [r["prompt_tokens"] for r in kv["runs"]], "browser_peak_mb": browser_mb}


MEASURES = {"bundle_mb": "bundle MB", "load_s": "load s", "first_token_s": "first token s (100-token prompt)",
            "decode_ms_per_token": "decode ms/token", "browser_peak_mb": "peak browser memory MB",
            "export_s": "export stage wall s", "export_peak_mb": "export peak RSS MB"}


def table(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    (la, ra), (lb, rb) = sorted(runs.items(), reverse=True)[:2]
    rows = {}
    for key in MEASURES:
        per_layer, full = extrapolate((la, ra[key]), (lb, rb[key]))
        rows[key] = {str(la): ra[key], str(lb): rb[key], "per_layer": per_layer, "phi2": full}
    phi2 = {key: row["phi2"] for key, row in rows.items()}
    phi2["tokens_per_s"] = 1000 / phi2["decode_ms_per_token"]
    verdict = {k: {"target": f"{op} {v}", "phi2": phi2[k], "met": phi2[k] <= v if op == "<=" else phi2[k] >= v}
               for k, (op, v) in TARGETS.items()}
    return {"depths": [la, lb], "rows": rows, "phi2": phi2, "targets": verdict}


def markdown(result: dict[str, Any]) -> str:
    la, lb = result["depths"]
    p = result["precision"]
    lines = [f"| measure ({p}) | {la} layers | {lb} layers | per layer | Phi-2 (32 layers) |", "|---|---|---|---|---|"]
    for key, unit in MEASURES.items():
        v = result["rows"][key]
        # a figure that shrinks with depth is noise (another job, a sampling miss), not extrapolated
        full = f"{v['phi2']:.1f}" if v["per_layer"] >= 0 else "noise"
        lines.append(f"| {unit} | {v[str(la)]:.2f} | {v[str(lb)]:.2f} | {v['per_layer']:.2f} | {full} |")
    lines += ["", "| Phi-2 (32 layers) | extrapolated | target | met |", "|---|---|---|---|"]
    for key, t in result["targets"].items():
        lines.append(f"| {key} | {t['phi2']:.2f} | {t['target']} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, nargs=2, default=[4, 2], help="the two depths")
    p.add_argument("--precision", default="int4", choices=["fp32", "int8", "int4"])
    p.add_argument("--int4-block-size", type=int, default=32, help="export.int4_block_size; 0: one scale per channel")
    p.add_argument("--workdir", type=Path, default=Path("results-phi2-app"))
    p.add_argument("--prompt-tokens", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-gb", type=float, default=14, help="kill a job whose process tree passes this")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/real_width_app.json"))
    args = p.parse_args()
    if args.layers[0] == args.layers[1]:
        p.error("--layers: two different depths are needed for a per-layer share")
    runs = {n: depth(args.workdir.resolve(), n, args.precision, args) for n in args.layers}
    label = args.precision if args.precision != "int4" else f"int4, block {args.int4_block_size or 'per channel'}"
    result = {"config": str(CONFIG.relative_to(ROOT)), "precision": label, "runs": runs,
              "method": "random weights at Phi-2's shapes; figures linear in depth through the two points",
              **table(runs)}
    md = markdown(result)
    print(md)
    save(args.out, result, name="real_width_app", params={"layers": args.layers, "precision": label},
         metrics={f"phi2.{k}": v for k, v in result["phi2"].items()}, markdown_body=md)


if __name__ == "__main__":
    main()
