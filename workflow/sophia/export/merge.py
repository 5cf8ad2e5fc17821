"""Stage function: GPTQ model (+ a curriculum's LoRA adapter) → one float checkpoint the exporters
can read: results/merged/{model}/.

LoRA cannot merge into packed int4 weights, so the GPTQ weights are dequantized first (exactly:
what the int4 kernel computes), the adapter is applied to that float model and merged. Before the
result is kept, its logits are compared with the quantized model + adapter as the evaluate stage
runs it: a merge that changes what the model says fails here, not on the phone.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from sophia import lm, tracking
from sophia.atomic import atomic_dir
from sophia.errors import ParityError

log = logging.getLogger(__name__)
SUMMARY = "merge.json"


def probe_batch(vocab: int, rows: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (rows, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def merge(gptq_dir: Path, adapter: Path | None, out: Path, tolerance: float, seed: int = 0) -> dict[str, Any]:
    from gptqmodel.utils.model_dequant import dequantize_model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="sophia-dequant-") as scratch:
        float_dir = Path(scratch) / "float"  # gptqmodel refuses an output folder that exists
        dequantize_model(str(gptq_dir), str(float_dir), target_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(float_dir, dtype=torch.float32).eval()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    reference, _ = lm.load(gptq_dir, cpu)
    if adapter is not None:
        reference = PeftModel.from_pretrained(reference, adapter).eval()
    batch = probe_batch(model.config.vocab_size, 4, 32, seed)
    got, want = model(input_ids=batch).logits, reference(input_ids=batch).logits
    diff = (got - want).abs()
    check = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
             "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).float().mean()),
             "logit_scale": float(want.abs().max()), "tolerance": tolerance}
    if check["max_abs"] > tolerance:
        raise ParityError(f"merge: merged float model differs from the quantized model + adapter by "
                          f"{check['max_abs']:.3g} (max |logit difference|) > export.parity.merge_max_abs={tolerance}")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(gptq_dir).save_pretrained(out)
    return check


def run_stage(model_id: str, gptq_dir: Path, adapter: Path | None, tolerance: float, out: Path) -> dict[str, Any]:
    inputs = {"model": gptq_dir, **({"adapter": adapter} if adapter else {})}
    with tracking.stage_run("merge", model_id, {"model": model_id, "tolerance": tolerance}, inputs=inputs) as run, \
            atomic_dir(out) as tmp:
        check = merge(gptq_dir, adapter, tmp, tolerance)
        summary = {"model": model_id, "source": str(gptq_dir), "adapter": str(adapter) if adapter else None,
                   "check": check}
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        run.write_record(tmp, "merge", model_id)
        run.log_metrics({f"merge.{k}": v for k, v in check.items()})
        run.log_datasets([], model_ids=tracking.model_ids(gptq_dir) + tracking.model_ids(adapter, name=model_id))
        run.describe(f"`{model_id}` as one float checkpoint (GPTQ dequantized, adapter merged): max |logit "
                     f"difference| {check['max_abs']:.3g} vs the quantized model + adapter "
                     f"(tolerance {tolerance}).", {k: check[k] for k in ("max_abs", "argmax_agreement")})
        tracking.log_output(run, tmp, out, (SUMMARY,), models=(f"{model_id}@merged",), model_type="merged")
    log.info("%s merged: max |logit diff| %.3g vs quantized+adapter", model_id, check["max_abs"])
    return summary


def main() -> None:
    from sophia.cli import load_spec, parser

    p: argparse.ArgumentParser = parser("Dequantize GPTQ and merge a LoRA adapter into a float model (stage merge).")
    p.add_argument("--model-id", required=True)
    p.add_argument("--gptq", required=True, type=Path)
    p.add_argument("--adapter", type=Path)
    args = p.parse_args()
    spec = load_spec(args.spec)
    run_stage(args.model_id, args.gptq, args.adapter, spec["merge_max_abs"], args.out)


if __name__ == "__main__":
    from sophia.cli import main as cli_main

    cli_main(main)
