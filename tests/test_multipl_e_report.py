"""MultiPL-E in the report: its own group, "Coding (curriculum languages)", as the macro mean of its
benchmarks' greedy pass@1 with pass@10 beside each, protocol cards that name the toolchain and its
commands, and a cache key and settings of their own (no reranking, no verifier)."""

from __future__ import annotations

from typing import Any

import pytest
from sophia.evaluate import cache, protocol, toolchain
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.sandbox import Limits
from sophia.evaluate.scoring import summarize
from sophia.report import table

KNOWN = {"humaneval-cpp": [1, 0, 0, 0], "mbpp-rs": [1, 1, 0, 0], "humaneval": [1, 1]}


def scores(bench: str, values: list[int]) -> dict[str, Any]:
    metrics = {"pass@1": summarize(values, 0.9), "pass@10": summarize([1.0] * len(values), 0.9)}
    return {"model": "base", "benchmark": bench, "metrics": metrics, "score": metrics["pass@1"],
            "protocol": {"benchmark": bench}}


def test_the_group_is_the_mean_of_its_languages_and_marks_what_is_missing() -> None:
    per_bench = {b: scores(b, v) for b, v in KNOWN.items()}
    groups = table.group_scores(per_bench, 0.9)
    assert groups["coding_langs"]["value"] == pytest.approx((0.25 + 0.5) / 2)
    assert groups["coding_langs"]["members"] == ["humaneval-cpp", "mbpp-rs"]
    assert len(groups["coding_langs"]["expected"]) == 10 and groups["coding"]["value"] == 1.0
    rows = table.build_rows({"base": per_bench}, ["base"], {}, 0.9)
    md = table.markdown(rows, [], 0.9)
    assert "[Coding (curriculum languages)](protocol.md#coding_langs)" in md
    assert "37.5 [" in md and "(2/10)" in md
    cell = next(ln for ln in md.splitlines() if ln.startswith("| base |") and "pass@10" in ln)
    assert "25.0 [" in cell and "pass@10 100.0" in cell
    python_only = table.build_rows({"base": {"humaneval": per_bench["humaneval"]}}, ["base"], {}, 0.9)
    assert "curriculum languages" not in table.markdown(python_only, [], 0.9).split("\n\n| model")[1]


def test_cards_name_the_toolchain_and_its_steps() -> None:
    bench = BENCHMARKS["humaneval-java"]
    limits = toolchain.describe("java", Limits())
    card = protocol.card(bench, {"limit": 1}, {"configs": {}}, 1, {}, 0.0, limits, None)
    assert card["group"] == "coding_langs" and card["toolchain"].startswith("javac ")
    text = protocol.markdown({"humaneval-java": {"base": card}})
    assert "javac -J-Xmx512m" in text and "java -Xmx512m" in text and "-ea -cp .:/usr/share/java/javatuples.jar" in text
    assert "**Group coding_langs**" in text and "C++, Java, Rust, Ruby and Bash" in text


def test_no_reranking_no_verifier_and_the_toolchain_in_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    espec = {"benchmarks": {"humaneval": {"n_samples": 10}, "humaneval-rs": {"n_samples": 10}},
             "rerank": {"enabled": True}, "selfdebug": {"rounds": 1}, "sandbox": {"timeout_s": 5}}
    assert cache.uses_verifier(espec, "humaneval") and not cache.uses_verifier(espec, "humaneval-rs")
    section = cache.benchmark_spec(espec, "humaneval-rs")["evaluate"]
    assert "sandbox" in section and "rerank" not in section and "selfdebug" not in section
    identity = {"src": "s", "data": None, "packages": {}, "device": "cpu", "inputs": {"model": "run"}}
    key = cache.key(espec, "base", "humaneval-rs", identity)
    monkeypatch.setattr(cache.languages, "version", lambda lang: "rustc 9.9.9")
    assert cache.key(espec, "base", "humaneval-rs", identity) != key
