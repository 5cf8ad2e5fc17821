"""What each heavy rule asks a scheduler for (Snakemake `resources:`, config `compute:`): memory and
time as a fixed part plus a part per GB of the model's fp16 weights (`compute.model_gb`).

A plain module, not rule code, so that benchmarks/real_width.py can check its predictions against
these requests for configs/paper.yaml without running Snakemake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# stage: (memory MB: fixed + per GB of fp16 weights, runtime min: fixed + per GB)
# Checked against the real-width rehearsal (benchmarks/real_width.py: Phi-2's layer shapes at two
# depths, peak RSS extrapolated per layer to 32; its record is benchmarks/results/real_width.json):
# export covers litert-torch's conversion of the full model, evaluate the verifier its job trains,
# and mobile the app build, which reads and hashes the whole bundle.
SCALE: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "base_model": ((4000, 3000), (60, 10)),
    "quantize": ((8000, 6000), (60, 30)),
    "finetune": ((8000, 6000), (120, 60)),
    "evaluate": ((4000, 4500), (120, 40)),
    "merge": ((8000, 8000), (30, 10)),
    "export": ((8000, 16000), (120, 60)),
    "gguf": ((8000, 2000), (60, 20)),
    "mobile": ((1000, 2500), (10, 2)),
}
GPU_STAGES = ("base_model", "quantize", "finetune", "evaluate")

# One evaluate job runs all of a variant's benchmarks one after the other (after its verifier, which
# counts as one more: it samples and runs code like a code benchmark), loading the model once:
# of each benchmark's budget (SCALE["evaluate"], what a job per benchmark asked), this part is the
# model load, paid once; the rest is paid per benchmark. One benchmark asks exactly that budget.
EVAL_LOAD = (20, 10)  # minutes: fixed + per GB of fp16 weights


def mem_mb(stage: str, compute: Mapping[str, Any]) -> int:
    fixed, per_gb = SCALE[stage][0]
    return int(fixed + per_gb * compute["model_gb"])


def runtime(stage: str, compute: Mapping[str, Any]) -> int:
    fixed, per_gb = SCALE[stage][1]
    return int(fixed + per_gb * compute["model_gb"])


def eval_runtime(n_benchmarks: int, compute: Mapping[str, Any]) -> int:
    fixed, per_gb = SCALE["evaluate"][1]
    load = EVAL_LOAD[0] + EVAL_LOAD[1] * compute["model_gb"]
    return int(load + n_benchmarks * (fixed + per_gb * compute["model_gb"] - load))


def gpus(stage: str, compute: Mapping[str, Any]) -> int:
    return compute["gpus"] if stage in GPU_STAGES else 0
