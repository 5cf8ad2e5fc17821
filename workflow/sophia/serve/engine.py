"""One llama.cpp model instance (`llama_cpp.Llama`) behind an async queue.

Every generation runs on a single worker thread, so requests queue instead of racing for the one
context. Tokens are sampled by llama.cpp's own sampler chain (`Llama.generate`); this module only
streams their text out, stops at stop strings and EOS, and notices when the client has left (the
HTTP side sets the request's `cancelled` event; the worker checks it between tokens and gives up
the slot).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sophia.errors import SophiaError

log = logging.getLogger("sophia.serve")


class RequestError(SophiaError):
    """A request the server cannot honour as asked (HTTP 400 with this message)."""


@dataclass
class Sampling:
    """llama.cpp sampler settings; temperature 0 is greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None


@dataclass
class Job:
    tokens: list[int]
    max_tokens: int
    stop: list[str]
    sampling: Sampling
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class Result:
    """The closing event of a generation: why it ended and what it cost."""

    finish_reason: str  # stop (EOS or a stop string), length, cancelled
    prompt_tokens: int
    tokens: list[int]
    queue_s: float
    first_token_s: float | None
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        gen_time = self.total_s - (self.first_token_s or 0.0)
        return (len(self.tokens) - 1) / gen_time if len(self.tokens) > 1 and gen_time > 0 else 0.0


def split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool, str]:
    """(text safe to emit, a stop string was hit, text held back because it may begin a stop string)."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if hits:
        return text[: min(hits)], True, ""
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return text[: len(text) - hold], False, text[len(text) - hold:]


class Engine:
    """A GGUF model loaded once; `stream()` queues a job and yields its text as it is generated."""

    def __init__(self, model_path: Path, n_ctx: int = 0, threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.path = Path(model_path)
        start = time.perf_counter()
        self.llm = Llama(str(self.path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.load_s = time.perf_counter() - start
        self.n_ctx = self.llm.n_ctx()
        self.metadata: dict[str, str] = dict(self.llm.metadata)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        import llama_cpp

        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    # --- tokens ----------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        """As the HF tokenizer does by default: the model's BOS if it wants one, special tokens parsed."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def piece(self, token: int) -> bytes:
        """The bytes of one token (llama-cpp-python's own detokenize truncates pieces over 32 bytes)."""
        import ctypes

        import llama_cpp

        size = 64
        while True:
            buf = (ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, False)
            if n >= 0:
                return bytes(buf[:n])
            size = -n

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def fim_ids(self) -> tuple[int, int, int] | None:
        """(prefix, suffix, middle) token ids when the vocabulary has fill-in-the-middle tokens."""
        import llama_cpp

        ids = (llama_cpp.llama_vocab_fim_pre(self._vocab), llama_cpp.llama_vocab_fim_suf(self._vocab),
               llama_cpp.llama_vocab_fim_mid(self._vocab))
        return None if min(ids) < 0 else ids

    def fim_tokens(self, prefix: str, suffix: str) -> list[int]:
        """Prefix-suffix-middle prompt, as llama.cpp's own infill builds it (BOS if the model wants one)."""
        ids = self.fim_ids()
        if ids is None:
            raise RequestError(f"{self.path.name}: this model has no fill-in-the-middle tokens, so 'suffix' is "
                               "not supported (FIM needs a model trained with them, e.g. DeepSeek-Coder)")
        pre, suf, mid = ids
        bos = self.tokenize("", add_bos=True)
        return [*bos, pre, *self.tokenize(prefix, False), suf, *self.tokenize(suffix, False), mid]

    def check_fits(self, tokens: Sequence[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise RequestError(f"prompt is {len(tokens)} tokens, the context holds {self.n_ctx} "
                               "(prompt + at least one new token must fit)")

    # --- generation ------------------------------------------------------------------------------
    async def stream(self, job: Job) -> AsyncIterator[str | Result]:
        """Text pieces, then one Result. Closing the iterator early (client gone) cancels the job."""
        self.check_fits(job.tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Result | BaseException] = asyncio.Queue()

        def put(item: str | Result | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        submitted = time.perf_counter()
        future = loop.run_in_executor(self._worker, self._run, job, put, submitted)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Result):
                    break
        finally:
            job.cancelled.set()
            await asyncio.shield(future)

    def _run(self, job: Job, put: Any, submitted: float) -> None:
        start = time.perf_counter()
        tokens: list[int] = []
        first: float | None = None
        finish = "cancelled"
        try:
            if job.cancelled.is_set():  # the client left while this job waited in the queue
                return
            finish, first = self._generate(job, tokens, put, start)
        except Exception as exc:  # reported to the request that caused it; the worker lives on
            log.exception("generation failed")
            put(exc)
            return
        finally:
            result = Result(finish, len(job.tokens), tokens, start - submitted, first, time.perf_counter() - start)
            log.info("request: prompt %d tokens, generated %d, queued %.3f s, first token %s, %.1f tokens/s, %s",
                     result.prompt_tokens, len(tokens), result.queue_s,
                     "-" if first is None else f"{first:.3f} s", result.tokens_per_s, finish)
        put(result)

    def _generate(self, job: Job, tokens: list[int], put: Any, start: float) -> tuple[str, float | None]:
        room = self.n_ctx - len(job.tokens)
        limit = room if job.max_tokens <= 0 else min(job.max_tokens, room)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, first, finish, hit = "", None, "length", False
        s = job.sampling
        if s.seed is not None:
            self.llm.set_seed(s.seed)
        gen = self.llm.generate(job.tokens, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, temp=s.temperature,
                                repeat_penalty=s.repeat_penalty, presence_penalty=s.presence_penalty,
                                frequency_penalty=s.frequency_penalty)
        try:
            for token in gen:
                if first is None:
                    first = time.perf_counter() - start
                if job.cancelled.is_set():
                    return "cancelled", first
                if self._is_eog(token):
                    finish = "stop"
                    break
                tokens.append(token)
                text, hit, pending = split_at_stop(pending + decoder.decode(self.piece(token)), job.stop)
                if text:
                    put(text)
                if hit:
                    finish = "stop"
                    break
                if len(tokens) >= limit:
                    break
        finally:
            gen.close()
        if not hit:  # what was held back did not become a stop string after all
            rest = pending + decoder.decode(b"", final=True)
            if rest:
                put(rest)
        return finish, first

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    async def complete(self, job: Job) -> tuple[str, Result]:
        parts: list[str] = []
        async for item in self.stream(job):
            if isinstance(item, Result):
                return "".join(parts), item
            parts.append(item)
        raise AssertionError("stream ended without a result")

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self.llm.close()
