"""Benchmark: does caching the teacher's logits pay? The default's distillation (results/distill/micro
settings from config.yaml) run twice through the distill stage, teacher logits cached and not, with
wall time, teacher forward time, tokens/s and the final weights compared (they must not differ).
Writes a JSON file and logs one MLflow run (experiment `sophia-benchmarks` unless
MLFLOW_EXPERIMENT_NAME says otherwise). Needs the default's teacher: run the workflow up to
results/adapters/tiny_codegen/tiny_summary/alpaca first, or name other folders.

    .venv/bin/python benchmarks/distill_cache.py --name micro --threads 2
    .venv/bin/python benchmarks/distill_cache.py --teacher T --student S --data D   # any teacher/student
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "sophia-benchmarks")

import torch
import yaml
from record import save
from safetensors.torch import load_file
from sophia.config import validate
from sophia.distill.stage import run_stage
from sophia.finetune import curricula


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    p.add_argument("--name", default="micro", help="a student of the config's distill section")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--teacher", type=Path, help="teacher model directory (default: the variant's in results/)")
    p.add_argument("--teacher-adapter", type=Path, help="LoRA adapter on the teacher")
    p.add_argument("--student", type=Path, default=Path("results/models/base"),
                   help="student model directory (the base model for a scratch student)")
    p.add_argument("--data", type=Path, help="data stage output of the phase's dataset (default: results/data/)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/distill_cache.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = validate(yaml.safe_load(args.config.read_text()))
    d = cfg["distill"][args.name]
    teacher, adapter = args.teacher, args.teacher_adapter
    if teacher is None:
        variant = d["teacher"]["variant"]
        teacher = Path("results/models/base" if variant == "base" else "results/models/gptq")
        if variant.startswith("gptq+"):
            finals = curricula.finals(cfg["finetune"]["curricula"])
            adapter = Path("results/adapters") / finals[variant.split("+", 1)[1]]
    phase = cfg["finetune"]["phases"][d["phase"]]
    data = args.data or Path("results/data") / phase["dataset"]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="distill-cache-") as tmp:
        for cached in (True, False):
            spec = {"name": args.name, "distill": {**copy.deepcopy(d), "cache_teacher_logits": cached},
                    "phase": phase, "reference_prompts": cfg["reference_prompts"][:1], "generation": cfg["generation"]}
            s = run_stage(spec, teacher, adapter, args.student, data, Path(tmp) / str(cached))
            runs[cached] = {k: s[k] for k in ("seconds", "tokens_per_second", "global_steps", "teacher_cache",
                                              "agreement_before", "agreement_after")}
        a, b = load_file(Path(tmp) / "True" / "model.safetensors"), load_file(Path(tmp) / "False" / "model.safetensors")
        max_diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    result = {"config": str(args.config), "name": args.name, "threads": args.threads, "teacher": str(teacher),
              "data": str(data), "load_average": os.getloadavg(), "cached": runs[True],
              "uncached": runs[False], "speedup": runs[False]["seconds"] / runs[True]["seconds"],
              "max_abs_weight_difference": max_diff}
    print(json.dumps(result, indent=2))
    save(args.out, result, name="distill_cache",
         params={"config": str(args.config), "name": args.name, "threads": args.threads},
         metrics={"cached.seconds": runs[True]["seconds"], "uncached.seconds": runs[False]["seconds"],
                  "speedup": result["speedup"], "max_abs_weight_difference": max_diff})


if __name__ == "__main__":
    main()
