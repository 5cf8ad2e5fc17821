"""Stage function: base_model spec → results/models/base/ + one MLflow run."""

from __future__ import annotations

import json
import logging
import math
import platform
from pathlib import Path
from typing import Any

import torch

import sophia
from sophia import checkpoint, tracking
from sophia.atomic import atomic_dir
from sophia.base_model import card, corpus, scratch, sources, tokenizer
from sophia.config import validate_base_model
from sophia.errors import ConfigError
from sophia.plots import line_plot
from sophia.provenance import git_commit

log = logging.getLogger(__name__)
SUMMARY = "base_model.json"


def variant_of(spec: dict[str, Any]) -> str:
    if spec.get("hub"):
        return f"hub:{spec['hub']}"
    if spec.get("path"):
        return f"path:{Path(spec['path']).name}"
    return "scratch"


def _build_scratch(spec: dict[str, Any], out: Path, run: tracking.Run) -> dict[str, Any]:
    s = spec["scratch"]
    torch.set_num_threads(s["threads"])
    family = s.get("family", "phi")  # unset: phi (schema)
    arch = s["architecture"]  # checked with the rest of the spec (sophia.config.check_scratch)
    data = corpus.load_corpus(s["corpus"]["max_files"], s["corpus"]["eval_files"], s["seed"])
    log.info("corpus: %d train / %d eval files, digest %s", len(data.train), len(data.eval), data.digest)
    tok = tokenizer.train_tokenizer(data.train, s["tokenizer"]["vocab_size"], arch["max_position_embeddings"],
                                    family)
    try:
        result = scratch.pretrain(tok, data, arch, s["training"], s["seed"], family)
    except ValueError as exc:
        raise ConfigError(f"base_model.scratch: {exc}") from exc
    result.model.save_pretrained(out)
    tok.save_pretrained(out)
    run.log_series({"train_loss": result.train_loss, "learning_rate": result.learning_rate})
    line_plot(
        {"train": result.train_loss},
        out / "loss_curve.png",
        title="scratch pretraining",
        ylabel="loss",
    )
    return {
        "family": family,
        "vocab_size": len(tok),
        "corpus": {"files": data.files, "digest": data.digest, "eval_files": len(data.eval), "root": data.root},
        "training": {
            "eval_loss_before": result.eval_loss_before,
            "eval_loss_after": result.eval_loss_after,
            "eval_ppl_after": math.exp(result.eval_loss_after),
            "final_train_loss": result.train_loss[-1][1],
            "seconds": result.seconds,
            "tokens_seen": result.tokens_seen,
            "tokens_per_second": result.tokens_seen / result.seconds,
        },
    }


def run_stage(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Produce the base model in `out` and return its summary (also written to base_model.json)."""
    spec = validate_base_model(spec)
    variant = variant_of(spec)
    with tracking.stage_run("base_model", variant, spec) as run, atomic_dir(out) as tmp:
        summary: dict[str, Any] = {
            "source": variant,
            "spec": spec,
            "sophia_version": sophia.__version__,
            "git_commit": git_commit(),
            "python_version": platform.python_version(),
            "torch_version": torch.__version__,
        }
        if spec.get("hub"):
            summary["hub_commit"] = sources.from_hub(spec["hub"], spec["revision"], tmp)
        elif spec.get("path"):
            sources.from_path(Path(spec["path"]), tmp)
        else:
            summary.update(_build_scratch(spec, tmp, run))
        checkpoint.check_checkpoint(tmp, f"base_model ({variant})")
        summary["parameters"] = checkpoint.parameter_counts(tmp)
        summary.update(checkpoint.size_on_disk(tmp))
        if spec.get("scratch"):
            (tmp / "README.md").write_text(card.scratch_card(summary), encoding="utf-8")
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        run.write_record(tmp, "base_model", variant)
        metrics = {
            "parameters": sum(summary["parameters"].values()),
            "weights_bytes": summary["weights_bytes"],
            "total_bytes": summary["total_bytes"],
        }
        if "training" in summary:
            t = summary["training"]
            metrics.update({k: t[k] for k in ("eval_loss_before", "eval_loss_after", "eval_ppl_after",
                                               "seconds", "tokens_per_second")})
        run.log_metrics(metrics)
        run.log_params({f"parameters_{k}": v for k, v in summary["parameters"].items()})
        run.describe(f"Base model from {variant}: {metrics['parameters']:,} parameters, "
                     f"{metrics['weights_bytes'] / 1e6:.1f} MB of weights.",
                     {k: v for k, v in metrics.items() if k != "total_bytes"})
        tracking.log_output(run, tmp, out, ("README.md", "config.json", SUMMARY, "loss_curve.png"),
                            models=("base",), model_type="base", model_params={"source": variant})
    log.info("base model (%s): %s parameters -> %s", variant, f"{metrics['parameters']:,}", out)
    return summary


def main() -> None:
    from sophia.cli import load_spec, parser

    args = parser("Build or fetch the base model (stage base_model).").parse_args()
    run_stage(load_spec(args.spec), args.out)
