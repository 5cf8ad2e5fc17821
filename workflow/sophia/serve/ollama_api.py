"""Ollama's REST API (/api/*): what Continue, Twinny and the `ollama` client call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sophia.generate import STOP_STRINGS
from sophia.gguf.modelfile import render_messages
from sophia.prompt import build_prompt
from sophia.serve import fields
from sophia.serve.engine import Job, Result, Sampling
from sophia.serve.errors import RequestError
from sophia.serve.fim import fim_tokens
from sophia.serve.shared import Served, body_of, client_key, ndjson, now_iso, opened, timing_ns, watched

# The Ollama release whose API these routes follow (clients compare it to enable features).
OLLAMA_API_VERSION = "0.12.0"
COMMON = {"model", "stream", "format", "options", "keep_alive", "think", "logprobs", "top_logprobs"}
GENERATE = COMMON | {"prompt", "suffix", "system", "template", "context", "raw", "images"}
CHAT = COMMON | {"messages", "tools"}


def _refuse(body: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if body.get(key):
            raise RequestError(f"'{key}' is not supported by sophia serve")


async def generate_tokens(served: Served, body: dict[str, Any], num_predict: int, request: Request) -> \
        tuple[list[int], str | None]:
    """The prompt as tokens (raw text, the instruct template, or a fill-in-the-middle prompt), and the
    client key that lets a newer FIM request of the same client replace this one in the queue."""
    engine = served.engine
    prompt = fields.typed(body, "prompt", str, "")
    suffix = fields.typed(body, "suffix", str) or None  # "" means none, as in Ollama
    if suffix is not None:
        cap = served.limits.prompt_chars(engine.n_ctx)
        return await fim_tokens(engine, prompt, suffix, num_predict, cap), client_key(request, body)
    context = body.get("context") or []
    if not isinstance(context, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in context):
        raise RequestError("'context' must be a list of token ids")
    system = fields.typed(body, "system", str, "")
    served.check_chars(system, prompt)
    if fields.typed(body, "raw", bool, False):  # the client's own format, its special tokens included
        return [*context, *await engine.tokenize(prompt, add_bos=not context, special=True)], None
    text = (system + "\n" if system else "") + build_prompt(prompt)
    return [*context, *await engine.tokenize(text, add_bos=not context)], None


def _job(served: Served, tokens: list[int], options: tuple[Sampling, int | None, list[str] | None],
         client: str | None = None) -> Job:
    sampling, num_predict, stop = options
    served.engine.check_fits(tokens)
    return Job(tokens=tokens, max_tokens=num_predict if num_predict is not None else -1,
               stop=list(STOP_STRINGS) if stop is None else stop, sampling=sampling, client=client)


def add_routes(app: FastAPI, served: Served) -> None:
    engine = served.engine

    async def _answer(body: dict[str, Any], job: Job, request: Request, final: Callable[[Result, str], dict[str, Any]],
                      piece: Callable[[str], dict[str, Any]]) -> Response:
        """Ollama's two answer shapes for /api/generate and /api/chat: one object (`stream: false`), or
        NDJSON chunks (`piece` per new text) ending with `final`."""
        if not fields.typed(body, "stream", bool, True):
            text, result = await watched(engine.complete(job), engine, job, request)
            return JSONResponse(final(result, text))
        items = await opened(engine, job, request)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            async for item in items:
                if isinstance(item, Result):
                    yield final(item, "")
                else:
                    yield {"model": served.name, "created_at": now_iso(), **piece(item), "done": False}

        return ndjson(chunks())

    def listing() -> dict[str, Any]:
        return {"name": served.name, "model": served.name, "modified_at": served.modified_at, "size": served.size,
                "digest": served.digest, "details": served.details()}

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": OLLAMA_API_VERSION}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [listing()]}

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {"models": [{**listing(), "expires_at": "9999-12-31T23:59:59Z", "size_vram": 0,
                            "context_length": engine.n_ctx}]}

    @app.post("/api/show")
    async def show(request: Request) -> dict[str, Any]:
        body = await body_of(request, served)
        served.resolve(body.get("model") or body.get("name"))
        params = [f"stop {json.dumps(s)}" for s in STOP_STRINGS]
        params += [f"{k} {v}" for k, v in (("temperature", fields.defaults().temperature),
                                           ("repeat_penalty", fields.defaults().repeat_penalty),
                                           ("num_ctx", engine.n_ctx))]
        info = {f"{served.family}.context_length": engine.n_ctx, "general.architecture": served.family,
                **{k: v for k, v in served.metadata.items() if k.startswith("general.")}}
        return {"license": "", "modelfile": served.modelfile, "parameters": "\n".join(params),
                "template": served.template, "details": served.details(), "model_info": info,
                "capabilities": served.capabilities(), "modified_at": served.modified_at}

    @app.post("/api/generate")
    async def generate(request: Request) -> Response:
        body = await body_of(request, served)
        fields.ignore_unknown(body, GENERATE, "/api/generate")
        served.resolve(body.get("model"))
        _refuse(body, "images", "format", "template", "think", "logprobs")
        if not body.get("prompt") and not body.get("suffix"):  # Ollama's "load the model" request
            return JSONResponse({"model": served.name, "created_at": now_iso(), "response": "", "done": True,
                                 "done_reason": "load"})
        options = fields.ollama_options(body.get("options"))
        tokens, client = await generate_tokens(served, body, options[1] or -1, request)
        job = _job(served, tokens, options, client)

        def final(result: Result, text: str) -> dict[str, Any]:
            return {"model": served.name, "created_at": now_iso(), "response": text, "done": True,
                    "done_reason": result.finish_reason, "context": tokens + result.tokens, **timing_ns(result)}

        return await _answer(body, job, request, final, lambda piece: {"response": piece})

    @app.post("/api/chat")
    async def chat(request: Request) -> Response:
        body = await body_of(request, served)
        fields.ignore_unknown(body, CHAT, "/api/chat")
        served.resolve(body.get("model"))
        _refuse(body, "format", "think", "logprobs")
        fields.tools_offered(body)
        msgs = fields.messages(body.get("messages"))
        served.check_chars(*(m["content"] for m in msgs))
        options = fields.ollama_options(body.get("options"))
        job = _job(served, await engine.tokenize(render_messages(msgs)), options)

        def final(result: Result, text: str) -> dict[str, Any]:
            return {"model": served.name, "created_at": now_iso(), "message": {"role": "assistant", "content": text},
                    "done": True, "done_reason": result.finish_reason, **timing_ns(result)}

        return await _answer(body, job, request, final,
                             lambda piece: {"message": {"role": "assistant", "content": piece}})
