"""Benchmark: the real-width rehearsal. configs/phi2-shape.yaml (Phi-2's exact layer shapes, fewer
layers) runs through the whole workflow at two depths; per stage this measures wall time, peak
RSS and output size from the run's own files, takes the difference between the depths as the
per-layer share, extrapolates linearly to Phi-2's 32 layers, and checks the prediction against what
configs/paper.yaml asks the scheduler for (sophia.resources). Opt-in, not in CI: about an hour per
depth on 2 cores.

    .venv/bin/python benchmarks/real_width.py                       # depths 4 and 3, then the table
    .venv/bin/python benchmarks/real_width.py --layers 4 5 --workdir /scratch/phi2-shape
    .venv/bin/python benchmarks/real_width.py --report-only         # the table from finished runs
    .venv/bin/python benchmarks/real_width.py -n                    # plan both depths (Snakemake dry runs)

Arguments it does not know go to Snakemake (-n, --forcerun export, ...).

Each depth runs in `<workdir>/<N>L/` (its own results/ and MLflow store) with the config's relative
data paths made absolute. Writes benchmarks/results/real_width.json and .md, and logs both to an
MLflow run (experiment sophia-benchmarks of the first depth's store).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from record import save
from sophia import job_benchmarks, resources

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "phi2-shape.yaml"
PAPER = ROOT / "configs" / "paper.yaml"
PHI2_LAYERS = 32
# stage -> the output folders (under results/) whose size is that stage's output
OUTPUTS = {"base_model": ["models/base"], "data": ["data"], "quantize": ["models/gptq"],
           "finetune": ["adapters"], "evaluate": ["eval", "verifier"], "merge": ["merged"],
           "export": ["export"], "gguf": ["gguf"], "mobile": ["mobile"], "report": ["report"]}


def depth_config(layers: int) -> dict[str, Any]:
    """configs/phi2-shape.yaml at `layers` layers, its relative paths absolute (the run has its own
    directory) and its memory scale (compute.model_gb, fp16 weights) following the depth."""
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    arch = cfg["base_model"]["scratch"]["architecture"]
    arch["num_hidden_layers"] = layers
    for d in cfg["datasets"].values():
        d["path"] = str(ROOT / d["path"])
    cfg["evaluate"]["dataset_root"] = str(ROOT / cfg["evaluate"]["dataset_root"])
    cfg["compute"]["model_gb"] = round(2 * parameters(arch, cfg["base_model"]["scratch"]["tokenizer"]
                                                      ["vocab_size"]) / 1e9, 3)
    return cfg


def parameters(arch: dict[str, Any], vocab: int) -> int:
    """Phi's parameter count: per layer q, k, v, dense (with biases), fc1, fc2 and one LayerNorm;
    the embedding, the final LayerNorm and the untied lm_head (with bias)."""
    c, f, n = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    layer = 4 * (c * c + c) + (c * f + f) + (f * c + c) + 2 * c
    return n * layer + vocab * c + 2 * c + (c * vocab + vocab)


def run_depth(workdir: Path, layers: int, cores: int, extra: list[str]) -> float:
    """The whole workflow at one depth; returns its wall time in seconds."""
    wd = workdir / f"{layers}L"
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "config.yaml").write_text(yaml.safe_dump(depth_config(layers), sort_keys=False), encoding="utf-8")
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-s", str(ROOT / "Snakefile"), "--directory", str(wd), "--configfile",
           str(wd / "config.yaml"), "--cores", str(cores), *extra]
    print(f"[{layers} layers] {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(wd / "snakemake.log", "a", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the {layers}-layer run failed (exit {proc.returncode}): see {wd / 'snakemake.log'}")
    return seconds


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


MEASURES = {"seconds": "wall s", "cpu_seconds": "CPU s", "max_rss_mb": "peak RSS MB", "output_mb": "output MB"}


def measure(wd: Path) -> dict[str, dict[str, float]]:
    """Per stage of one finished run: job wall time (s, summed over its jobs), peak RSS (MB, the
    largest job's) from Snakemake's benchmark files, and the size of its outputs (MB)."""
    results = wd / "results"
    stages: dict[str, dict[str, float]] = {}
    for job in job_benchmarks.collect(results):
        s = stages.setdefault(job["stage"], {"jobs": 0, "seconds": 0.0, "cpu_seconds": 0.0, "max_rss_mb": 0.0})
        s["jobs"] += 1
        s["seconds"] += job["metrics"].get("job.seconds", 0.0)
        s["cpu_seconds"] += job["metrics"].get("job.cpu_seconds", 0.0)
        s["max_rss_mb"] = max(s["max_rss_mb"], job["metrics"].get("job.max_rss_mb", 0.0))
    for stage, s in stages.items():
        s["output_mb"] = sum(folder_bytes(results / f) for f in OUTPUTS.get(stage, [])) / 1e6
    return stages


def own_measurements(results: Path) -> dict[str, float]:
    """What the stages record themselves, the parts a job's wall time hides: GPTQ alone, a
    fine-tuning optimizer step, the TFLite conversion, the app's bundle."""
    out: dict[str, float] = {}
    quantize = json.loads((results / "models" / "gptq" / "quantize.json").read_text(encoding="utf-8"))
    out["gptq_s"] = quantize["quantize_seconds"]
    steps = [json.loads(f.read_text(encoding="utf-8")) for f in sorted((results / "adapters").rglob("finetune.json"))]
    out["finetune_s_per_step"] = sum(s["seconds"] for s in steps) / sum(s["global_steps"] for s in steps)
    out["finetune_tokens_per_s"] = sum(s["train_tokens"] for s in steps) / sum(s["seconds"] for s in steps)
    for parity in (results / "export").glob("*/parity.json"):
        out["export_convert_s"] = sum(json.loads(parity.read_text(encoding="utf-8"))["convert_s"].values())
    bundle = results / "mobile" / "bundle" / "manifest.json"
    if bundle.is_file():
        out["app_bundle_mb"] = json.loads(bundle.read_text(encoding="utf-8"))["total_bytes"] / 1e6
    return out


def browser(wd: Path, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    """The app's bundle in headless Chromium (mobile/bench.mjs): load, first token for a
    `prompt_tokens` prompt through prefill, decode ms per token; medians of 3 first starts."""
    proc = subprocess.run(["node", "bench.mjs", "--app", str(wd / "results" / "mobile"), "--graphs", "kv",
                           "--repeats", "3", "--prompt-tokens", str(prompt_tokens), "--new-tokens", str(new_tokens)],
                          cwd=ROOT / "mobile", capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:]}
    kv = json.loads(proc.stdout.strip().splitlines()[-1])["graphs"]["kv"]
    generation = json.loads((wd / "results" / "mobile" / "bundle" / "generation.json").read_text(encoding="utf-8"))
    return {"precision": generation["precision"], "load_s": kv["load_ms"] / 1000,
            "first_token_ms": kv["first_token_ms"], "decode_ms_per_token": kv["decode_ms_per_token"]}


def extrapolate(a: tuple[int, float], b: tuple[int, float], layers: int = PHI2_LAYERS) -> tuple[float, float]:
    """(per-layer share, value at `layers`) of the line through two (depth, value) points."""
    (la, va), (lb, vb) = a, b
    slope = (va - vb) / (la - lb)
    return slope, va + slope * (layers - la)


def table(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per stage and measure: the value at each depth, the per-layer share, the 32-layer prediction,
    and for memory (and time of the CPU-only stages) what configs/paper.yaml requests."""
    (la, ra), (lb, rb) = sorted(runs.items(), reverse=True)[:2]
    paper = yaml.safe_load(PAPER.read_text(encoding="utf-8"))
    from sophia.config import validate

    compute = validate(paper)["compute"]
    rows: dict[str, Any] = {}
    for stage in ra["stages"]:
        if stage not in rb["stages"]:
            continue
        row: dict[str, Any] = {}
        for key in MEASURES:
            va, vb = ra["stages"][stage][key], rb["stages"][stage][key]
            per_layer, full = extrapolate((la, va), (lb, vb))
            row[key] = {str(la): va, str(lb): vb, "per_layer": per_layer, "phi2": full}
        if stage == "base_model":  # here it pretrains from scratch (AdamW states); paper.yaml copies Phi-2
            row["paper_note"] = "n/a: paper.yaml downloads Phi-2, this pretrains"
        elif stage in resources.SCALE:
            request = resources.mem_mb(stage, compute)
            row["paper_mem_mb"] = request
            row["mem_fits"] = row["max_rss_mb"]["phi2"] <= request
            if resources.gpus(stage, compute) == 0:  # GPU stages' CPU time here says nothing of a GPU's
                minutes = resources.runtime(stage, compute)
                row["paper_runtime_min"] = minutes
                row["time_fits"] = row["seconds"]["phi2"] <= minutes * 60
        rows[stage] = row
    out: dict[str, Any] = {"depths": [la, lb], "stages": rows, "own": {}}
    for key in ra.get("own", {}):
        if key in rb.get("own", {}):
            per_layer, full = extrapolate((la, ra["own"][key]), (lb, rb["own"][key]))
            out["own"][key] = {str(la): ra["own"][key], str(lb): rb["own"][key], "per_layer": per_layer, "phi2": full}
    if "error" not in ra.get("browser", {"error": 1}) and "error" not in rb.get("browser", {"error": 1}):
        out["browser"] = {}
        for key in ("load_s", "first_token_ms", "decode_ms_per_token"):
            per_layer, full = extrapolate((la, ra["browser"][key]), (lb, rb["browser"][key]))
            out["browser"][key] = {str(la): ra["browser"][key], str(lb): rb["browser"][key], "per_layer": per_layer,
                                   "phi2": full}
        out["browser"]["phi2_tokens_per_s"] = 1000 / out["browser"]["decode_ms_per_token"]["phi2"]
        out["browser"]["precision"] = ra["browser"].get("precision")
    return out


def phi2(v: dict[str, float]) -> str:
    """The 32-layer figure; a negative per-layer share is measurement noise (a fixed-cost stage,
    or another job on the machine), not a stage that gets cheaper with depth: no extrapolation."""
    return f"{v['phi2']:.0f}" if v["per_layer"] >= 0 else "noise"


def markdown(result: dict[str, Any]) -> str:
    la, lb = result["depths"]
    lines = [f"| stage | measure | {la} layers | {lb} layers | per layer | Phi-2 (32) | paper.yaml request |",
             "|---|---|---|---|---|---|---|"]
    for stage, row in result["stages"].items():
        for key, unit in MEASURES.items():
            v = row[key]
            request = row.get("paper_note", "") if key == "max_rss_mb" else ""
            if key == "max_rss_mb" and "paper_mem_mb" in row:
                request = f"{row['paper_mem_mb']} MB ({'fits' if row['mem_fits'] else 'TOO LOW'})"
            if key == "seconds" and "paper_runtime_min" in row:
                request = f"{row['paper_runtime_min']} min ({'fits' if row['time_fits'] else 'TOO LOW'})"
            lines.append(f"| {stage} | {unit} | {v[str(la)]:.1f} | {v[str(lb)]:.1f} | {v['per_layer']:.1f} "
                         f"| {phi2(v)} | {request} |")
    for key, v in result.get("own", {}).items():
        lines.append(f"| (stage's own) | {key} | {v[str(la)]:.1f} | {v[str(lb)]:.1f} | {v['per_layer']:.1f} "
                     f"| {phi2(v)} | |")
    if "browser" in result:
        b = result["browser"]
        precision = b.get("precision") or "bundle"
        for key, unit in (("load_s", "load s"), ("first_token_ms", "first token ms (100-token prompt)"),
                          ("decode_ms_per_token", "decode ms/token")):
            v = b[key]
            lines.append(f"| browser ({precision}) | {unit} | {v[str(la)]:.1f} | {v[str(lb)]:.1f} "
                         f"| {v['per_layer']:.1f} | {phi2(v)} | |")
        lines.append(f"\nFull Phi-2 ({precision}) in this browser on this CPU: {b['phi2_tokens_per_s']:.2f} "
                     "tokens/s (extrapolated decode time).")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, nargs=2, default=[4, 3], help="the two depths (the first: the config's)")
    p.add_argument("--workdir", type=Path, default=Path("results-phi2-shape"))
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--report-only", action="store_true", help="measure finished runs, run nothing")
    p.add_argument("--prompt-tokens", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/real_width.json"))
    args, extra = p.parse_known_args()
    args.workdir = args.workdir.resolve()  # Snakemake runs each depth in its own directory
    if args.layers[0] == args.layers[1]:
        p.error("--layers: two different depths are needed for a per-layer share")
    runs: dict[int, dict[str, Any]] = {}
    dry = bool({"-n", "--dry-run", "--dryrun"} & set(extra))
    for layers in args.layers:
        wd = args.workdir / f"{layers}L"
        wall = None if args.report_only else run_depth(args.workdir, layers, args.cores, extra)
        if dry:
            print(f"[{layers} layers] planned: {wd / 'snakemake.log'}")
            continue
        if not (wd / "results" / "benchmarks").is_dir():
            raise SystemExit(f"{wd}: no finished run to measure (run without --report-only)")
        runs[layers] = {"wall_s": wall, "stages": measure(wd), "own": own_measurements(wd / "results"),
                        "browser": browser(wd, args.prompt_tokens, args.new_tokens)}
        print(f"[{layers} layers] measured: {json.dumps(runs[layers]['browser'])}", flush=True)
    if dry:
        return
    result = {"config": str(CONFIG.relative_to(ROOT)), "runs": runs, **table(runs)}
    md = markdown(result)
    print(md)
    save(args.out, result, name="real_width", params={"layers": args.layers, "config": result["config"]},
         metrics={f"{stage}.{key}.phi2": row[key]["phi2"] for stage, row in result["stages"].items()
                  for key in MEASURES if row[key]["per_layer"] >= 0}, markdown_body=md)


if __name__ == "__main__":
    main()
