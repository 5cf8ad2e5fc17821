"""What both APIs share: the served model, reading a body within its limits, waiting on the engine
while watching for the client to leave, the two stream formats, and the two error shapes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from sophia.serve.engine import Engine, Job, Result
from sophia.serve.errors import ContextLengthExceeded, ModelNotFound, PayloadTooLarge, RequestError, ServeError
from sophia.serve.fields import parse_json

log = logging.getLogger("sophia.serve")
T = TypeVar("T")


@dataclass
class Limits:
    """Checked before the work they guard: body bytes before reading it, characters before tokenizing."""

    max_body: int = 8 << 20
    max_prompt_chars: int = 0  # 0: 32 characters per context token

    def prompt_chars(self, n_ctx: int) -> int:
        return self.max_prompt_chars or 32 * n_ctx


@dataclass
class Served:
    """The one model this server runs, and what the listing endpoints say about it."""

    engine: Engine
    name: str
    digest: str
    size: int
    family: str
    parameter_size: str
    quantization: str
    template: str
    modelfile: str
    metadata: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    modified_at: str = field(default_factory=lambda: now_iso())

    def resolve(self, name: Any) -> None:
        if not isinstance(name, str) or not name:
            raise RequestError("'model' is required")
        base, _, tag = self.name.partition(":")
        if name not in (self.name, f"{self.name}:latest") and not (name == base and tag):
            raise ModelNotFound(f"model '{name}' not found (this server runs '{self.name}')")

    def details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": self.family, "families": [self.family],
                "parameter_size": self.parameter_size, "quantization_level": self.quantization}

    def capabilities(self) -> list[str]:
        return ["completion", "insert"] if self.engine.model.fim_ids() else ["completion"]

    def check_chars(self, *texts: str) -> None:
        """The prompt's characters against the cap, before any tokenizing."""
        n, cap = sum(len(t) for t in texts), self.limits.prompt_chars(self.engine.n_ctx)
        if n > cap:
            raise ContextLengthExceeded(f"prompt is {n} characters, over the limit of {cap} (--max-prompt-chars; "
                                        f"the context holds {self.engine.n_ctx} tokens)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def unix_now() -> int:
    return int(time.time())


def is_openai(path: str) -> bool:
    return path.startswith("/v1/")


def error_body(path: str, exc: ServeError) -> dict[str, Any]:
    """Ollama's {"error": "..."} or OpenAI's {"error": {message, type, param, code}}."""
    if not is_openai(path):
        return {"error": str(exc)}
    kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}.get(
        exc.status, "invalid_request_error" if exc.status < 500 else "server_error")
    return {"error": {"message": str(exc), "type": kind, "param": None, "code": exc.code}}


def error_response(path: str, exc: ServeError) -> JSONResponse:
    return JSONResponse(error_body(path, exc), status_code=exc.status, headers=exc.headers)


async def body_of(request: Request, served: Served) -> dict[str, Any]:
    """The JSON object, refused with 413 as soon as it is known to be over --max-body."""
    cap = served.limits.max_body
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"request body is {int(declared)} bytes, over the limit of {cap} (--max-body)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"request body is over the limit of {cap} bytes (--max-body)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    return parse_json(raw) if size < 65536 else await asyncio.to_thread(parse_json, raw)


async def watched(work: Awaitable[T], engine: Engine, job: Job, request: Request) -> T:
    """Awaits `work` on the engine; a client that disconnects meanwhile cancels its job, and a job
    still queued at its deadline is refused."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=0.1)
        if task.done():
            break
        if await request.is_disconnected():
            engine.cancel(job)
        else:
            engine.expire(job)
    return task.result()


async def opened(engine: Engine, job: Job, request: Request) -> AsyncIterator[str | Result]:
    """The job's stream once its first piece is there: errors before it (queue full, deadline, a
    replaced request) still get their HTTP status instead of a 200 stream holding only an error."""
    items = engine.stream(job)
    first = await watched(anext(items), engine, job, request)

    async def rest() -> AsyncIterator[str | Result]:
        try:
            yield first
            if not isinstance(first, Result):
                async for item in items:
                    yield item
        finally:
            await items.aclose()

    return rest()


def _failure(exc: BaseException) -> ServeError:
    if isinstance(exc, ServeError):
        return exc
    log.error("stream failed: %s: %s", type(exc).__name__, exc)
    return ServeError(f"generation failed: {type(exc).__name__}: {exc}")


def ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Ollama's stream; a failure mid-stream ends it with an {"error": ...} line (the client raises it)."""
    async def lines() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                yield (json.dumps(item) + "\n").encode()
        except Exception as exc:
            yield (json.dumps({"error": str(_failure(exc))}) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def sse(items: AsyncIterator[dict[str, Any]], path: str) -> StreamingResponse:
    """OpenAI's server-sent events ending with [DONE]; a failure mid-stream sends an error event
    instead (the openai client raises APIError on it) rather than a stream that just stops."""
    async def events() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                yield f"data: {json.dumps(item)}\n\n".encode()
        except Exception as exc:
            yield f"data: {json.dumps(error_body(path, _failure(exc)))}\n\n".encode()
            return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def timing_ns(result: Result) -> dict[str, int]:
    """Ollama's duration fields (nanoseconds) from the engine's timings."""
    first = result.first_token_s or 0.0
    return {"total_duration": int((result.queue_s + result.total_s) * 1e9), "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens, "prompt_eval_duration": int(first * 1e9),
            "eval_count": len(result.tokens), "eval_duration": int(max(result.total_s - first, 0.0) * 1e9)}


def client_key(request: Request, body: dict[str, Any]) -> str:
    """Who sent a fill-in-the-middle request, so its next one can replace it in the queue: the
    OpenAI `user` field when given, else the peer address and User-Agent (one editor)."""
    user = body.get("user")
    if isinstance(user, str) and user:
        return f"user:{user}"
    peer = request.client.host if request.client else ""
    return f"{peer}|{request.headers.get('user-agent', '')}"
