"""What one benchmark run scores with, per `evaluate.engine`: lm-eval's model, a count of the tokens
it generated, the `Engine` that reranking and self-debugging call, and the engine's name and version
(on the protocol card and in the cache key).

- hf: lm-eval's HF model and `HFEngine` on the variant loaded in the job's own process.
- vllm: a served name (the base or one LoRA adapter) of the job's vLLM server
  (sophia.evaluate.vllm_server): lm-eval's completions model on it (sophia.evaluate.vllm_lmeval)
  and `VLLMEngine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sophia.evaluate import context, engine, harness


@dataclass
class Served:
    """One variant as the job's vLLM server serves it."""
    url: str
    name: str
    version: str
    tokenizer: Path
    max_length: int


@dataclass
class Backend:
    name: str
    version: str
    lm: Any
    generated: Callable[[], int]
    engine: Callable[[], engine.Engine]

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


def hf(model: Any, tok: Any, batch_size: int) -> Backend:
    lm_obj = harness.hf_lm(model, tok, batch_size)
    counter = context.GenerationCounter(lm_obj)
    return Backend("hf", f"transformers {metadata.version('transformers')}", lm_obj, lambda: counter.total,
                   lambda: engine.HFEngine(model, tok, batch_size))


def vllm(served: Served, tok: Any, batch_size: int, seed: int) -> Backend:
    from sophia.evaluate.vllm_engine import VLLMEngine
    from sophia.evaluate.vllm_lmeval import VLLMCompletions

    lm_obj = VLLMCompletions(served.url, served.name, served.tokenizer, served.max_length, batch_size, seed)
    return Backend("vllm", served.version, lm_obj, lambda: lm_obj.generated_tokens,
                   lambda: VLLMEngine(served.url, served.name, tok, served.max_length, served.version))


def tokenizer(model_dir: Path) -> Any:
    """The variant's tokenizer alone (engine vllm: the weights live in the server); adapters keep
    their base's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
