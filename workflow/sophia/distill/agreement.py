"""How closely a student follows its teacher on held-out answers: top-1 agreement and KL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


@torch.no_grad()
def agreement(teacher: Any, student: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int,
              batch_size: int = 8) -> dict[str, float]:
    """Over every answer position of the tokenized held-out rows: the share where teacher and
    student pick the same next token, and the mean KL(teacher || student) at temperature 1."""
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id)
    dev = next(student.parameters()).device
    was_training = student.training
    student.eval()
    same = kl = n = 0.0
    for i in range(0, len(rows), batch_size):
        batch = collate([dict(r) for r in rows[i : i + batch_size]])
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        keep = batch["labels"][:, 1:].to(dev) != -100
        s = student(input_ids=ids, attention_mask=mask).logits[:, :-1][keep].float()
        t = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1][keep].float()
        same += float((s.argmax(-1) == t.argmax(-1)).sum())
        kl += float(F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="sum", log_target=True))
        n += int(keep.sum())
    student.train(was_training)
    if n == 0:
        raise ValueError("no answer tokens in the held-out rows")
    return {"top1_agreement": same / n, "kl": kl / n, "tokens": int(n)}
