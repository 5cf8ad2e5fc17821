"""The llama.cpp side of the engine: one `llama_cpp.Llama` (a GGUF file loaded once) and what the
engine asks of it: tokens, token pieces, fill-in-the-middle ids, and llama.cpp's own sampler chain."""

from __future__ import annotations

import ctypes
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sophia.serve.engine import Sampling

# Ollama's default: a model's full training context (16 K for DeepSeek-Coder) costs gigabytes of KV
# cache that an editor's prompts rarely use.
DEFAULT_MAX_CTX = 4096


def default_ctx(n_ctx_train: int) -> int:
    """min(training context, 4096); 4096 when the file does not say."""
    return min(n_ctx_train, DEFAULT_MAX_CTX) if n_ctx_train > 0 else DEFAULT_MAX_CTX


def default_gpu_layers() -> int:
    """All layers where this llama.cpp build has a GPU backend (CUDA, Metal, Vulkan...), else none."""
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class LlamaModel:
    """A GGUF model in llama.cpp. Generation methods are called from the engine's one worker thread;
    tokenizing only reads the vocabulary, so it may run on other threads meanwhile."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None = None, gpu_layers: int = 0) -> None:
        import llama_cpp
        from llama_cpp import Llama

        self.path = Path(path)
        start = time.perf_counter()
        self.llm = Llama(str(self.path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                         n_gpu_layers=gpu_layers, verbose=False)
        self.load_s = time.perf_counter() - start
        # llama.cpp pads its context to a multiple of 256, but llama-cpp-python sizes its token
        # buffer by the length asked for: the smaller one is what a request may fill
        self.n_ctx: int = min(self.llm.n_ctx(), len(self.llm.input_ids))
        self.gpu_layers = gpu_layers
        self.metadata: dict[str, str] = dict(self.llm.metadata)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        """`special`: parse special-token texts (`<|endoftext|>`) into their ids; off for user text."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def piece(self, token: int) -> bytes:
        """The bytes of one token (llama-cpp-python's own detokenize truncates pieces over 32 bytes)."""
        import llama_cpp

        size = 64
        while True:
            buf = (ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, False)
            if n >= 0:
                return bytes(buf[:n])
            size = -n

    def fim_ids(self) -> tuple[int, int, int] | None:
        """(prefix, suffix, middle) token ids when the vocabulary has fill-in-the-middle tokens."""
        import llama_cpp

        ids = (llama_cpp.llama_vocab_fim_pre(self._vocab), llama_cpp.llama_vocab_fim_suf(self._vocab),
               llama_cpp.llama_vocab_fim_mid(self._vocab))
        return None if min(ids) < 0 else ids

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def generate(self, tokens: Sequence[int], s: Sampling) -> Iterator[int]:
        """llama.cpp's sampler chain over `tokens`. The seed is set on every request: llama-cpp-python
        keeps the last one, so without this a request without a seed would repeat the previous seeded one."""
        self.llm.set_seed(s.seed & 0xFFFFFFFF if s.seed is not None else random.SystemRandom().getrandbits(31))
        gen: Any = self.llm.generate(list(tokens), top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, temp=s.temperature,
                                     repeat_penalty=s.repeat_penalty, presence_penalty=s.presence_penalty,
                                     frequency_penalty=s.frequency_penalty)
        return gen

    def close(self) -> None:
        self.llm.close()
