"""The HTTP service: one GGUF model behind Ollama's API (/api/*) and OpenAI's (/v1/*).

Errors are 4xx in each API's own error shape (Ollama: {"error": "..."}; OpenAI: {"error": {"message":
...}}), so clients raise their usual exceptions with our message. Streams stop generating as soon
as the client goes away (Starlette cancels the response stream; the engine sees the job cancelled).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sophia.serve.engine import Engine, Job, RequestError, Result


class ModelNotFound(RequestError):
    """HTTP 404: the request names a model this server does not run."""


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
        return ["completion", "insert"] if self.engine.fim_ids() else ["completion"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        async for item in items:
            yield (json.dumps(item) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def sse(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        async for item in items:
            yield f"data: {json.dumps(item)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def complete_unless_gone(engine: Engine, job: Job, request: Request) -> tuple[str, Result]:
    """A non-streamed generation that is abandoned when its client disconnects."""
    task = asyncio.ensure_future(engine.complete(job))
    while not task.done():
        await asyncio.wait({task}, timeout=0.25)
        if not task.done() and await request.is_disconnected():
            job.cancelled.set()
    return task.result()


async def body_of(request: Request) -> dict[str, Any]:
    from sophia.serve.requests import parse_json

    return parse_json(await request.body())


def create_app(served: Served) -> FastAPI:
    from sophia.serve import ollama_api, openai_api

    app = FastAPI(title="sophia serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        status = 404 if isinstance(exc, ModelNotFound) else 400
        if request.url.path.startswith("/v1/"):
            kind = "not_found_error" if status == 404 else "invalid_request_error"
            body: dict[str, Any] = {"error": {"message": str(exc), "type": kind, "param": None, "code": None}}
        else:
            body = {"error": str(exc)}
        return JSONResponse(body, status_code=status)

    @app.get("/")
    @app.head("/")
    async def root() -> Response:  # what Ollama answers; some editors probe it
        return Response("Ollama is running", media_type="text/plain")

    ollama_api.add_routes(app, served)
    openai_api.add_routes(app, served)
    return app


def timing_ns(result: Result) -> dict[str, int]:
    """Ollama's duration fields (nanoseconds) from the engine's timings."""
    first = result.first_token_s or 0.0
    return {"total_duration": int((result.queue_s + result.total_s) * 1e9), "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens, "prompt_eval_duration": int(first * 1e9),
            "eval_count": len(result.tokens), "eval_duration": int(max(result.total_s - first, 0.0) * 1e9)}


def unix_now() -> int:
    return int(time.time())
