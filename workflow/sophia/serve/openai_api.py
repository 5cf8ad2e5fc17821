"""OpenAI's API (/v1/*): completions (raw prompt, FIM through `suffix`) and chat completions.

Like OpenAI's own service, an unknown request argument is an error, not silently dropped. The
llama.cpp-server extensions `top_k`, `min_p` and `repeat_penalty` are accepted too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sophia.generate import STOP_STRINGS
from sophia.gguf.modelfile import render_messages
from sophia.serve import requests as rq
from sophia.serve.app import Served, body_of, complete_unless_gone, sse, unix_now
from sophia.serve.engine import Job, RequestError, Result

SAMPLING = {"temperature": float, "top_p": float, "seed": int, "presence_penalty": float,
            "frequency_penalty": float, "top_k": int, "min_p": float, "repeat_penalty": float}
COMMON = {"model", "stream", "stream_options", "max_tokens", "stop", "n", "user", "logit_bias", "logprobs",
          *SAMPLING}
COMPLETIONS = COMMON | {"prompt", "suffix", "echo", "best_of"}
CHAT = COMMON | {"messages", "max_completion_tokens", "response_format", "tools", "tool_choice",
                 "parallel_tool_calls", "store", "metadata", "top_logprobs"}


def _check(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"unrecognized request argument(s): {', '.join(unknown)}")
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise RequestError("'n' and 'best_of' must be 1: one model instance answers one completion at a time")
    rq.tools_offered(body)
    for key in ("echo", "logprobs", "top_logprobs", "logit_bias"):
        if body.get(key):
            raise RequestError(f"'{key}' is not supported by sophia serve")
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise RequestError("'response_format': only {\"type\": \"text\"} is supported")


def _job(served: Served, body: dict[str, Any], tokens: list[int], default_stop: list[str]) -> Job:
    sampling = rq.defaults()
    for key, kind in SAMPLING.items():
        setattr(sampling, key, rq.typed(body, key, kind, getattr(sampling, key)))
    max_tokens = rq.typed(body, "max_completion_tokens", int) or rq.typed(body, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise RequestError("'max_tokens' must be at least 1")
    stop = rq.stop_list(body.get("stop"), "stop")
    served.engine.check_fits(tokens)
    return Job(tokens=tokens, max_tokens=max_tokens or -1, stop=default_stop if stop is None else stop,
               sampling=sampling)


def _usage(result: Result) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": len(result.tokens),
            "total_tokens": result.prompt_tokens + len(result.tokens)}


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string (or a list holding one string)")
    return prompt


def add_routes(app: FastAPI, served: Served) -> None:
    engine = served.engine

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": unix_now(),
                                            "owned_by": "sophia"}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await body_of(request)
        _check(body, COMPLETIONS)
        served.resolve(body.get("model"))
        prompt, suffix = _prompt(body), rq.typed(body, "suffix", str) or None
        # completions are raw text (editors send their own prompt format); no default stop strings
        tokens = engine.fim_tokens(prompt, suffix) if suffix is not None else engine.tokenize(prompt)
        if body.get("max_tokens") is None:
            body["max_tokens"] = 16  # OpenAI's documented default for completions
        job = _job(served, body, tokens, [])
        cid, created = f"cmpl-{uuid.uuid4().hex}", unix_now()

        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": created, "model": served.name,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

        if not rq.typed(body, "stream", bool, False):
            text, result = await complete_unless_gone(engine, job, request)
            return JSONResponse({**chunk(text, result.finish_reason), "usage": _usage(result)})

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            async for item in engine.stream(job):
                yield chunk("", item.finish_reason) if isinstance(item, Result) else chunk(item, None)

        return sse(chunks())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await body_of(request)
        _check(body, CHAT)
        served.resolve(body.get("model"))
        msgs = rq.messages(body.get("messages"))
        job = _job(served, body, engine.tokenize(render_messages(msgs)), list(STOP_STRINGS))
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", unix_now()

        if not rq.typed(body, "stream", bool, False):
            text, result = await complete_unless_gone(engine, job, request)
            return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": served.name,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": result.finish_reason}],
                                 "usage": _usage(result)})

        def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            yield chunk({"role": "assistant", "content": ""}, None)
            async for item in engine.stream(job):
                yield chunk({}, item.finish_reason) if isinstance(item, Result) else chunk({"content": item}, None)

        return sse(chunks())
