"""PyTorch `generate` timed as the speed benchmarks compare every runtime against it (the TFLite
bundle, the GGUF files behind `sophia serve`): the float model's load, its first token, and a
whole greedy generation, on the same prompts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sophia.prompt import build_prompt

PROMPTS = ["Give me a program that checks if a number is prime.", "Write a function that reverses a string.",
           "def area(r):\n    return 3.14159 * r * r"]


@dataclass(frozen=True)
class Timed:
    first_token_s: float  # a generation of one token, prompt included
    total_s: float  # the whole generation, a separate call
    new_tokens: int

    def tokens_per_s(self, after_first: bool = False) -> float:
        """New tokens over the whole generation's time; `after_first`: the tokens after the first
        over the time after it (how `sophia serve`'s engine counts)."""
        if not after_first:
            return self.new_tokens / self.total_s
        rest = self.total_s - self.first_token_s
        return (self.new_tokens - 1) / max(rest, 1e-9) if self.new_tokens > 1 else 0.0


def load(model_dir: Path) -> tuple[Any, Any, float]:
    """The float model (eval mode) and its tokenizer, and the seconds loading them took."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    return model, tok, time.perf_counter() - start


def time_generate(model: Any, tok: Any, request: str, new_tokens: int, exact: bool = False) -> Timed:
    """Greedy answers to `request` in the instruct template: one token, then up to `new_tokens`
    (`exact`: no fewer, so an early end of text does not flatter the rate)."""
    import torch

    ids = torch.tensor([tok(build_prompt(request)).input_ids])
    kwargs = {"attention_mask": torch.ones_like(ids), "do_sample": False, "pad_token_id": tok.eos_token_id}
    with torch.no_grad():
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kwargs, **({"min_new_tokens": 1} if exact else {}))
        first = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, **kwargs,
                             **({"min_new_tokens": new_tokens} if exact else {}))
        total = time.perf_counter() - start
    return Timed(first, total, out.shape[1] - ids.shape[1])
