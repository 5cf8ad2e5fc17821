"""The sequence method's training data: the teacher's own answers to the phase's prompts (greedy, or
the best beam: Kim and Rush's sequence-level KD approximates the teacher's mode with beam search)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sophia.generate import cut_at_stop
from sophia.prompt import build_completion


@torch.no_grad()
def teacher_answers(teacher: Any, tokenizer: Any, rows: Sequence[dict[str, str]], max_new_tokens: int,
                    batch_size: int, num_beams: int = 1) -> list[dict[str, str]]:
    """Each row's prompt with the teacher's decoded answer as its completion (greedy, or the best of
    `num_beams` beams; cut at the template's stop strings, as the workflow answers every prompt). The
    prompts are already in the instruct template; they are encoded with the special tokens the
    tokenizer adds itself (a BOS for DeepSeek-Coder, which it was trained to see first)."""
    dev = next(teacher.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[dict[str, str]] = []
    try:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            enc = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True).to(dev)
            gen = teacher.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams,
                                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            for r, new in zip(chunk, gen[:, enc["input_ids"].shape[1]:], strict=True):
                text = tokenizer.decode(new, skip_special_tokens=True)
                out.append({"prompt": r["prompt"], "completion": build_completion(cut_at_stop(text))})
    finally:
        tokenizer.padding_side = side
    return out
