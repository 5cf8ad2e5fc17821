"""Self-debugging (Chen et al. 2023, "Teaching Large Language Models to Self-Debug"), unit-test
feedback variant: every sampled program that fails a test it may see (the examples in its own
prompt, and the tests the model generated for CodeT) is shown to the model with the execution
feedback (the first failing assert, what the program returned or raised, the solution line that
raised it) and revised, for `rounds` rounds. A program that passes what it may see is kept.

Deviations from the paper: the revision is a greedy continuation of the benchmark's own prompt
after the feedback (one template, `evaluate.selfdebug.template`, no few-shot debugging
demonstrations, no explanation step); the feedback tests never include the hidden tests (MBPP's
prompt shows its tests to the model, but they are the scoring tests, so they are not fed back).

`selfdebug_pass@1_round{r}`: the share of a problem's n sampled programs that pass the hidden
tests after round r (round 0 is pass@1_sampled), with the tokens generated and the executions
each round cost. Executions go through the same sandbox, batch runner and cache as reranking;
generation through `engine.Engine`.
"""

from __future__ import annotations

import ast
import doctest
import string
import time
from collections.abc import Sequence
from typing import Any

from sophia.errors import ConfigError
from sophia.evaluate import code, execbatch, sandbox, testgen
from sophia.evaluate.engine import Engine
from sophia.evaluate.scoring import summarize

FEEDBACK_PURPOSE = "selfdebug"


def check(spec: dict[str, Any]) -> None:
    """The template names only $prompt, $program and $feedback (before any generation is spent)."""
    try:
        string.Template(spec["template"]).substitute(prompt="", program="", feedback="")
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"evaluate.selfdebug.template: {exc!r}; only $prompt, $program and $feedback may "
                          "appear (write a literal dollar as $$)") from None


def visible_examples(doc: dict[str, Any]) -> list[str]:
    """The doctest examples of the problem's own prompt (HumanEval's `>>> f(x)` / result lines) as
    asserts on the entry point; MBPP has none the model may see apart from its scoring tests."""
    prompt = doc.get("prompt")
    if not prompt or "entry_point" not in doc:
        return []
    try:
        examples = doctest.DocTestParser().get_examples(prompt)
    except ValueError:  # a malformed example block
        return []
    out = []
    for ex in examples:
        source = ex.source.strip()
        lines = []
        for line in ex.want.strip().splitlines():  # the docstring's closing quotes end the last example
            if line.strip().startswith(('"""', "'''")):
                break
            lines.append(line.strip())
        want = " ".join(lines)
        if not want or len(lines) > 1 or "\n" in source or doc["entry_point"] not in source:
            continue
        test = f"assert {source} == {want}"
        try:
            ast.parse(test)
        except SyntaxError:
            continue
        out.append(test)
    return testgen.unique(out)


def first_failure(tests: Sequence[str], result: execbatch.Result) -> str | None:
    """The feedback for one program: why it did not load, or its first failing test and what the
    test saw; None when it passes every test it may see."""
    if result.error is not None:
        return f"The code does not run: {result.error_detail or result.error}"
    for test, letter, detail in zip(tests, result.codes, result.details, strict=True):
        if letter != execbatch.PASS:
            outcome = execbatch.LETTERS.get(letter, "error")
            if detail.startswith(outcome):  # an error: its type leads the detail already
                return f"{test}  # {detail}"
            return f"{test}  # {outcome}" + (f"; {detail}" if detail else "")
    return None


def revision_prompt(template: str, context: str, program: str, feedback: str, chars: int) -> str:
    """The template filled: `$prompt` (the benchmark's prompt, last, so the model continues with a
    completion in the benchmark's own format), `$program`, `$feedback` (each line commented).
    `string.Template`, not `str.format`: braces in a config value would read as Snakemake wildcards."""
    text = feedback if len(feedback) <= chars else feedback[: chars - 3] + "..."
    commented = "\n".join("# " + line for line in text.splitlines())
    return string.Template(template).substitute(prompt=context, program=program.rstrip(), feedback=commented)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    ends = [text.find(s) for s in stop if s and s in text]
    return text[: min(ends)] if ends else text


def run(problems: Sequence[Any], bench_name: str, engine: Engine, runner: execbatch.Runner, box: sandbox.Sandbox,
        spec: dict[str, Any], max_gen_toks: int, workers: int, confidence: float) -> dict[str, Any]:
    """`rounds` of self-debugging on `problems` (`rerank.Problem`s with their gold labels and, when
    reranking ran, their generated tests). Returns the metrics by name and the per-round cost."""
    stop = code.builtin_config(bench_name)["generation_kwargs"].get("until") or []
    completions = [list(p.completions) for p in problems]
    correct = [list(p.correct) for p in problems]
    feedback_tests = [testgen.unique([*visible_examples(p.doc), *p.tests]) for p in problems]
    metrics: dict[str, dict[str, Any]] = {}
    rounds: list[dict[str, Any]] = []
    for r in range(1, spec["rounds"] + 1):
        start = time.perf_counter()
        before = runner.stats.executed_tests
        programs = [[code._source(p.doc, c) for c in comps] for p, comps in zip(problems, completions, strict=True)]
        jobs = [(prog, tests) for progs, tests in zip(programs, feedback_tests, strict=True) for prog in progs]
        seen = iter(runner.run(jobs))
        todo: list[tuple[int, int, str]] = []  # problem, sample, revision prompt
        for i, (p, progs) in enumerate(zip(problems, programs, strict=True)):
            for s, prog in enumerate(progs):
                why = first_failure(feedback_tests[i], next(seen))
                if why is not None:
                    todo.append((i, s, revision_prompt(spec["template"], p.context, prog, why,
                                                       spec["feedback_chars"])))
        revised = engine.greedy([t[2] for t in todo], max_gen_toks, FEEDBACK_PURPOSE, stop)
        gold = box.run_many([code.program(problems[i].doc, cut_at_stop(g.text, stop))
                             for (i, _, _), g in zip(todo, revised, strict=True)], workers)
        for (i, s, _), g, outcome in zip(todo, revised, gold, strict=True):
            completions[i][s] = cut_at_stop(g.text, stop)
            correct[i][s] = outcome.status == sandbox.PASSED
        name = f"selfdebug_pass@1_round{r}"
        metrics[name] = summarize([sum(c) / len(c) for c in correct if c], confidence)
        rounds.append({"round": r, "revised": len(todo), "tokens": sum(g.tokens for g in revised),
                       "feedback_executions": runner.stats.executed_tests - before, "gold_executions": len(gold),
                       "seconds": time.perf_counter() - start, "pass@1": metrics[name]["value"]})
        # what this round cost so far, beside its score (the report's cell)
        metrics[name]["tokens"] = sum(x["tokens"] for x in rounds)
        metrics[name]["executions"] = sum(x["feedback_executions"] + x["gold_executions"] for x in rounds)
    return {"metrics": metrics, "rounds": rounds, "feedback_tests": sum(len(t) for t in feedback_tests),
            "completions": completions}


def attach(scores: dict[str, Any], samples: dict[str, list[dict[str, Any]]], records: Sequence[dict[str, Any]],
           measured: Sequence[Any], benchmark: str, engine: Engine, box: sandbox.Sandbox,
           espec: dict[str, Any]) -> None:
    """The evaluate stage's self-debugging: `selfdebug_pass@1_round{r}` into `scores["metrics"]`,
    the rounds' cost and the template into `scores["selfdebug"]` (nothing when rounds is 0)."""
    from sophia.evaluate import rerank
    from sophia.evaluate.execcache import Cache

    spec, bspec = espec["selfdebug"], scores["settings"]
    if spec["rounds"] == 0:
        return
    problems = list(measured) or _labelled(rerank.sampled_problems(samples), records)
    if not problems:
        scores["selfdebug"] = {"skipped": "needs n_samples >= 2 sampled solutions"}
        return
    cache = Cache(espec["rerank"]["cache"])
    try:
        runner = execbatch.Runner(box, espec["rerank"]["test_timeout_s"], cache, espec["sandbox"]["workers"])
        budget = (spec["max_gen_toks"] or bspec["max_gen_toks"]
                  or code.builtin_config(benchmark)["generation_kwargs"].get("max_gen_toks", 256))
        done = run(problems, benchmark, engine, runner, box, spec, budget, espec["sandbox"]["workers"],
                   espec["confidence"])
    finally:
        cache.close()
    cut = engine.cuts.report([FEEDBACK_PURPOSE])
    rerank.gate(cut, espec["max_truncated_share"], f"{benchmark} self-debugging")
    scores["metrics"].update(done["metrics"])
    scores["selfdebug"] = {"settings": spec, "engine": engine.name, "rounds": done["rounds"],
                           "feedback_tests": done["feedback_tests"],
                           "tokens": sum(r["tokens"] for r in done["rounds"]),
                           "executions": sum(r["feedback_executions"] + r["gold_executions"] for r in done["rounds"]),
                           "truncation": {**cut, "allowed": espec["max_truncated_share"]}}


def _labelled(problems: list[Any], records: Sequence[dict[str, Any]]) -> list[Any]:
    label = {(r["problem"], r["sample"]): r["status"] == sandbox.PASSED for r in records if r["mode"] == "sampled"}
    for p in problems:
        p.correct = [label[(p.id, i)] for i in range(len(p.completions))]
    return problems
