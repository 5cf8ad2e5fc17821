"""Stage function: teacher + student + phase data -> results/distill/{name}/ (or its control/)."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from sophia import generate, lm, records, references, tracking
from sophia.atomic import atomic_files
from sophia.config import validate_section
from sophia.distill import agreement, card, data, models
from sophia.distill import trainer as kd
from sophia.errors import ConfigError
from sophia.finetune import lora
from sophia.finetune import trainer as ft
from sophia.plots import line_plot
from sophia.provenance import digest

log = logging.getLogger(__name__)
SUMMARY = "distill.json"
ANSWERS = "reference_answers.json"
TEACHER_DATA = "teacher_data.jsonl"


def variant(name: str, control: bool) -> str:
    return f"{'sft' if control else 'distill'}+{name}"


def training_rows(d: dict[str, Any], control: bool, teacher: Any, teacher_tok: Any, rows: list[dict[str, str]],
                  checkpoints: Path) -> list[dict[str, str]]:
    """What the student learns from: the phase's answers (token method, control) or the teacher's
    (sequence method; generated once, kept with the checkpoints so a resumed run reuses them)."""
    if control or d["method"] == "token":
        return rows
    kept = checkpoints / TEACHER_DATA
    if kept.is_file():
        return records.read(kept)
    answers = data.teacher_answers(teacher, teacher_tok, rows, d["sequence"]["max_new_tokens"],
                                   d["sequence"]["batch_size"], d["sequence"]["num_beams"])
    checkpoints.mkdir(parents=True, exist_ok=True)
    kept.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in answers), encoding="utf-8")
    return answers


def _trainer(d: dict[str, Any], control: bool, cfg_spec: dict[str, Any], checkpoints: Path, student: Any, tok: Any,
             teacher: Any, train: list[dict[str, Any]], held_out: list[dict[str, Any]], lora_cfg: Any) -> Any:
    from trl import SFTTrainer
    from trl.experimental.gkd import GKDConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    common = {"packing": False, "dataset_kwargs": {"skip_prepare_dataset": True}}
    kwargs = {"model": student, "train_dataset": Dataset.from_list(train),
              "eval_dataset": Dataset.from_list(held_out) if held_out else None, "processing_class": tok,
              "peft_config": lora_cfg, "data_collator": DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)}
    if control or d["method"] == "sequence":
        return SFTTrainer(args=ft.sft_config(cfg_spec, checkpoints, bool(held_out), **common), **kwargs)
    loss = d["loss"]
    # lmbda 0: off-policy only (student sampling every step is DistillationTrainer's ground, and slow on CPU);
    # dropout is left as configured so the control trains the very same network.
    args = ft.sft_config(cfg_spec, checkpoints, bool(held_out), config_class=GKDConfig, **common,
                         beta=kd.gkd_beta(loss), temperature=loss["temperature"], lmbda=0.0, disable_dropout=False)
    return kd.DistillTrainer(teacher_model=teacher, args=args, alpha=loss["alpha"],
                             cache=d["cache_teacher_logits"], **kwargs)


def run_stage(spec: dict[str, Any], teacher_src: str | Path, teacher_adapter: Path | None, student_src: str | Path,
              data_dir: Path, out: Path, control: bool = False) -> dict[str, Any]:
    name = spec["name"]
    where = f"distill.{name}"
    d = validate_section(spec["distill"], "distill", where)
    phase = validate_section(spec["phase"], "phase", f"finetune.phases.{d['phase']}")
    cfg_spec = {"training": d["training"], "phase": phase}
    spec = {**spec, "distill": d, "phase": phase}
    references.check_reference(d["student"], f"{where}.student", ["base"], student=True)
    # Vocabularies before any weights load: a mismatch is a config error, not a crash mid-training
    t_vocab = references.vocab_of(teacher_src, d["teacher"].get("revision") or "main")
    # a scratch student gets the base model's tokenizer, and student_src is then the base model
    s_vocab = references.vocab_of(student_src, d["student"].get("revision") or "main")
    if d["method"] == "token" and not control:
        references.check_vocabularies(t_vocab, s_vocab, where, d["teacher"], d["student"])
        references.check_token_maps(references.token_map_of(teacher_src, d["teacher"].get("revision") or "main"),
                                    references.token_map_of(student_src, d["student"].get("revision") or "main"),
                                    where, d["teacher"], d["student"])
    train_rows = ft.read_split(data_dir, phase["tasks"], "train")
    eval_rows = ft.read_split(data_dir, phase["tasks"], "eval")

    inputs: dict[str, Path] = {"data": data_dir}
    for role, src in (("teacher", teacher_src), ("teacher_adapter", teacher_adapter), ("student", student_src)):
        if src is not None and Path(src).is_dir():
            inputs[role] = Path(src)
    fingerprint = digest({"spec": spec, "control": control, "inputs": [tracking.identity(p) for p in inputs.values()]})
    checkpoints = out / ".checkpoints"
    resume = ft.resume_state(checkpoints, fingerprint)
    me = variant(name, control)
    with tracking.stage_run("distill", me, spec, inputs=inputs,
                            resume_run_id=resume["run_id"] if resume else None) as run:
        ft.remember(checkpoints, fingerprint, run.run_id)
        dev = lm.device()
        teacher, teacher_tok = models.load_teacher(teacher_src, teacher_adapter, dev,
                                                   d["teacher"].get("revision") or "main")
        student, tok = models.load_student(d["student"], student_src, dev)
        s_vocab = student.config.get_text_config().vocab_size
        if d["method"] == "token" and not control:
            references.check_vocabularies(t_vocab, s_vocab, where, d["teacher"], d["student"])
        comparable = t_vocab == s_vocab and teacher_tok.get_vocab() == tok.get_vocab()
        rows = training_rows(d, control, teacher, teacher_tok, train_rows, checkpoints)
        train = kd.tokenize(tok, rows, phase["max_length"])
        held_out = kd.tokenize(tok, eval_rows, phase["max_length"])
        if not any(t != -100 for r in train for t in r["labels"]):
            raise ConfigError(f"finetune.phases.{d['phase']}.max_length: {phase['max_length']} tokens leave no "
                              f"answer token in any training row; raise it")
        before = agreement.agreement(teacher, student, held_out, tok.pad_token_id) if comparable and held_out else None
        lora_cfg = None if d["lora"] is None else lora.lora_config(d["lora"], student.config.model_type)
        trainer = _trainer(d, control, cfg_spec, checkpoints, student, tok, teacher, train, held_out, lora_cfg)
        callback = kd.DistillLogger(run)
        trainer.add_callback(callback)
        log.info("%s: %d train rows, method %s%s", me, len(train), "sft" if control else d["method"],
                 " (resuming)" if resume else "")
        start = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=resume["checkpoint"] if resume else None)
        seconds = time.perf_counter() - start
        final_eval = trainer.evaluate() if held_out else {}
        model = trainer.model.eval()
        after = agreement.agreement(teacher, model, held_out, tok.pad_token_id) if comparable and held_out else None
        answers = generate.answer(model, tok, spec["reference_prompts"], spec["generation"]["max_new_tokens"],
                                  spec["generation"]["batch_size"])
        cache = getattr(trainer, "cache", None)
        tokens = sum(len(r["input_ids"]) for r in train) * phase["epochs"]
        summary = {
            "name": name, "variant": me, "control": control, "method": "sft" if control else d["method"],
            "teacher": references.describe(d["teacher"]), "student": references.describe(d["student"]), "spec": spec,
            "lora": d["lora"] is not None, "device": str(dev), "train_rows": len(train), "eval_rows": len(held_out),
            "teacher_vocab": t_vocab, "student_vocab": s_vocab,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "global_steps": result.global_step, "train_loss": result.training_loss,
            "final_eval_loss": final_eval.get("eval_loss"), "final_eval_kd_loss": final_eval.get("eval_kd_loss"),
            "agreement_before": before, "agreement_after": after,
            "seconds": seconds, "train_tokens": tokens, "tokens_per_second": tokens / seconds,
            "teacher_cache": None if cache is None else {"enabled": cache.enabled, "hits": cache.hits,
                                                          "misses": cache.misses,
                                                          "teacher_seconds": cache.teacher_seconds},
            "resumed": bool(resume), "history": callback.history,
            "python": platform.python_version(), "torch": torch.__version__,
        }
        with atomic_files(out, SUMMARY) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if not control and d["method"] == "sequence":
                shutil.copy(checkpoints / TEACHER_DATA, tmp / TEACHER_DATA)
            (tmp / ANSWERS).write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            curves = {k: [(h["step"], h[k]) for h in callback.history if k in h]
                      for k in ("train_loss", "eval_loss", "kd_loss", "ce_loss")}
            line_plot({k: v for k, v in curves.items() if v}, tmp / "loss_curve.png", title=me, ylabel="loss")
            (tmp / "README.md").write_text(card.model_card(summary), encoding="utf-8")
            run.write_record(tmp, "distill", me)
            log_summary(run, summary)
            (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            # A LoggedModel named after the variant, so its evaluations file under it in the Models tab.
            tracking.log_output(run, tmp, out, ("README.md", SUMMARY, ANSWERS, "loss_curve.png", "adapter_config.json"),
                                models=(me,), model_type="lora" if d["lora"] else "full",
                                model_params={"teacher": references.describe(d["teacher"]),
                                              "student": references.describe(d["student"])})
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("%s done in %.1f s: agreement %s -> %s", me, seconds, before, after)
    return summary


def log_summary(run: tracking.Run, s: dict[str, Any]) -> None:
    metrics = {k: s[k] for k in ("seconds", "train_tokens", "tokens_per_second", "parameters",
                                 "trainable_parameters", "global_steps", "train_loss") if s[k] is not None}
    for when in ("before", "after"):
        for k, v in (s[f"agreement_{when}"] or {}).items():
            metrics[f"agreement_{when}.{k}"] = v
    for k in ("final_eval_loss", "final_eval_kd_loss"):
        if s[k] is not None:
            metrics[k] = s[k]
    if s["teacher_cache"]:
        metrics.update({f"teacher_cache.{k}": float(v) for k, v in s["teacher_cache"].items()})
    run.log_metrics(metrics, step=s["global_steps"])
    run.set_tags({"sophia.teacher": s["teacher"], "sophia.student": s["student"], "sophia.method": s["method"],
                  "sophia.control": str(s["control"]), "sophia.resumed": str(s["resumed"])})


def main() -> None:
    from sophia.cli import load_spec, parse, parser

    p: argparse.ArgumentParser = parser("Distil a student from a teacher, or train its SFT control (stage distill).",
                                        threads=0)
    p.add_argument("--teacher", required=True, help="teacher model directory or hub id")
    p.add_argument("--teacher-adapter", type=Path, help="LoRA adapter applied on top of the teacher")
    p.add_argument("--student", required=True, help="student model directory or hub id (the base model for scratch)")
    p.add_argument("--data", required=True, type=Path, help="data stage output of the phase's dataset")
    p.add_argument("--control", action="store_true", help="train the SFT control instead of distilling")
    args = parse(p)
    run_stage(load_spec(args.spec), args.teacher, args.teacher_adapter, args.student, args.data, args.out, args.control)
