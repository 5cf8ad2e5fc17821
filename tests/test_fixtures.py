"""The data the project ships for its offline default, checked as committed: the two instruction
datasets (hub schemas, rows per language, Python that compiles, SQL that parses, no repeats) and
the benchmark items laid out as hub repositories (the splits each README names exist, one schema
per file, reference answers are right)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import EVAL_FIXTURES, FIXTURES

CODEALPACA_KEYS = ["instruction", "input", "output"]
TINY_CODES_KEYS = ["prompt", "main_topic", "subtopic", "adjective", "action_verb", "scenario", "target_audience",
                   "programming_language", "common_sense_topic", "idx", "response"]
TINY_CODES_ROWS = {"C++": 48, "Java": 48, "Ruby": 48, "Rust": 48, "Bash": 48, "Python": 8, "JavaScript": 8}
# The tables the SQL answers query; EXPLAIN compiles a statement against them without running it.
SQL_SCHEMA = """
CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, department TEXT, salary REAL, hire_date TEXT);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, email TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL, order_date TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, category TEXT);
CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT, grade INTEGER);
"""
SQL = re.compile(r"(SELECT|UPDATE|INSERT|DELETE|CREATE|WITH) ")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def kind(row: dict) -> str:
    """What a CodeAlpaca answer is: SQL, a one-sentence explanation, JavaScript, else Python."""
    out = row["output"]
    if SQL.match(out):
        return "sql"
    if "\n" not in out and out.endswith(".") and out.count(" ") >= 3:
        return "text"
    return "javascript" if re.search(r"\bJavaScript\b", row["instruction"]) else "python"


def test_codealpaca_rows() -> None:
    data = rows(FIXTURES / "codealpaca_mini.jsonl")
    assert len(data) == 150
    assert all(list(r) == CODEALPACA_KEYS and all(isinstance(v, str) for v in r.values()) for r in data)
    assert all(r["instruction"].strip() and r["output"].strip() for r in data)
    assert len({(r["instruction"], r["input"]) for r in data}) == len(data), "repeated rows"
    kinds = [kind(r) for r in data]
    assert {k: kinds.count(k) for k in set(kinds)} == {"python": 94, "javascript": 30, "sql": 14, "text": 12}
    db = sqlite3.connect(":memory:")
    db.executescript(SQL_SCHEMA)
    for r, k in zip(data, kinds, strict=True):
        if k == "python":
            compile(r["output"], r["instruction"], "exec")
        elif k == "sql":
            db.execute("EXPLAIN " + r["output"])


def test_tiny_codes_rows() -> None:
    data = rows(FIXTURES / "tiny_codes_mini.jsonl")
    assert all(list(r) == TINY_CODES_KEYS for r in data)
    assert all(isinstance(v, int) if k == "idx" else isinstance(v, str) and v.strip()
               for r in data for k, v in r.items())
    languages = [r["programming_language"] for r in data]
    assert {lang: languages.count(lang) for lang in set(languages)} == TINY_CODES_ROWS
    assert len({r["prompt"] for r in data}) == len(data) and len({r["idx"] for r in data}) == len(data)
    for r in data:
        fences = re.findall(r"```(\w+)\n(.*?)\n```", r["response"], re.S)
        assert len(fences) == 1, r["idx"]
        if r["programming_language"] == "Python":
            compile(fences[0][1], f"row {r['idx']}", "exec")


@pytest.mark.parametrize("readme", sorted(EVAL_FIXTURES.glob("*/*/README.md")), ids=lambda p: p.parent.name)
def test_benchmark_items_are_laid_out_as_their_hub_repository(readme: Path) -> None:
    header = yaml.safe_load(readme.read_text(encoding="utf-8").split("---")[1])
    files = {readme.parent / f["path"] for c in header["configs"] for f in c["data_files"]}
    assert files == set(readme.parent.glob("*/*.jsonl"))
    for f in files:
        items = rows(f)
        assert items and all(list(i) == list(items[0]) for i in items), f


def test_benchmark_reference_answers_are_right() -> None:
    mbpp = [i for f in (EVAL_FIXTURES / "google-research-datasets" / "mbpp" / "full").glob("*.jsonl") for i in rows(f)]
    for item in mbpp:  # the project's own reference solutions pass their own tests
        namespace: dict = {}
        exec(item["code"] + "\n" + "\n".join(item["test_list"]), namespace)
    bbh = EVAL_FIXTURES / "SaylorTwift" / "bbh"
    for sub in ("boolean_expressions", "multistep_arithmetic_two"):
        for item in rows(bbh / sub / "test.jsonl"):
            assert str(eval(item["input"].removesuffix(" is").removesuffix(" ="))) == item["target"], item
    for item in rows(bbh / "word_sorting" / "test.jsonl"):
        assert item["target"] == " ".join(sorted(item["input"].split("List: ")[1].split()))
    for item in rows(EVAL_FIXTURES / "openai" / "gsm8k" / "main" / "test.jsonl"):
        steps = re.findall(r"<<([^=]+)=([^>]+)>>", item["answer"])
        assert steps and all(eval(expr) == float(value) for expr, value in steps), item
        assert item["answer"].endswith(f"#### {steps[-1][1]}")
