"""Build the tiny model of the embedded default (Phi family, or Llama or Qwen2: families.py): init
and short pretraining.

nanoGPT-style loop rather than `transformers.Trainer`: a few hundred steps on random windows
of one token stream need none of Trainer's machinery, and a plain loop keeps every source of
randomness under one seeded generator (bit-identical reruns for a seed and thread count).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from sophia.base_model.corpus import Corpus
from sophia.base_model.families import model_config

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    model: PreTrainedModel
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    learning_rate: list[tuple[int, float]] = field(default_factory=list)
    eval_loss_before: float = math.nan
    eval_loss_after: float = math.nan
    seconds: float = 0.0
    tokens_seen: int = 0


def token_stream(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> torch.Tensor:
    """All texts as one 1-D id tensor, documents separated by EOS (as in GPT pretraining)."""
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def eval_loss(model: PreTrainedModel, stream: torch.Tensor, seq_len: int, max_windows: int = 64) -> float:
    """Mean next-token loss over non-overlapping windows of the held-out stream."""
    model.eval()
    n = min(max_windows, (len(stream) - 1) // seq_len)
    if n < 1:
        raise ValueError(f"held-out corpus has {len(stream)} tokens, fewer than one window of {seq_len}")
    windows = stream[: n * seq_len].view(n, seq_len)
    losses = [model(input_ids=w, labels=w).loss.item() for w in windows.split(8)]
    return float(sum(losses) / len(losses))


def build_model(tokenizer: PreTrainedTokenizerFast, arch: Mapping[str, int], seed: int,
                family: str = "phi") -> PreTrainedModel:
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos,
           "pad_token_id": eos}
    return AutoModelForCausalLM.from_config(model_config(family, arch, ids))


def pretrain(
    tokenizer: PreTrainedTokenizerFast,
    corpus: Corpus,
    arch: Mapping[str, int],
    training: Mapping[str, Any],
    seed: int,
    family: str = "phi",
    on_log: Callable[[int, float, float], None] | None = None,
) -> PretrainResult:
    torch.use_deterministic_algorithms(True)
    model = build_model(tokenizer, arch, seed, family)
    seq_len = training["seq_len"]  # fits the window: sophia.config.check_scratch
    train = token_stream(tokenizer, corpus.train)
    held_out = token_stream(tokenizer, corpus.eval)
    result = PretrainResult(model=model, eval_loss_before=eval_loss(model, held_out, seq_len))

    steps, batch = training["steps"], training["batch_size"]
    opt = torch.optim.AdamW(
        model.parameters(), lr=training["learning_rate"], betas=(0.9, 0.95),
        weight_decay=training["weight_decay"],
    )
    sched = get_cosine_schedule_with_warmup(opt, min(training["warmup_steps"], steps), steps)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(seq_len)
    model.train()
    start = time.perf_counter()
    running = 0.0
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(train) - seq_len, (batch,), generator=gen)
        x = train[starts[:, None] + offsets]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running += loss.item()
        if step % training["log_every"] == 0 or step == steps:
            span = step % training["log_every"] or training["log_every"]
            mean = running / span
            running = 0.0
            result.train_loss.append((step, mean))
            result.learning_rate.append((step, lr))
            log.info("step %d/%d loss %.4f lr %.2e", step, steps, mean, lr)
            if on_log:
                on_log(step, mean, lr)
    result.seconds = time.perf_counter() - start
    result.tokens_seen = steps * batch * seq_len
    result.eval_loss_after = eval_loss(model, held_out, seq_len)
    model.eval()
    return result
