"""Stage function: GPTQ model (+ prefix adapter) + phase data → results/adapters/{chain}/."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoTokenizer
from trl import SFTTrainer

from sophia import generate, lm, tracking
from sophia.atomic import atomic_files
from sophia.config import validate_section
from sophia.errors import ConfigError
from sophia.finetune import curricula, lora, trainer
from sophia.plots import line_plot
from sophia.provenance import digest
from sophia.tracking import data as tracking_data

log = logging.getLogger(__name__)
SUMMARY = "finetune.json"
ANSWERS = "reference_answers.json"


def run_stage(spec: dict[str, Any], model_dir: Path, data_dir: Path, prefix: Path | None, out: Path,
              variants: Sequence[str] = ()) -> dict[str, Any]:
    """Train one curriculum step. `variants`: the model variants this step completes (e.g.
    `gptq+tiny-alpaca`), the names of its MLflow LoggedModel; default `gptq+<step>`."""
    step = spec["chain"]
    phase = validate_section(spec["phase"], "phase", f"finetune.phases.{curricula.phase_of(step)}")
    training = validate_section(spec["training"], "training", "finetune.training")
    spec = {**spec, "phase": phase, "training": training}
    where = f"finetune.phases.{curricula.phase_of(step)}"
    train_rows = trainer.read_split(data_dir, phase["tasks"], "train")
    eval_rows = trainer.read_split(data_dir, phase["tasks"], "eval")
    coverage = trainer.answer_coverage(AutoTokenizer.from_pretrained(model_dir), train_rows, phase["max_length"])
    if coverage == 0:
        raise ConfigError(f"{where}.max_length: {phase['max_length']} tokens leave no answer token in any "
                          f"training row (every prompt fills the window); raise it")
    if coverage < 1:
        log.warning("%s: %.0f%% of training rows lose their whole answer at max_length %d",
                    where, 100 * (1 - coverage), phase["max_length"])
    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    lora_cfg = lora.lora_config(spec["lora"], model_type)
    optimizer = lora.optimizer(training["optimizer"])

    # Same settings and same inputs → the same step: only then are old checkpoints resumed.
    inputs_fp = [tracking.identity(p) for p in (model_dir, data_dir, prefix) if p is not None]
    fingerprint = digest({"spec": spec, "inputs": inputs_fp})
    checkpoints = out / ".checkpoints"
    resume = trainer.resume_state(checkpoints, fingerprint)

    inputs: dict[str, Path] = {"model": model_dir, "data": data_dir}
    if prefix is not None:
        inputs["prefix"] = prefix
    with tracking.stage_run("finetune", step, spec, inputs=inputs,
                            resume_run_id=resume["run_id"] if resume else None) as run:
        trainer.remember(checkpoints, fingerprint, run.run_id)
        run.log_datasets(tracking_data.data_splits(data_dir, phase["tasks"]),
                         model_ids=tracking.model_ids(model_dir) + tracking.model_ids(prefix))
        dev = lm.device()
        model, tok = lm.load(model_dir, dev, trainable=True)
        if prefix is not None:
            model = PeftModel.from_pretrained(model, prefix, is_trainable=True)
        cfg = trainer.sft_config(spec, checkpoints, has_eval=bool(eval_rows))
        sft = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tok,
            peft_config=None if prefix is not None else lora_cfg,
        )
        callback = trainer.MlflowLogger(run)
        sft.add_callback(callback)
        shares = trainer.token_shares(sft)
        log.info("step %s: %d train rows, %.1f%% real tokens, optimizer %s%s", step, len(train_rows),
                 100 * shares["nonpad_token_share"], optimizer, " (resuming)" if resume else "")
        start = time.perf_counter()
        result = sft.train(resume_from_checkpoint=resume["checkpoint"] if resume else None)
        seconds = time.perf_counter() - start
        final_eval = sft.evaluate()["eval_loss"] if eval_rows else None
        peft_model = sft.model
        peft_model.eval()
        answers = generate.answer(peft_model, tok, spec["reference_prompts"], spec["generation"]["max_new_tokens"],
                                  spec["generation"]["batch_size"])

        with atomic_files(out, SUMMARY) as tmp:
            peft_model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
            summary = {
                "chain": step,
                "phase": curricula.phase_of(step),
                "prefix": curricula.parent(step),
                "spec": spec,
                "optimizer": optimizer,
                "device": str(dev),
                "train_rows": len(train_rows),
                "eval_rows": len(eval_rows),
                "trainable_parameters": trainable,
                "global_steps": result.global_step,
                "train_loss": result.training_loss,
                "final_eval_loss": final_eval,
                "seconds": seconds,
                "resumed": bool(resume),
                **shares,
                "rows_with_answer_share": coverage,
                "tokens_per_second": shares["train_tokens"] * phase["epochs"] / seconds,
                "history": callback.history,
                "python": platform.python_version(),
                "torch": torch.__version__,
            }
            (tmp / ANSWERS).write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            curve = {k: [(h["step"], h[k]) for h in callback.history if k in h] for k in ("train_loss", "eval_loss")}
            line_plot({k: v for k, v in curve.items() if v}, tmp / "loss_curve.png", title=step, ylabel="loss")
            (tmp / "README.md").write_text(model_card(summary, model_dir), encoding="utf-8")
            run.write_record(tmp, "finetune", step)
            metrics = {k: summary[k] for k in ("seconds", "nonpad_token_share", "loss_token_share", "train_tokens",
                                                "rows_with_answer_share",
                                                "tokens_per_second", "trainable_parameters", "global_steps")}
            metrics["final_train_loss"] = result.training_loss
            if final_eval is not None:
                metrics["final_eval_loss"] = final_eval
            run.log_metrics(metrics, step=result.global_step)
            run.set_tags({"sophia.optimizer": optimizer, "sophia.resumed": str(bool(resume))})
            (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            origin = f"continues `{summary['prefix']}`" if summary["prefix"] else "fresh adapter"
            run.describe(f"LoRA step `{step}` ({origin}) on phase `{summary['phase']}`: "
                         f"{len(train_rows)} training rows, {result.global_step} optimizer steps in "
                         f"{seconds:.0f} s on {dev}.",
                         {k: metrics[k] for k in ("final_train_loss", "final_eval_loss", "tokens_per_second",
                                                  "trainable_parameters") if k in metrics})
            tracking.log_output(run, tmp, out, ("README.md", SUMMARY, ANSWERS, "loss_curve.png",
                                                "adapter_config.json", "adapter_model.safetensors"),
                                models=tuple(variants) or (f"gptq+{step}",), model_type="lora",
                                model_params={"chain": step, "base": str(model_dir.resolve())})
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("step %s done in %.1f s: train loss %.3f, eval loss %s", step, seconds, result.training_loss, final_eval)
    return summary


def model_card(s: dict[str, Any], model_dir: Path) -> str:
    phase, t = s["spec"]["phase"], s["spec"]["training"]
    lr = phase.get("learning_rate") or t["learning_rate"]
    prefix = f"continues from `{s['prefix']}`" if s["prefix"] else "starts from a fresh LoRA"
    return f"""# LoRA adapter `{s['chain']}`

LoRA (r={s['spec']['lora']['r']}, alpha={s['spec']['lora']['alpha']}) on the GPTQ model
`{model_dir}`; this step trains phase `{s['phase']}` and {prefix}.

- Data: tasks {', '.join(phase['tasks'])} of dataset `{phase['dataset']}`: {s['train_rows']} train rows,
  {s['eval_rows']} held-out rows; prompt template `Instruct: <request>\\nOutput:`, loss on the answer only.
- Training: {phase['epochs']} epochs, max length {phase['max_length']}, peak learning rate {lr}, cosine schedule,
  {s['optimizer']}, batch {t['batch_size']} x {t['gradient_accumulation_steps']} accumulation, seed {t['seed']},
  packing {'on' if t['packing'] else 'off'} ({100 * s['nonpad_token_share']:.1f}% of positions are real tokens).
- Result: train loss {s['train_loss']:.3f}, eval loss {s['final_eval_loss'] if s['final_eval_loss'] is None
  else format(s['final_eval_loss'], '.3f')}, {s['global_steps']} steps in {s['seconds']:.1f} s on {s['device']}.

Load it on top of the GPTQ model with `peft.PeftModel.from_pretrained(model, <this folder>)`.
"""


def main() -> None:
    from sophia.cli import load_spec, parse, parser

    p: argparse.ArgumentParser = parser("Train one curriculum step (stage finetune).", threads=0)
    p.add_argument("--model", required=True, type=Path, help="GPTQ model directory")
    p.add_argument("--data", required=True, type=Path, help="data stage output of the phase's dataset")
    p.add_argument("--prefix", type=Path, help="adapter of the prefix step, if any")
    p.add_argument("--variant", action="append", default=[],
                   help="model variant this step completes, e.g. gptq+tiny-alpaca (repeatable; MLflow model name)")
    args = parse(p)
    run_stage(load_spec(args.spec), args.model, args.data, args.prefix, args.out, args.variant)
