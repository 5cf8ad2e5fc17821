"""The gptqmodel call, with the CPU pitfalls measured in the project's probes handled here."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from sophia.errors import ConfigError


def configure_environment(dev: torch.device) -> None:
    """Must run before gptqmodel is imported.

    - gptqmodel sizes its CPU worker pool as (cores+1)//2 but asks for 2 loader workers: on a
      2-core machine that is "requests 2 workers but parent 'cpu' only has 1" (a crash).
    - On CPU, skip the JIT C++ pack extension (a g++ build on first use, cached in $HOME):
      the pure-PyTorch packer gives the same checkpoint.
    """
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, ((os.cpu_count() or 2) + 1) // 2)))
    if dev.type == "cpu":
        os.environ.setdefault("GPTQMODEL_DISABLE_PACK_EXT", "1")


def check_group_size(base_dir: Path, group_size: int) -> None:
    """Every quantized Linear's input width must split into whole groups."""
    if group_size == -1:
        return
    cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    widths = {k: cfg[k] for k in ("hidden_size", "intermediate_size") if isinstance(cfg.get(k), int)}
    bad = {k: w for k, w in widths.items() if w % group_size}
    if bad:
        detail = ", ".join(f"{k}={w}" for k, w in bad.items())
        raise ConfigError(
            f"quantize.group_size: {group_size} does not divide the model's {detail} (use a divisor, or -1)"
        )


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    """gptqmodel writes `./logs/*.log` into the current directory; give it one we own."""
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def calibration_batches(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[dict[str, list[int]]]:
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    return out


def quantize(
    base_dir: Path, out_dir: Path, calibration: list[dict[str, list[int]]], spec: dict[str, Any], dev: torch.device
) -> dict[str, float]:
    """Quantize `base_dir` into `out_dir`; return wall time and peak memory."""
    configure_environment(dev)
    from gptqmodel import GPTQModel, QuantizeConfig

    qcfg = QuantizeConfig(
        bits=spec["bits"],
        group_size=spec["group_size"],
        desc_act=spec["desc_act"],
        sym=spec["sym"],
        damp_percent=spec["damp_percent"],
        # gptqmodel's group-aware reordering (on by default) is undefined without groups.
        act_group_aware=spec["group_size"] > 0,
        offload_to_disk=False,  # else it spills layers into /tmp/gptqmodel_*, outside the rule's output
    )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_dir, out_dir = base_dir.resolve(), out_dir.resolve()
    scratch = out_dir / ".gptq_cwd"
    start = time.perf_counter()
    with _working_dir(scratch):
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
        model = GPTQModel.load(str(base_dir), qcfg, device=str(dev), dtype=dtype)
        model.quantize(calibration, batch_size=spec["batch_size"])
        model.save(str(out_dir))
    seconds = time.perf_counter() - start
    del model
    if (scratch / "logs").is_dir():
        shutil.move(scratch / "logs", out_dir / "quantize_logs")
    shutil.rmtree(scratch, ignore_errors=True)
    stats = {"quantize_seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        stats["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return stats
