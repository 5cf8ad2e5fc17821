"""Stage function: base model + data → results/models/gptq/ + one MLflow run."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
from pathlib import Path
from typing import Any

import torch

from sophia import checkpoint, generate, lm, records, tracking
from sophia.atomic import atomic_dir
from sophia.config import validate_section
from sophia.errors import DataError
from sophia.quantize import gptq
from sophia.tracking import data as tracking_data

log = logging.getLogger(__name__)
SUMMARY = "quantize.json"
ANSWERS = "reference_answers.json"


def calibration_texts(data_dirs: dict[str, Path], cal: dict[str, Any], seed: int) -> list[str]:
    if cal["dataset"] not in data_dirs:
        raise DataError(f"quantize.calibration.dataset: no data directory for '{cal['dataset']}' among --data")
    path = data_dirs[cal["dataset"]] / cal["task"] / "train.jsonl"
    rows = records.read(path)
    if len(rows) < cal["n_samples"]:
        raise DataError(f"{path}: {len(rows)} rows, fewer than quantize.calibration.n_samples={cal['n_samples']}")
    random.Random(seed).shuffle(rows)
    return [records.text(r) for r in rows[: cal["n_samples"]]]


def eval_texts(data_dirs: dict[str, Path], max_samples: int) -> dict[str, list[str]]:
    """First rows of every eval split, keyed `dataset/task` (the data stage already shuffled)."""
    splits = {}
    for name, root in sorted(data_dirs.items()):
        for path in sorted(root.glob("*/eval.jsonl")):
            rows = records.read(path)[:max_samples]
            if rows:
                splits[f"{name}/{path.parent.name}"] = [records.text(r) for r in rows]
    if not splits:
        raise DataError("no held-out rows in any eval.jsonl: set n_eval > 0 for at least one dataset task")
    return splits


def measure(model_dir: Path, splits: dict[str, list[str]], spec: dict[str, Any], prompts: list[str],
            generation: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    """Perplexity per split (and token-weighted overall), fixed-batch logits, reference answers."""
    model, tok = lm.load(model_dir, dev)
    ev = spec["eval"]
    ppl = {k: lm.perplexity(model, tok, v, ev["max_length"]) for k, v in splits.items()}
    tokens = sum(p["tokens"] for p in ppl.values())
    overall_nll = sum(p["nll"] * p["tokens"] for p in ppl.values()) / tokens
    fixed = [t for texts in splits.values() for t in texts][: ev["logit_samples"]]
    logits, mask = lm.logits(model, tok, fixed, ev["max_length"])
    answers = generate.answer(model, tok, prompts, generation["max_new_tokens"], generation["batch_size"])
    del model
    gc.collect()
    return {"ppl": ppl, "ppl_overall": float(torch.tensor(overall_nll).exp()), "logits": logits, "mask": mask,
            "answers": answers}


def input_datasets(data_dirs: dict[str, Path], cal: dict[str, Any]) -> list[tuple[Any, str]]:
    """The calibration split and every eval split the perplexities are measured on."""
    pairs = [(ds, "calibration") for ds, _ in
             tracking_data.data_splits(data_dirs[cal["dataset"]], [cal["task"]], ("train",))]
    for _, root in sorted(data_dirs.items()):
        pairs += tracking_data.data_splits(root, splits=("eval",))
    return pairs


def run_stage(spec: dict[str, Any], base_dir: Path, data_dirs: list[Path], out: Path) -> dict[str, Any]:
    qspec = validate_section(spec["quantize"], "quantize", "quantize")
    prompts, generation = spec["reference_prompts"], spec["generation"]
    gptq.check_group_size(base_dir, qspec["group_size"])
    by_name = {d.name: d for d in data_dirs}
    calibration = calibration_texts(by_name, qspec["calibration"], qspec["seed"])
    splits = eval_texts(by_name, qspec["eval"]["max_samples"])
    dev = lm.device()
    variant = f"w{qspec['bits']}g{qspec['group_size']}"
    inputs = {"base_model": base_dir, **{f"data.{k}": v for k, v in by_name.items()}}
    with tracking.stage_run("quantize", variant, spec, inputs=inputs) as run, atomic_dir(out) as tmp:
        from transformers import AutoTokenizer

        run.log_datasets(input_datasets(by_name, qspec["calibration"]), model_ids=tracking.model_ids(base_dir))

        tok = AutoTokenizer.from_pretrained(base_dir)
        batches = gptq.calibration_batches(tok, calibration, qspec["calibration"]["max_length"])
        cost = gptq.quantize(base_dir, tmp, batches, qspec, dev)
        log.info("quantized in %.1f s (peak RSS %.0f MB)", cost["quantize_seconds"], cost["peak_rss_mb"])
        before = measure(base_dir, splits, qspec, prompts, generation, dev)
        after = measure(tmp, splits, qspec, prompts, generation, dev)
        diff = lm.logit_difference(before["logits"], after["logits"], before["mask"])

        size_before, size_after = checkpoint.size_on_disk(base_dir), checkpoint.size_on_disk(tmp)
        summary = {
            "quantize": qspec,
            "device": str(dev),
            "size_before": size_before,
            "size_after": size_after,
            "size_ratio": size_before["weights_bytes"] / size_after["weights_bytes"],
            "parameters_before": checkpoint.parameter_counts(base_dir),
            "tensor_elements_after": checkpoint.parameter_counts(tmp),
            **cost,
            "perplexity_before": before["ppl"],
            "perplexity_after": after["ppl"],
            "ppl_overall_before": before["ppl_overall"],
            "ppl_overall_after": after["ppl_overall"],
            "logits": diff,
            "logit_batch_rows": int(before["mask"].shape[0]),
        }
        answers = [
            {"request": b["request"], "base": b["answer"], "gptq": a["answer"],
             "base_finish": b["finish"], "gptq_finish": a["finish"]}
            for b, a in zip(before["answers"], after["answers"], strict=True)
        ]
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (tmp / ANSWERS).write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        run.write_record(tmp, "quantize", variant)

        metrics = {
            "size_before_bytes": size_before["weights_bytes"],
            "size_after_bytes": size_after["weights_bytes"],
            "size_ratio": summary["size_ratio"],
            **cost,
            "ppl_before": before["ppl_overall"],
            "ppl_after": after["ppl_overall"],
            "ppl_delta_pct": 100 * (after["ppl_overall"] / before["ppl_overall"] - 1),
            "logit_mean_abs_diff": diff["mean_abs"],
            "logit_max_abs_diff": diff["max_abs"],
            "logit_argmax_agreement": diff["argmax_agreement"],
        }
        for split in splits:
            metrics[f"ppl_before.{split}"] = before["ppl"][split]["ppl"]
            metrics[f"ppl_after.{split}"] = after["ppl"][split]["ppl"]
        for dtype, n in summary["tensor_elements_after"].items():
            metrics[f"tensor_elements_after.{dtype}"] = n
        run.log_metrics(metrics)
        run.describe(f"GPTQ {qspec['bits']}-bit, group size {qspec['group_size']}: weights "
                     f"{size_before['weights_bytes'] / 1e6:.1f} MB → {size_after['weights_bytes'] / 1e6:.1f} MB "
                     f"(x{summary['size_ratio']:.2f}), perplexity {before['ppl_overall']:.2f} → "
                     f"{after['ppl_overall']:.2f}.",
                     {k: metrics[k] for k in ("size_ratio", "ppl_before", "ppl_after", "ppl_delta_pct",
                                              "logit_argmax_agreement", "quantize_seconds") if k in metrics})
        tracking.log_output(run, tmp, out, (SUMMARY, ANSWERS, "quantize_config.json", "quant_log.csv"),
                            models=("gptq",), model_type="gptq",
                            model_params={"bits": qspec["bits"], "group_size": qspec["group_size"]})
        run.log_text(answers_markdown(answers), "reference_answers.md")
    log.info("gptq %s: size x%.2f, ppl %.2f -> %.2f", variant, summary["size_ratio"],
             summary["ppl_overall_before"], summary["ppl_overall_after"])
    return summary


def answers_markdown(answers: list[dict[str, Any]]) -> str:
    parts = []
    for a in answers:
        parts.append(f"## {a['request']}\n\n**base** ({a['base_finish']})\n```\n{a['base']}\n```\n"
                     f"**gptq** ({a['gptq_finish']})\n```\n{a['gptq']}\n```\n")
    return "\n".join(parts)


def main() -> None:
    from sophia.cli import load_spec, parse, parser

    p: argparse.ArgumentParser = parser("GPTQ-quantize the base model and measure it (stage quantize).", threads=0)
    p.add_argument("--base", required=True, type=Path, help="base model directory")
    p.add_argument("--data", required=True, type=Path, nargs="+", help="data stage output directories")
    args = parse(p)
    run_stage(load_spec(args.spec), args.base, args.data, args.out)
