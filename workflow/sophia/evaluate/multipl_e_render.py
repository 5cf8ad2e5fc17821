"""A small typed problem rendered as a MultiPL-E row in each curriculum language.

MultiPL-E translates a Python problem's signature, docstring and asserts into each language: the
prompt is the language's imports, the description as comments and the function's first line; the
tests close the function and call it as `candidate` from the language's own test entry point
(C++ and Rust `main`, Java's `Problem.main` run with `-ea`, Ruby's Test::Unit, Bash `set -e`).
This module writes the project's own problems in that layout, for the embedded default's
snapshot (`multipl_e_fixture`); it handles the few types those problems use (int, str, bool and
lists of int), not MultiPL-E's whole type system.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The stop sequences MultiPL-E's dataset gives each language's rows.
STOP_TOKENS = {"cpp": ["\n}"], "java": ["\n    }\n"], "rs": ["\n}"], "rb": ["\nclass", "\ndef", "\n#", "\n\n"],
               "sh": ["\n}"]}
JAVA_IMPORTS = ("java.util.*", "java.lang.reflect.*", "org.javatuples.*", "java.security.*", "java.math.*",
                "java.io.*", "java.util.stream.*")


@dataclass(frozen=True)
class Problem:
    suite: str  # humaneval or mbpp
    number: int
    name: str  # snake_case entry point
    params: tuple[tuple[str, str], ...]  # (name, type): int, str, bool, list[int]
    returns: str
    description: str
    tests: tuple[tuple[tuple[Any, ...], Any], ...]  # (arguments, expected result)

    @property
    def row_name(self) -> str:
        return f"fixture_{self.suite}_{self.number}_{self.name}"


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.title() for p in rest)


_TYPES = {
    "cpp": {"int": "long", "str": "std::string", "bool": "bool", "list[int]": "std::vector<long>"},
    "java": {"int": "long", "str": "String", "bool": "boolean", "list[int]": "ArrayList<Long>"},
    "rs": {"int": "isize", "str": "String", "bool": "bool", "list[int]": "Vec<isize>"},
}
_SH_TYPES = {"int": "an integer", "str": "a string", "bool": "a boolean", "list[int]": "a space-separated list"}


def literal(lang: str, value: Any, kind: str) -> str:
    if kind == "bool":
        return {"sh": f'"{str(value).lower()}"'}.get(lang, str(value).lower())
    if kind == "int":
        return {"java": f"{value}l", "sh": f'"{value}"'}.get(lang, str(value))
    if kind == "str":
        return {"rs": f'String::from({json.dumps(value)})'}.get(lang, json.dumps(value))
    items = [literal(lang, v, "int") for v in value]
    if lang == "cpp":
        return f"std::vector<long>({{{', '.join(items)}}})"
    if lang == "java":
        return f"new ArrayList<Long>(Arrays.asList({', '.join(f'(long){i}' for i in items)}))"
    if lang == "rs":
        return f"vec![{', '.join(items)}]" if items else "Vec::<isize>::new()"
    if lang == "rb":
        return f"[{', '.join(items)}]"
    return '"' + " ".join(str(v) for v in value) + '"'


def _comment(prefix: str, text: str) -> str:
    return "".join(f"{prefix} {line}".rstrip() + "\n" for line in text.strip().splitlines())


def prompt(p: Problem, lang: str) -> str:
    if lang == "cpp":
        args = ", ".join(f"{_TYPES['cpp'][t]} {n}" for n, t in p.params)
        return (f"#include<assert.h>\n#include<bits/stdc++.h>\n{_comment('//', p.description)}"
                f"{_TYPES['cpp'][p.returns]} {p.name}({args}) {{\n")
    if lang == "java":
        args = ", ".join(f"{_TYPES['java'][t]} {n}" for n, t in p.params)
        imports = "".join(f"import {m};\n" for m in JAVA_IMPORTS)
        return (f"{imports}class Problem {{\n{_comment('    //', p.description)}"
                f"    public static {_TYPES['java'][p.returns]} {camel(p.name)}({args}) {{\n")
    if lang == "rs":
        args = ", ".join(f"{n}: {_TYPES['rs'][t]}" for n, t in p.params)
        return f"{_comment('///', p.description)}fn {p.name}({args}) -> {_TYPES['rs'][p.returns]} {{\n"
    if lang == "rb":
        return f"{_comment('#', p.description)}def {p.name}({', '.join(n for n, _ in p.params)})\n"
    notes = "".join(f"# ${i} is {_SH_TYPES[t]}\n" for i, (_, t) in enumerate(p.params, 1))
    return f"#!/bin/bash\n{_comment('#', p.description)}#\n{notes}{p.name}() {{\n"


def _call(p: Problem, lang: str, args: tuple[Any, ...]) -> str:
    parts = [literal(lang, a, t) for a, (_, t) in zip(args, p.params, strict=True)]
    if lang == "sh":
        return f"$(candidate {' '.join(parts)})"
    if lang == "rb":
        return f"candidate.call({', '.join(parts)})"
    return f"{camel(p.name) if lang == 'java' else 'candidate'}({', '.join(parts)})"


def tests(p: Problem, lang: str) -> str:
    checks = []
    for args, expected in p.tests:
        call, want = _call(p, lang, args), literal(lang, expected, p.returns)
        if lang == "rs":
            checks.append(f"    assert_eq!({call}, {want});")
        elif lang == "rb":
            checks.append(f"    assert_equal({want}, {call})")
        elif lang == "sh":
            checks.append(f"    [[ {call} = {want} ]]")
        elif lang == "java" and p.returns in ("str", "list[int]"):
            checks.append(f"    assert({call}.equals({want}));")
        else:
            checks.append(f"    assert({call} == ({want}));")
    body = "\n".join(checks)
    if lang == "cpp":
        return f"}}\nint main() {{\n    auto candidate = {p.name};\n{body}\n}}\n"
    if lang == "java":
        return f"    }}\n    public static void main(String[] args) {{\n{body}\n    }}\n\n}}\n"
    if lang == "rs":
        return f"}}\n\nfn main() {{\n    let candidate = {p.name};\n{body}\n}}\n"
    if lang == "rb":
        return (f"require 'test/unit'\nclass TestHumanEval < Test::Unit::TestCase\n  def test_{p.name}\n"
                f"    candidate = method(:{p.name})\n{body}\n  end\nend\n")
    return (f"}}\n\ncandidate() {{\n    {p.name} \"$@\"\n}}\n\nset -e\nrun_test() {{\n{body}\n}}\n\n"
            "run_test")


def row(p: Problem, lang: str) -> dict[str, Any]:
    """One row in the hub dataset's schema."""
    return {"name": p.row_name, "language": lang, "prompt": prompt(p, lang), "doctests": "transform",
            "original": f"sophia/{p.suite}/{p.row_name}.py", "prompt_terminology": "reworded",
            "tests": tests(p, lang), "stop_tokens": STOP_TOKENS[lang]}
