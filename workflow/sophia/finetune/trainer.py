"""One curriculum step with TRL's SFTTrainer: data, settings, MLflow callback, resume."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import TrainerCallback

from sophia import records, tracking
from sophia.finetune import lora

log = logging.getLogger(__name__)
RESUME_FILE = "resume.json"


def read_split(data_dir: Path, tasks: list[str], split: str) -> list[dict[str, str]]:
    """prompt/completion rows of the phase's tasks (the data stage's documented format)."""
    return [
        {"prompt": r["prompt"], "completion": r["completion"]}
        for task in tasks
        for r in records.read(data_dir / task / f"{split}.jsonl")
    ]


class MlflowLogger(TrainerCallback):
    """Trainer logs → MLflow metrics at the trainer's global step, plus throughput."""

    NAMES: ClassVar[dict[str, str]] = {"loss": "train_loss", "eval_loss": "eval_loss", "learning_rate": "learning_rate",
             "grad_norm": "grad_norm", "mean_token_accuracy": "train_token_accuracy",
             "eval_mean_token_accuracy": "eval_token_accuracy"}

    def __init__(self, run: tracking.Run) -> None:
        self.run = run
        self.history: list[dict[str, float]] = []
        self._last: tuple[float, float] | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        if not logs:
            return
        metrics = {self.NAMES[k]: float(v) for k, v in logs.items() if k in self.NAMES}
        if "num_tokens" in logs and "loss" in logs:
            now, tokens = time.perf_counter(), float(logs["num_tokens"])
            if self._last is not None and tokens > self._last[1]:
                metrics["tokens_per_second"] = (tokens - self._last[1]) / (now - self._last[0])
            self._last = (now, tokens)
        if metrics:
            self.run.log_metrics(metrics, step=state.global_step)
            self.history.append({"step": state.global_step, **metrics})


def sft_config(spec: dict[str, Any], checkpoints: Path, has_eval: bool, config_class: type | None = None,
               **overrides: Any) -> Any:
    """TRL settings of one training run; distill reuses them for its GKDConfig (`config_class`)."""
    from trl import SFTConfig

    t, phase = spec["training"], spec["phase"]
    cuda = torch.cuda.is_available()
    settings = dict(
        output_dir=str(checkpoints),
        num_train_epochs=phase["epochs"],
        max_length=phase["max_length"],
        learning_rate=phase.get("learning_rate") or t["learning_rate"],
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["batch_size"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        lr_scheduler_type="cosine",
        warmup_steps=t["warmup_ratio"],  # a float below 1 is a ratio of the total steps
        weight_decay=t["weight_decay"],
        max_grad_norm=t["max_grad_norm"],
        optim=lora.optimizer(t["optimizer"]),
        gradient_checkpointing=t["gradient_checkpointing"],
        packing=t["packing"],
        packing_strategy="bfd",
        completion_only_loss=True,  # loss on the answer tokens only
        logging_steps=t["logging_steps"],
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t["eval_steps"],
        save_strategy="steps",
        save_steps=t["save_steps"],
        save_total_limit=2,
        seed=t["seed"],
        data_seed=t["seed"],
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=cuda and not torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        report_to="none",  # MLflow is logged by MlflowLogger, nested under the workflow's run
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    return (config_class or SFTConfig)(**{**settings, **overrides})


def token_shares(trainer: Any) -> dict[str, float]:
    """Share of batch positions that are real tokens, and of those that carry loss."""
    real = loss = total = 0
    for batch in trainer.get_train_dataloader():
        ids = batch["input_ids"]
        total += ids.numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
        loss += int((batch["labels"] != -100).sum())
    return {"nonpad_token_share": real / total, "loss_token_share": loss / total, "train_tokens": real}


def answer_coverage(tokenizer: Any, rows: list[dict[str, str]], max_length: int) -> float:
    """Share of rows whose answer starts within `max_length` tokens (sequences are cut at the end,
    so a prompt that fills the window leaves nothing to learn from that row)."""
    lengths = [len(ids) for ids in tokenizer([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]]
    return sum(n < max_length for n in lengths) / len(rows)


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json after weights, optimizer and RNG states: a checkpoint
    without a readable one was cut off mid-save (the Trainer itself would resume from it and fail)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def resume_state(checkpoints: Path, fingerprint: str) -> dict[str, Any] | None:
    """A previous attempt of this very step (same settings and inputs) left checkpoints: return
    its record with the last complete checkpoint. Anything else there is stale and removed."""
    record = checkpoints / RESUME_FILE
    if record.is_file():
        state = json.loads(record.read_text())
        found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        for partial in [p for p in found if not _complete(p)]:
            shutil.rmtree(partial)
        complete = [p for p in found if p.exists()]
        if state.get("fingerprint") == fingerprint and complete:
            return {**state, "checkpoint": str(complete[-1])}
    shutil.rmtree(checkpoints, ignore_errors=True)
    return None


def remember(checkpoints: Path, fingerprint: str, run_id: str) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / RESUME_FILE).write_text(json.dumps({"fingerprint": fingerprint, "run_id": run_id}))
