"""From sampled solutions to CodeT and LEVER scores: generate tests with the model, run every test
against every solution (batched, cached), score each candidate's likelihood, rank.

Shared by the evaluate stage (benchmark test split) and the verifier stage (MBPP train split):
both describe their candidates the same way, so the verifier sees at training time exactly what
it is given at evaluation time. The model is reached through `engine.Engine` only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sophia.evaluate import code, codet, execbatch, lever, sandbox, testgen
from sophia.evaluate.engine import Engine
from sophia.evaluate.execcache import Cache
from sophia.evaluate.scoring import summarize

log = logging.getLogger(__name__)
RERANK = "rerank.jsonl"
# Prompts cut to fit the window, gated by evaluate.max_truncated_share like the benchmark's own.
PURPOSES = ("tests", "logprobs", "verifier")
VERIFIER_BENCHMARK = "mbpp"  # LEVER's verifier trains on its train split: elsewhere a transfer result


@dataclass
class Problem:
    """One problem's sampled candidates and everything measured about them."""
    doc: dict[str, Any]
    context: str  # the solution prompt lm-eval sent (few-shot included)
    completions: list[str]
    correct: list[bool] = field(default_factory=list)  # gold tests (labels; never a feature)
    tests: list[str] = field(default_factory=list)
    test_counts: list[int] = field(default_factory=list)  # how often each test was generated
    results: list[execbatch.Result] = field(default_factory=list)
    logprobs: list[tuple[float, int]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return code.problem_id(self.doc)

    @property
    def programs(self) -> list[str]:
        return [code._source(self.doc, c) for c in self.completions]

    @property
    def text(self) -> str:
        return self.doc.get("prompt") or self.doc.get("text") or ""

    def verifier_texts(self) -> list[str]:
        """LEVER's verifier input of each candidate: problem, program, execution result."""
        return [lever.verifier_text(self.text, prog, lever.execution_text(self.tests, r.error, r.error_detail,
                                                                          r.codes, r.details))
                for prog, r in zip(self.programs, self.results, strict=True)]


def sampled_problems(samples: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """The problems of lm-eval's sampled task (the n completions drawn for pass@k)."""
    out = []
    for task, rows in samples.items():
        if not task.endswith("_sampled"):
            continue
        for row in rows:
            resps = row["resps"][0] if row["resps"] and isinstance(row["resps"][0], list) else row["resps"]
            out.append(Problem(row["doc"], row["arguments"][0][0], list(resps)))
    return out


def test_prompts(problems: Sequence[Problem]) -> list[str]:
    """CodeT's test prompts, from the visible fields only and checked against every hidden test."""
    prompts = [testgen.test_prompt(testgen.visible(p.doc)) for p in problems]
    testgen.check_no_leak(prompts, [p.doc for p in problems])
    return prompts


def generate_tests(engine: Engine, problems: Sequence[Problem], rspec: dict[str, Any], seed: int) -> int:
    """m test completions per problem; their asserts that compile and call the entry point, each
    kept once with how often it was generated (CodeT's released scoring counts that). Returns the
    tokens generated."""
    spent = 0
    for i, (p, prompt) in enumerate(zip(problems, test_prompts(problems), strict=True)):
        name = testgen.entry_point(p.doc)
        texts = engine.sample(prompt, rspec["n_tests"], rspec["max_gen_toks"], rspec["temperature"],
                              rspec["top_p"], seed + i, "tests")
        spent += sum(t.tokens for t in texts)
        generated = [a for t in texts for a in testgen.extract_asserts(t.text, name, rspec["max_asserts"])]
        p.tests = testgen.unique(generated)
        p.test_counts = codet.multiplicities(p.tests, generated)
    return spent


def measure(problems: Sequence[Problem], engine: Engine, runner: execbatch.Runner, rspec: dict[str, Any],
            seed: int) -> dict[str, int]:
    """Tests, executions against them, and likelihoods, filled into `problems`; the tokens spent."""
    test_tokens = generate_tests(engine, problems, rspec, seed)
    jobs = [(prog, p.tests) for p in problems for prog in p.programs]
    results = iter(runner.run(jobs))
    pairs = [(p.context, c) for p in problems for c in p.completions]
    logprobs = iter(engine.mean_logprobs(pairs, "logprobs"))
    for p in problems:
        p.results = [next(results) for _ in p.completions]
        p.logprobs = [next(logprobs) for _ in p.completions]
    return {"test_tokens": test_tokens, "scored_tokens": sum(n for p in problems for _, n in p.logprobs)}


def codet_scores(p: Problem, weight: str) -> list[float]:
    """Each candidate's CodeT group score (for the verifier's features)."""
    by_member = {}
    for g in codet.group([r.passed() for r in p.results], [False] * len(p.results), weight, p.test_counts or None):
        for i in g.members:
            by_member[i] = g.score
    return [by_member[i] for i in range(len(p.results))]


def features(p: Problem, weight: str) -> list[dict[str, float]]:
    return lever.problem_features(p.text, p.programs, [r.error for r in p.results], [r.codes for r in p.results],
                                  p.logprobs, codet_scores(p, weight))


def rank(p: Problem, ks: Sequence[int], weight: str, p_verifier: Sequence[float] | None) -> dict[str, Any]:
    """Per-problem reranked scores: codet_pass@k for every k (k = 1 is CodeT's top pick), lever_pass@1."""
    passed = [r.passed() for r in p.results]
    row: dict[str, Any] = {"problem": p.id, "n_tests": len(p.tests)}
    for k in sorted({1, *ks}):
        if k <= len(p.results):
            row[f"codet_pass@{k}"] = codet.pass_at_k(passed, p.correct, k, weight, p.test_counts or None)
    if p_verifier is not None:
        keys = [lever.execution_key(r.error, r.codes) for r in p.results]
        row["lever_pass@1"] = lever.pass_at_1(keys, p.programs, [lp for lp, _ in p.logprobs], p_verifier,
                                              p.correct)
    return row


def record(p: Problem, p_verifier: Sequence[float] | None) -> dict[str, Any]:
    """One line of rerank.jsonl: the problem's tests and what each candidate did."""
    return {"problem": p.id, "tests": p.tests, "test_counts": p.test_counts, "candidates": [
        {"sample": i, "correct": ok, "loads": r.error is None, "error": r.error_detail or r.error, "codes": r.codes,
         "details": r.details, "mean_logprob": lp, "tokens": nt,
         **({"p_verifier": p_verifier[i]} if p_verifier is not None else {})}
        for i, (ok, r, (lp, nt)) in enumerate(zip(p.correct, p.results, p.logprobs, strict=True))]}


def verifier_held_out(folder: Path | None) -> dict[str, Any] | None:
    """The verifier's own held-out measures (AUC, reranked pass@1, seconds), and the feature model's
    beside an LM verifier, from its verifier.json: the report shows them with the LEVER column."""
    path = Path(folder) / "verifier.json" if folder else None
    if path is None or not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8"))
    keep = ("auc", "brier", "reranked_pass@1", "seconds", "held_out_problems", "held_out_candidates")
    measured = {info["held_out"].get("model", info.get("kind")): info["held_out"], **(info.get("compared") or {})}
    return {name: {k: h.get(k) for k in keep} for name, h in measured.items()}


def gate(cut: dict[str, Any], allowed: float, where: str) -> None:
    """Reranking's own prompts obey evaluate.max_truncated_share like the benchmark's."""
    from sophia.evaluate.results import check_truncation

    check_truncation(where, cut, allowed)


def attach(scores: dict[str, Any], out: Path, samples: dict[str, list[dict[str, Any]]],
           records: Sequence[dict[str, Any]], engine: Engine, box: sandbox.Sandbox, espec: dict[str, Any],
           verifier: Any | None, transfer: bool = False) -> list[Problem]:
    """The evaluate stage's reranking: adds codet_pass@k and lever_pass@1 (with intervals) to
    `scores["metrics"]` and each problem's row, the cost and prompt cuts to `scores["rerank"]`,
    and writes `rerank.jsonl` into `out`. `verifier`: a loaded verifier (`verifiers.load`) or None;
    `transfer`: it was trained on another benchmark (LEVER's MBPP verifier applied to HumanEval).
    Returns the measured problems (self-debugging reuses their tests)."""
    rspec, bspec = espec["rerank"], scores["settings"]
    if not rspec["enabled"] or bspec["n_samples"] < 2:
        scores["rerank"] = {"skipped": "evaluate.rerank.enabled is false" if not rspec["enabled"]
                            else "needs n_samples >= 2 sampled solutions"}
        return []
    start = time.perf_counter()
    problems = sampled_problems(samples)
    label = {(r["problem"], r["sample"]): r["status"] == sandbox.PASSED for r in records if r["mode"] == "sampled"}
    for p in problems:
        p.correct = [label[(p.id, i)] for i in range(len(p.completions))]
    cache = Cache(rspec["cache"])
    try:
        runner = execbatch.Runner(box, rspec["test_timeout_s"], cache, espec["sandbox"]["workers"])
        tokens = measure(problems, engine, runner, rspec, espec["seed"])
    finally:
        cache.close()
    if verifier is None:
        log.warning("no verifier: lever_pass@1 is not scored")
    predicted = (verifier.predict(problems, rspec["weight"], engine.cuts) if verifier is not None
                 else [None] * len(problems))
    cut = engine.cuts.report(PURPOSES)
    gate(cut, espec["max_truncated_share"], f"{scores['benchmark']} reranking")
    rows = {}
    with open(out / RERANK, "w", encoding="utf-8") as fh:
        for p, pv in zip(problems, predicted, strict=True):
            rows[p.id] = rank(p, bspec["k"], rspec["weight"], pv)
            fh.write(json.dumps(record(p, pv), ensure_ascii=False) + "\n")
    names = [n for n in (*(f"codet_pass@{k}" for k in sorted({1, *bspec["k"]})), "lever_pass@1")
             if any(n in r for r in rows.values())]
    for name in names:
        scores["metrics"][name] = summarize([r[name] for r in rows.values() if r.get(name) is not None],
                                            espec["confidence"])
    if "lever_pass@1" in scores["metrics"] and transfer:  # the table and card say so beside the number
        scores["metrics"]["lever_pass@1"]["transfer_from"] = f"{VERIFIER_BENCHMARK} train"
    for row in scores.get("problems", []):
        row.update({k: v for k, v in rows.get(row["problem"], {}).items() if k != "problem"})
    n_tests = [len(p.tests) for p in problems]
    scores["rerank"] = {
        "settings": rspec, "verifier": getattr(verifier, "folder", None) and str(verifier.folder),
        "verifier_held_out": verifier_held_out(getattr(verifier, "folder", None)),
        "verifier_kind": verifier.kind if verifier else None, "lever_transfer": bool(verifier and transfer),
        "engine": engine.name, "valid_tests": sum(n_tests), "problems_without_tests": sum(n == 0 for n in n_tests),
        "truncation": {**cut, "allowed": espec["max_truncated_share"]},
        "cost": {**runner.stats.to_dict(), **tokens, "wall_seconds": time.perf_counter() - start,
                 "candidates": sum(len(p.completions) for p in problems)},
    }
    return problems
