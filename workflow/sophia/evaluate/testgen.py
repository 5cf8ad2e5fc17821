"""CodeT's generated unit tests: the test prompt, the asserts kept from a completion, and the proof
that the prompt never carries a hidden test.

The test prompt (Chen et al. 2022, CodeT) is the problem's signature and docstring with the
examples removed (they often duplicate the hidden tests), a body of `pass`, then
`# check the correctness of {entry_point}` and `assert `; the model continues it with asserts.

Only `visible(doc)` reaches the prompt builder: the benchmark's hidden fields (HumanEval `test`
and `canonical_solution`, MBPP `test_list`, `code`, ...) are dropped first, and `leaks()` checks the
finished prompt against every hidden assert and call anyway.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sophia.errors import DataError

# Fields a generated test may be built from. Everything else in a benchmark row is hidden.
VISIBLE_FIELDS = ("task_id", "prompt", "entry_point", "text")
# A docstring line from which on the rest is examples ("Example:", "For example", ">>> f(1)").
_EXAMPLE_START = re.compile(r"^\s*(>>>|(for\s+)?examples?\b|e\.g\.)", re.IGNORECASE)
_QUOTES = ('"""', "'''")


def entry_point(doc: dict[str, Any]) -> str:
    """The function under test. MBPP names it only in its tests, which lm-eval's MBPP prompt shows
    the model anyway; only the identifier is taken from them, never an assert."""
    if doc.get("entry_point"):
        return str(doc["entry_point"])
    for test in doc.get("test_list") or []:
        for node in ast.walk(ast.parse(test)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                return node.func.id
    raise DataError(f"{doc.get('task_id')}: no entry_point and no function call in test_list")


def visible(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of a benchmark row a test generator may see (plus the entry point's name)."""
    out = {k: doc[k] for k in VISIBLE_FIELDS if k in doc}
    out["entry_point"] = entry_point(doc)
    return out


def strip_examples(docstring: str, name: str) -> str:
    """The raw docstring literal (quotes included) cut before its first example: a header
    ("Example:", "For example", ">>>") or a line that starts by calling `name`."""
    quote = next((q for q in _QUOTES if q in docstring), None)
    if quote is None:
        return docstring
    head, _, body = docstring.partition(quote)
    lines = body.split("\n")
    for i, line in enumerate(lines):
        text = line.lstrip()
        if _EXAMPLE_START.match(text) or re.match(rf"{re.escape(name)}\s*\(", text):
            kept = "\n".join(lines[:i]).rstrip()
            indent = re.match(r"\s*", lines[-1]).group(0)
            return f"{head}{quote}{kept}\n{indent}{quote}"
    return docstring


def test_prompt(doc: dict[str, Any]) -> str:
    """CodeT's test prompt for a *visible* row (see `visible`)."""
    hidden = set(doc) - set(VISIBLE_FIELDS)
    if hidden:
        raise ValueError(f"test_prompt got hidden fields {sorted(hidden)}; pass visible(doc)")
    name = doc["entry_point"]
    tail = f"\n\n\n# check the correctness of {name}\nassert "
    if "prompt" not in doc:  # MBPP: a description, no signature
        text = str(doc["text"]).replace('"""', "'''")
        return f'def {name}(*args):\n    """{text}"""\n    pass{tail}'
    prompt = doc["prompt"]
    fn = _function(prompt, name, doc.get("task_id"))
    lines = prompt.split("\n")
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        before = lines[: first.lineno - 1]
        literal = "\n".join(lines[first.lineno - 1: first.end_lineno])
        indent = " " * first.col_offset
        text = "\n".join(before) + "\n" + strip_examples(literal, name)
    else:
        indent = " " * (fn.col_offset + 4)
        text = "\n".join(lines[: fn.end_lineno])
    return f"{text.rstrip()}\n{indent}pass{tail}"


def _function(prompt: str, name: str, task_id: Any) -> ast.FunctionDef:
    try:
        tree = ast.parse(prompt)
    except SyntaxError as exc:
        raise DataError(f"{task_id}: prompt does not parse ({exc})") from None
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not found:
        raise DataError(f"{task_id}: prompt defines no top-level function {name!r}")
    return found[-1]


def extract_asserts(completion: str, name: str, limit: int = 5) -> list[str]:
    """The asserts of one test completion (which continues `assert `) that compile and call
    `name`, at most `limit`, in order."""
    kept: list[str] = []
    for line in ("assert " + completion).split("\n"):
        line = line.strip()
        if not line.startswith("assert "):
            continue
        try:
            tree = ast.parse(line)
        except (SyntaxError, ValueError):
            continue
        if _calls(tree, name):
            kept.append(line)
            if len(kept) == limit:
                break
    return kept


def _calls(tree: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
               for n in ast.walk(tree))


def unique(tests: Iterable[str]) -> list[str]:
    """First occurrence of each test; CodeT scores a test set, not a multiset."""
    return list(dict.fromkeys(tests))


def hidden_snippets(doc: dict[str, Any]) -> list[str]:
    """The hidden tests' asserts and calls (HumanEval's `candidate` renamed to the entry point),
    whitespace-free, for `leaks`."""
    name = entry_point(doc)
    sources = list(doc.get("test_list") or []) + list(doc.get("challenge_test_list") or [])
    if doc.get("test"):
        sources.append(doc["test"])
    out: list[str] = []
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assert, ast.Call)):
                text = ast.unparse(node).replace("candidate(", f"{name}(")
                if isinstance(node, ast.Call) and (not text.startswith(f"{name}(") or _no_data(node)):
                    continue
                out.append(_squash(text))
    return unique(out)


def _no_data(call: ast.Call) -> bool:
    """`f(lst)` carries no test data (the signature itself reads so); `f([1, 2])` does."""
    return all(isinstance(a, ast.Name) for a in [*call.args, *(k.value for k in call.keywords)])


def leaks(prompt: str, doc: dict[str, Any]) -> list[str]:
    """Hidden asserts or calls of the entry point that appear verbatim in `prompt` (want: none).
    A call the task statement itself spells out (MBPP: "... with fib(0) = 0") is public, not a leak."""
    flat, statement = _squash(prompt), _squash(str(doc.get("text") or ""))
    return [s for s in hidden_snippets(doc) if s in flat and s not in statement]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("'", '"')


def check_no_leak(prompts: Sequence[str], docs: Sequence[dict[str, Any]]) -> None:
    for prompt, doc in zip(prompts, docs, strict=True):
        found = leaks(prompt, doc)
        if found:
            raise DataError(f"{doc.get('task_id')}: the test prompt contains hidden tests: {found[:3]}")
