"""One model instance behind an async queue.

Every generation runs on a single worker thread, so requests queue instead of racing for the one
context. The queue is capped (a full queue is a 503 with Retry-After), every request has a deadline,
and a client's newer fill-in-the-middle request replaces its older one still waiting (an editor's
autocomplete asks again at every keystroke). Tokens come from the model's own sampler; this module
streams their text out, stops at stop strings and EOS, and notices when the client has left (the
HTTP side sets the job's `cancelled` event; the worker checks it between tokens and frees the slot).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sophia.serve.errors import Busy, ContextLengthExceeded, GenerationFailed, ServeError, Superseded

log = logging.getLogger("sophia.serve")


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


class Model(Protocol):
    """What the engine needs of a model (`sophia.serve.model.LlamaModel` is the real one)."""

    n_ctx: int

    def tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]: ...
    def piece(self, token: int) -> bytes: ...
    def fim_ids(self) -> tuple[int, int, int] | None: ...
    def is_eog(self, token: int) -> bool: ...
    def generate(self, tokens: Sequence[int], sampling: Sampling) -> Iterator[int]: ...
    def close(self) -> None: ...


@dataclass
class Job:
    tokens: list[int]
    max_tokens: int
    stop: list[str]
    sampling: Sampling
    client: str | None = None  # set for fill-in-the-middle requests: a newer one of this client replaces it
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")  # time.monotonic() by which it must be done
    started: bool = False  # the worker took it (set under the engine's lock)
    submitted: float = 0.0  # time.perf_counter() when it joined the queue
    notify: Any = None  # hands an event to the waiting request from any thread


@dataclass
class Result:
    """The closing event of a generation: why it ended and what it cost."""

    finish_reason: str  # stop (EOS or a stop string), length (max tokens, context or deadline), cancelled
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
    """`stream()` queues a job and yields its text as it is generated, then a Result."""

    def __init__(self, model: Model, max_queue: int = 16, timeout_s: float = 600.0) -> None:
        self.model = model
        self.n_ctx = model.n_ctx
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._waiting: list[Job] = []  # submitted, not started
        self._running: list[Job] = []
        self._lock = threading.Lock()  # guards _waiting and _running: the worker thread moves jobs between them
        self._recent_s = 1.0  # a running mean of generation seconds, for Retry-After

    # --- tokens ----------------------------------------------------------------------------------
    async def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """Off the event loop: a long prompt must not stall every other client's stream."""
        return await asyncio.to_thread(self.model.tokenize, text, add_bos, special)

    def check_fits(self, tokens: Sequence[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise ContextLengthExceeded(f"prompt is {len(tokens)} tokens, the context holds {self.n_ctx} "
                                        "(prompt + at least one new token must fit)")

    # --- the queue -------------------------------------------------------------------------------
    def queued(self) -> int:
        with self._lock:
            return sum(not j.cancelled.is_set() for j in self._waiting)

    def _admit(self, job: Job) -> None:
        with self._lock:
            if job.client is not None:
                for old in [j for j in self._waiting if j.client == job.client and not j.cancelled.is_set()]:
                    old.cancelled.set()
                    self._waiting.remove(old)
                    old.notify(Superseded("replaced by a newer fill-in-the-middle request of the same client"))
                    self._log(self._unstarted(old), "replaced in the queue")
            waiting = sum(not j.cancelled.is_set() for j in self._waiting)
            if waiting >= self.max_queue:
                retry = max(1, min(60, round(self._recent_s * waiting)))
                raise Busy(f"the server is busy: {waiting} requests are waiting (--max-queue {self.max_queue}); "
                           f"retry in {retry} s", retry)
            job.deadline = min(job.deadline, time.monotonic() + self.timeout_s)
            job.submitted = time.perf_counter()
            self._waiting.append(job)

    def cancel(self, job: Job) -> None:
        """The client left: a queued job is dropped now, a running one stops at its next token."""
        job.cancelled.set()
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                result = self._unstarted(job)
                job.notify(result)
                self._log(result, "cancelled in the queue")

    def expire(self, job: Job) -> None:
        """Refuses a job still queued at its deadline (one that started is cut by the worker)."""
        with self._lock:
            if job in self._waiting and time.monotonic() > job.deadline:
                self._waiting.remove(job)
                job.cancelled.set()
                job.notify(Busy(f"waited past the request deadline in the queue (--timeout {self.timeout_s:g} s)",
                                max(1, round(self._recent_s))))
                self._log(self._unstarted(job), "deadline in the queue")

    @staticmethod
    def _unstarted(job: Job) -> Result:
        return Result("cancelled", len(job.tokens), [], time.perf_counter() - job.submitted, None, 0.0)

    @staticmethod
    def _log(result: Result, finish: str) -> None:
        first = "-" if result.first_token_s is None else f"{result.first_token_s:.3f} s"
        log.info("request: prompt %d tokens, generated %d, queued %.3f s, first token %s, %.1f tokens/s, %s",
                 result.prompt_tokens, len(result.tokens), result.queue_s, first, result.tokens_per_s, finish)

    def cancel_all(self) -> None:
        """Shutting down: every queued and running job ends at once."""
        with self._lock:
            jobs, self._waiting = [*self._waiting, *self._running], []
        log.info("shutting down: %d running and %d queued requests cancelled", sum(j.started for j in jobs),
                 sum(not j.started for j in jobs))
        for job in jobs:
            job.cancelled.set()
            if not job.started:
                job.notify(self._unstarted(job))

    # --- generation ------------------------------------------------------------------------------
    async def stream(self, job: Job) -> AsyncIterator[str | Result]:
        """Text pieces, then one Result. Closing the iterator early (client gone) cancels the job."""
        self.check_fits(job.tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Result | BaseException] = asyncio.Queue()

        def put(item: str | Result | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job.notify = put
        self._admit(job)
        future = loop.run_in_executor(self._worker, self._run, job, put)
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
            with self._lock:
                started = job.started
                if job in self._waiting:  # never started: the worker will skip it; nothing to wait for
                    self._waiting.remove(job)
            if started:
                await asyncio.shield(future)

    def _run(self, job: Job, put: Any) -> None:
        with self._lock:
            if job not in self._waiting:  # its client left, or a newer request replaced it, while it waited
                return
            self._waiting.remove(job)
            job.started = True
            self._running.append(job)
        start = time.perf_counter()
        tokens: list[int] = []
        first: float | None = None
        finish = "cancelled"
        error: ServeError | None = None
        try:
            if time.monotonic() > job.deadline:
                raise Busy(f"waited {start - job.submitted:.0f} s in the queue, past the request deadline "
                           f"(--timeout {self.timeout_s:g} s)", max(1, round(self._recent_s)))
            if not job.cancelled.is_set():
                finish, first = self._generate(job, tokens, put, start)
        except ServeError as exc:
            finish, error = "refused", exc
        except Exception as exc:  # reported to the request that caused it; the worker lives on
            log.exception("generation failed")
            finish, error = "failed", GenerationFailed(f"generation failed: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.remove(job)
            result = Result(finish, len(job.tokens), tokens, start - job.submitted, first, time.perf_counter() - start)
            if tokens:
                self._recent_s = 0.8 * self._recent_s + 0.2 * result.total_s
            self._log(result, finish)
        put(error if error is not None else result)

    def _generate(self, job: Job, tokens: list[int], put: Any, start: float) -> tuple[str, float | None]:
        room = self.n_ctx - len(job.tokens)
        limit = room if job.max_tokens <= 0 else min(job.max_tokens, room)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, first, finish, hit = "", None, "length", False
        gen = self.model.generate(job.tokens, job.sampling)
        try:
            for token in gen:
                if first is None:
                    first = time.perf_counter() - start
                if job.cancelled.is_set():
                    return "cancelled", first
                if self.model.is_eog(token):
                    finish = "stop"
                    break
                tokens.append(token)
                text, hit, pending = split_at_stop(pending + decoder.decode(self.model.piece(token)), job.stop)
                if text:
                    put(text)
                if hit:
                    finish = "stop"
                    break
                if len(tokens) >= limit:
                    break
                if time.monotonic() > job.deadline:  # an answer cut at the deadline, as at a length limit
                    log.info("request deadline reached after %d tokens", len(tokens))
                    break
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        if not hit:  # what was held back did not become a stop string after all
            rest = pending + decoder.decode(b"", final=True)
            if rest:
                put(rest)
        return finish, first

    async def complete(self, job: Job) -> tuple[str, Result]:
        parts: list[str] = []
        async for item in self.stream(job):
            if isinstance(item, Result):
                return "".join(parts), item
            parts.append(item)
        raise AssertionError("stream ended without a result")

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        self.model.close()
