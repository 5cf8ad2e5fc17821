"""The project's prompt format for local runtimes: an Ollama Modelfile (Go template), and the same
format rendered in Python for `sophia serve`. One module, so the two cannot drift apart.

Ollama renders `.Messages` for both /api/generate (one user message) and /api/chat. A model whose
vocabulary has fill-in-the-middle tokens gets a `.Suffix` branch: editors (Continue) read the template
from /api/show and offer FIM only when it mentions `.Suffix`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sophia.generate import STOP_STRINGS
from sophia.prompt import ANSWER_PREFIX, build_prompt

# Decoding the project's evaluations use (greedy, no repetition penalty): llama.cpp's and Ollama's
# defaults (temperature 0.8, repeat_penalty 1.1) would answer differently from the evaluated model.
DEFAULT_PARAMETERS: dict[str, float] = {"temperature": 0.0, "repeat_penalty": 1.0}
ROLES = ("system", "user", "assistant")

_CHAT = (
    '{{- range .Messages }}'
    '{{- if eq .Role "system" }}{{ .Content }}\n'
    '{{ else if eq .Role "user" }}Instruct: {{ .Content }}\nOutput:'
    '{{ else if eq .Role "assistant" }}' + ANSWER_PREFIX + '{{ .Content }}\n'
    '{{ end }}'
    '{{- end }}'
)


def template(fim: Sequence[str] | None = None) -> str:
    """Ollama TEMPLATE; `fim` = the (prefix, suffix, middle) token texts when the model has them."""
    if not fim:
        return _CHAT
    pre, suf, mid = fim
    return f"{{{{- if .Suffix }}}}{pre}{{{{ .Prompt }}}}{suf}{{{{ .Suffix }}}}{mid}{{{{- else }}}}{_CHAT}{{{{- end }}}}"


def render_messages(messages: Sequence[Mapping[str, str]]) -> str:
    """What the TEMPLATE renders, except that instructions are stripped as in training
    (`sophia.prompt.build_prompt`). A trailing assistant message is left open: the model continues it."""
    parts = []
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "system":
            parts.append(content + "\n")
        elif role == "user":
            parts.append(build_prompt(content))
        else:
            last = i == len(messages) - 1
            parts.append(ANSWER_PREFIX + content.strip() + ("" if last else "\n"))
    return "".join(parts)


def _quote(value: str) -> str:
    """Modelfile quoting as Ollama writes it (its parser keeps newlines inside quotes)."""
    if '"""' in value:
        raise ValueError(f"cannot quote {value!r} for a Modelfile")
    return f'"""{value}"""' if '"' in value else f'"{value}"'


def modelfile(gguf_name: str, n_ctx: int, fim: Sequence[str] | None = None, title: str = "") -> str:
    """A Modelfile next to its GGUF file (Ollama resolves `FROM ./x` against the Modelfile's folder)."""
    lines = [f"# {title}" if title else "# Sophia model for Ollama",
             "# Create: ollama create <name> -f Modelfile   (no SYSTEM prompt: the model was trained without one)",
             f"FROM ./{gguf_name}",
             f"TEMPLATE {_quote(template(fim))}"]
    lines += [f"PARAMETER stop {_quote(s)}" for s in STOP_STRINGS]
    lines.append(f"PARAMETER num_ctx {n_ctx}")
    lines += [f"PARAMETER {k} {v:g}" for k, v in DEFAULT_PARAMETERS.items()]
    return "\n".join(lines) + "\n"


def ollama_name(model_id: str, kind: str) -> str:
    """The name the README's `ollama create` and `sophia serve` give a variant: Ollama names allow
    [a-z0-9_.-] and one ':tag' (gptq+tiny-alpaca, Q4_K_M → sophia-gptq-tiny-alpaca:q4_k_m)."""
    return f"sophia-{re.sub(r'[^a-z0-9_.-]', '-', model_id.lower())}:{kind.lower()}"
