"""Reading request bodies of both APIs into engine jobs: every field checked, each problem a
RequestError (HTTP 400) that names the field."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sophia.gguf.modelfile import DEFAULT_PARAMETERS, ROLES
from sophia.serve.engine import Sampling
from sophia.serve.errors import RequestError

log = logging.getLogger(__name__)

# Ollama's sampling options that llama.cpp's sampler takes as they are.
OLLAMA_SAMPLING = {"temperature": float, "top_p": float, "top_k": int, "min_p": float, "seed": int,
                   "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float}
# Ollama options that size or place the runtime (context, threads, GPU layers, memory mapping): they
# are fixed when `sophia serve` loads the model, so a request's value is accepted and not applied.
OLLAMA_RUNTIME = {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread", "numa",
                  "low_vram", "f16_kv", "vocab_only", "num_keep", "logits_all"}
# Ollama options this server does not implement: refused rather than silently ignored.
OLLAMA_UNSUPPORTED = {"typical_p", "repeat_last_n", "mirostat", "mirostat_tau", "mirostat_eta", "tfs_z",
                      "penalize_newline"}


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as an object; a top-level `null` value means the field is absent (OpenAI's clients send them)."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"malformed JSON in the request body: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return {k: v for k, v in body.items() if v is not None}


def ignore_unknown(body: dict[str, Any], known: set[str], where: str) -> None:
    """Unknown fields are ignored, as Ollama and llama.cpp's server do (clients add their own, e.g.
    `cache_prompt`), and logged so a misspelt one can still be found."""
    unknown = sorted(set(body) - known)
    if unknown:
        log.info("%s: ignored unknown field(s) %s", where, ", ".join(unknown))


def typed(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None,
          where: str = "") -> Any:
    """`body[key]` if it has the right type, `default` if absent or null."""
    value = body.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RequestError(f"'{where}{key}' must be {names}, got {json.dumps(value)}")
    return value


def stop_list(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return [s for s in value if s]
    raise RequestError(f"'{where}' must be a string or a list of strings")


def defaults() -> Sampling:
    return Sampling(temperature=DEFAULT_PARAMETERS["temperature"], top_k=40, top_p=0.9,
                    repeat_penalty=DEFAULT_PARAMETERS["repeat_penalty"])


def ollama_options(options: Any) -> tuple[Sampling, int | None, list[str] | None]:
    """(sampling, num_predict, stop) from an Ollama `options` object."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise RequestError("'options' must be an object")
    sampling = defaults()
    for key in options:
        if key in OLLAMA_SAMPLING:
            setattr(sampling, key, typed(options, key, OLLAMA_SAMPLING[key], getattr(sampling, key), "options."))
        elif key in OLLAMA_UNSUPPORTED:
            raise RequestError(f"option '{key}' is not supported by sophia serve")
        elif key not in OLLAMA_RUNTIME | {"num_predict", "stop"}:
            known = ", ".join(sorted(OLLAMA_SAMPLING.keys() | {"num_predict", "stop"}))
            raise RequestError(f"unknown option '{key}' (sampling options: {known})")
    num_predict = typed(options, "num_predict", int, None, "options.")
    return sampling, num_predict, stop_list(options.get("stop"), "options.stop")


def messages(value: Any, where: str = "messages") -> list[dict[str, str]]:
    """Chat messages as role/content strings. OpenAI's list-of-parts content is joined if all parts
    are text; `developer` (OpenAI's newer name for system) is read as `system`; a `tool` result is
    refused, since these models never call a tool and have no template for one."""
    if not isinstance(value, list) or not value:
        raise RequestError(f"'{where}' must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise RequestError(f"'{where}[{i}]' must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role == "developer":
            role = "system"
        if role == "tool":
            raise RequestError(f"'{where}[{i}].role': 'tool' results cannot be used: this model has no "
                               "tool-calling template, so it never asks for a tool call")
        if role not in ROLES:
            raise RequestError(f"'{where}[{i}].role' must be one of {', '.join((*ROLES, 'developer'))}, "
                               f"got {json.dumps(role)}")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise RequestError(f"'{where}[{i}].content': only text parts are supported")
            content = "".join(str(p.get("text", "")) for p in content)
        if content is None and role == "assistant":  # an assistant turn that only carried tool calls
            content = ""
        if not isinstance(content, str):
            raise RequestError(f"'{where}[{i}].content' must be a string")
        if m.get("images"):
            raise RequestError(f"'{where}[{i}].images': this is a text-only model")
        out.append({"role": role, "content": content})
    return out


def tools_offered(body: Mapping[str, Any]) -> None:
    """Tool definitions are accepted and left unused: these models have no tool-calling template,
    so they answer in text, which is what `tool_choice: auto` allows. Editors (Continue's agent)
    offer tools on every chat request and fail outright on a 400. A request that *requires* a tool
    call cannot be honoured and is refused."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is not None and not isinstance(tools, list):
        raise RequestError("'tools' must be a list of tool definitions")
    if choice not in (None, "auto", "none"):
        raise RequestError(f"'tool_choice': {json.dumps(choice)} needs a tool call, and this model has no "
                           "tool-calling template; use 'auto' or 'none' (it answers in text)")
    if tools:
        log.info("%d tools offered; this model answers in text (no tool-calling template)", len(tools))
