"""Token-level KD as a subclass of TRL's GKDTrainer, and the data both KD and its control train on.

GKDTrainer brings the generalized JSD (`beta`), teacher placement and the PEFT student; three things
it lacks are added here rather than rewritten: (1) Hinton's loss, (1 - alpha) * T^2 * D_T + alpha * CE
(GKD's compute_loss applies no temperature to the divergence and has no hard-label term); (2) losses
only on answer tokens of right-padded prompt/completion rows (GKD's slices one prompt length for
the batch, from its ChatML collator); (3) a per-row cache of teacher logits, so epochs after the
first skip the teacher (a quantized teacher on CPU costs more per token than the student's step).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from trl.experimental.gkd import GKDTrainer

from sophia.finetune.trainer import MlflowLogger

# divergence -> GKD's beta: 0 is KL(teacher || student), 1 is KL(student || teacher)
BETA = {"forward_kl": 0.0, "reverse_kl": 1.0}


def gkd_beta(loss: dict[str, Any]) -> float:
    return BETA.get(loss["divergence"], loss["beta"])


def tokenize(tokenizer: Any, rows: Sequence[dict[str, str]], max_length: int) -> list[dict[str, list[int]]]:
    """prompt/completion rows -> input ids (+ EOS) and labels (-100 on the prompt), cut at max_length.
    Both the KD run and its SFT control train on exactly these rows, so they see the same tokens."""
    out = []
    eos = [tokenizer.eos_token_id]
    for r in rows:
        # the tokenizer's own special tokens (a BOS where it adds one), as fine-tuning and evaluation see them
        prompt = tokenizer(r["prompt"])["input_ids"]
        full = tokenizer(r["prompt"] + r["completion"])["input_ids"] + eos
        # BPE may merge across the boundary: the answer starts where the two tokenizations part
        n = next((i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b), min(len(prompt), len(full)))
        labels = [-100] * n + full[n:]
        out.append({"input_ids": full[:max_length], "labels": labels[:max_length]})
    return out


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, beta: float, temperature: float,
            alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed losses over N answer positions (logits N x V, targets N): (total, divergence, CE).
    The divergence is TRL's generalized JSD at temperature T, scaled by T^2 so its gradients keep
    their size as T grows (Hinton et al.)."""
    div = GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, temperature=temperature, reduction="sum")
    ce = F.cross_entropy(student.float(), targets, reduction="sum")
    return (1 - alpha) * temperature**2 * div + alpha * ce, div, ce


class TeacherCache:
    """Teacher logits at the answer positions of each row, kept on CPU after their first use."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.rows: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0
        self.teacher_seconds = 0.0

    @staticmethod
    def key(ids: torch.Tensor, labels: torch.Tensor) -> bytes:
        return hashlib.sha1(ids.cpu().numpy().tobytes() + labels.cpu().numpy().tobytes()).digest()

    @torch.no_grad()
    def logits(self, teacher: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, V) teacher logits at the positions where `labels` (already shifted) is not -100."""
        keep = labels != -100
        # a row's key leaves out its padding, which depends on the batch it lands in (labels are shifted by one)
        lengths = mask.sum(-1).tolist()
        keys = [self.key(ids[i][: lengths[i]], labels[i][: lengths[i] - 1]) for i in range(len(ids))] \
            if self.enabled else []
        todo = [i for i in range(len(ids)) if not self.enabled or keys[i] not in self.rows]
        fresh: dict[int, torch.Tensor] = {}
        if todo:
            start = time.perf_counter()
            out = teacher(input_ids=ids[todo], attention_mask=mask[todo]).logits[:, :-1].float()
            self.teacher_seconds += time.perf_counter() - start
            for j, i in enumerate(todo):
                fresh[i] = out[j][keep[i]]
                if self.enabled:
                    self.rows[keys[i]] = fresh[i].cpu()
        self.misses += len(todo)
        self.hits += len(ids) - len(todo)
        parts = [fresh[i] if i in fresh else self.rows[keys[i]] for i in range(len(ids))]
        return torch.cat(parts).to(ids.device)


class DistillTrainer(GKDTrainer):
    """GKDTrainer with Hinton's temperature-scaled loss, an optional CE term and cached teacher logits."""

    def __init__(self, *args: Any, alpha: float, cache: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.cache = TeacherCache(cache)
        self.tokens_seen = 0

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        outputs = model(input_ids=ids, attention_mask=mask)
        labels = inputs["labels"][:, 1:]
        keep = labels != -100
        student = outputs.logits[:, :-1][keep]
        self.teacher_model.eval()
        teacher = self.cache.logits(self.teacher_model, ids, mask, labels)
        total, div, ce = kd_loss(student, teacher, labels[keep], self.beta, self.temperature, self.alpha)
        n = max(int(keep.sum()), 1)
        # Normalised as the Trainer expects: by the answer tokens of the whole accumulated batch when it
        # passes that count to models that take it (it then skips its own division by accumulation steps)
        denom: Any = n
        if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
            denom = num_items_in_batch.to(total.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
        loss = total / denom
        mode = "train" if model.training else "eval"
        self._metrics[mode]["kd_loss"].append(float(div.detach()) / n)
        self._metrics[mode]["ce_loss"].append(float(ce.detach()) / n)
        if mode == "train":
            self.tokens_seen += int(mask.sum())
            self._metrics[mode]["num_tokens"] = [self.tokens_seen]
        return (loss, outputs) if return_outputs else loss


class DistillLogger(MlflowLogger):
    """finetune's MLflow callback, plus the KD and CE parts of the loss."""

    NAMES: ClassVar[dict[str, str]] = {**MlflowLogger.NAMES, "kd_loss": "kd_loss", "ce_loss": "ce_loss",
                                       "eval_kd_loss": "eval_kd_loss", "eval_ce_loss": "eval_ce_loss"}
