"""OpenAI's API (/v1/*): completions (raw prompt, FIM through `suffix`) and chat completions.

As llama.cpp's server and Ollama do, unknown request fields are ignored (and logged): clients add
their own (`cache_prompt`). The llama.cpp-server extensions `top_k`, `min_p` and `repeat_penalty`
are applied. Fields that would change the answer's meaning and are not implemented (`n` > 1,
`logprobs`, `echo`, a JSON response format) are refused with a 400 naming them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sophia.generate import STOP_STRINGS
from sophia.gguf.modelfile import render_messages
from sophia.serve import fields
from sophia.serve.engine import Job, Result
from sophia.serve.errors import RequestError
from sophia.serve.fim import fim_tokens
from sophia.serve.shared import Served, body_of, client_key, opened, sse, unix_now, watched

SAMPLING = {"temperature": float, "top_p": float, "seed": int, "presence_penalty": float,
            "frequency_penalty": float, "top_k": int, "min_p": float, "repeat_penalty": float}
COMMON = {"model", "stream", "stream_options", "max_tokens", "stop", "n", "user", "logit_bias", "logprobs",
          *SAMPLING}
COMPLETIONS = COMMON | {"prompt", "suffix", "echo", "best_of"}
CHAT = COMMON | {"messages", "max_completion_tokens", "response_format", "tools", "tool_choice",
                 "parallel_tool_calls", "store", "metadata", "top_logprobs"}


def _check(body: dict[str, Any], known: set[str], where: str) -> None:
    fields.ignore_unknown(body, known, where)
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise RequestError("'n' and 'best_of' must be 1: one model instance answers one completion at a time")
    fields.tools_offered(body)
    for key in ("echo", "logprobs", "top_logprobs", "logit_bias"):
        if body.get(key):
            raise RequestError(f"'{key}' is not supported by sophia serve")
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise RequestError("'response_format': only {\"type\": \"text\"} is supported")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object")


def _max_tokens(body: dict[str, Any], default: int) -> int:
    value = fields.typed(body, "max_completion_tokens", int) or fields.typed(body, "max_tokens", int)
    if value is not None and value < 1:
        raise RequestError("'max_tokens' must be at least 1")
    return default if value is None else value


def _job(served: Served, body: dict[str, Any], tokens: list[int], max_tokens: int, default_stop: list[str],
         client: str | None = None) -> Job:
    """Sampling starts from the project's defaults on every request: nothing, the seed included, carries over."""
    sampling = fields.defaults()
    for key, kind in SAMPLING.items():
        setattr(sampling, key, fields.typed(body, key, kind, getattr(sampling, key)))
    stop = fields.stop_list(body.get("stop"), "stop")
    served.engine.check_fits(tokens)
    return Job(tokens=tokens, max_tokens=max_tokens, stop=default_stop if stop is None else stop,
               sampling=sampling, client=client)


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


async def _streamed(served: Served, body: dict[str, Any], job: Job, request: Request,
                    chunk: Callable[[Result | str], dict[str, Any]], head: dict[str, Any] | None = None) -> Response:
    """SSE chunks; with `stream_options.include_usage` every chunk has `usage: null` and one more chunk,
    with no choices and the usage, comes before [DONE]."""
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    items = await opened(served.engine, job, request)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        extra = {"usage": None} if usage else {}
        if head is not None:
            yield {**head, **extra}
        async for item in items:
            yield {**chunk(item), **extra}
            if isinstance(item, Result) and usage:
                yield {**chunk(item), "choices": [], "usage": _usage(item)}

    return sse(chunks(), request.url.path)


def add_routes(app: FastAPI, served: Served) -> None:
    engine = served.engine

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": unix_now(),
                                            "owned_by": "sophia"}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await body_of(request, served)
        _check(body, COMPLETIONS, "/v1/completions")
        served.resolve(body.get("model"))
        prompt, suffix = _prompt(body), fields.typed(body, "suffix", str) or None
        max_tokens = _max_tokens(body, 16)  # OpenAI's documented default for completions
        # completions are raw text (editors send their own prompt format, special tokens included);
        # no default stop strings
        if suffix is not None:
            cap = served.limits.prompt_chars(engine.n_ctx)
            tokens, client = await fim_tokens(engine, prompt, suffix, max_tokens, cap), client_key(request, body)
        else:
            served.check_chars(prompt)
            tokens, client = await engine.tokenize(prompt, special=True), None
        job = _job(served, body, tokens, max_tokens, [], client)
        cid, created = f"cmpl-{uuid.uuid4().hex}", unix_now()

        def chunk(item: Result | str) -> dict[str, Any]:
            text, finish = ("", item.finish_reason) if isinstance(item, Result) else (item, None)
            return {"id": cid, "object": "text_completion", "created": created, "model": served.name,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

        if not fields.typed(body, "stream", bool, False):
            text, result = await watched(engine.complete(job), engine, job, request)
            done = chunk(result)
            done["choices"][0]["text"] = text
            return JSONResponse({**done, "usage": _usage(result)})
        return await _streamed(served, body, job, request, chunk)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await body_of(request, served)
        _check(body, CHAT, "/v1/chat/completions")
        served.resolve(body.get("model"))
        msgs = fields.messages(body.get("messages"))
        served.check_chars(*(m["content"] for m in msgs))
        tokens = await engine.tokenize(render_messages(msgs))
        job = _job(served, body, tokens, _max_tokens(body, -1), list(STOP_STRINGS))
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", unix_now()

        def chunk(item: Result | str | dict[str, str]) -> dict[str, Any]:
            delta = item if isinstance(item, dict) else {} if isinstance(item, Result) else {"content": item}
            finish = item.finish_reason if isinstance(item, Result) else None
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if not fields.typed(body, "stream", bool, False):
            text, result = await watched(engine.complete(job), engine, job, request)
            return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": served.name,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": result.finish_reason}],
                                 "usage": _usage(result)})
        return await _streamed(served, body, job, request, chunk, chunk({"role": "assistant", "content": ""}))
