"""Self-debugging: the feedback a failing program gets, the revision prompt, and the rounds run
through a scripted engine (the same interface transformers and vLLM implement), the real sandbox,
batch runner and cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sophia.evaluate import engine, execbatch, rerank, sandbox, selfdebug
from sophia.evaluate.execcache import Cache

DOC = {"task_id": "X/0", "entry_point": "add",
       "prompt": ('def add(a, b):\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    >>> add(1, 1)\n    2\n'
                  '    """\n'),
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}
SPEC = {"rounds": 2, "max_gen_toks": 16, "feedback_chars": 500,
        "template": "$program\n# The code above fails a test:\n$feedback\n# A corrected version:\n$prompt"}


class Scripted:
    """An engine whose greedy revisions are given: each prompt's answer is the next of `answers`."""
    name = "scripted"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers, self.prompts, self.cuts = list(answers), [], engine.Cuts(2048)

    def greedy(self, prompts: Sequence[str], max_new_tokens: int, purpose: str,
               stop: Sequence[str] = ()) -> list[engine.Generated]:
        self.prompts += prompts
        for _ in prompts:
            self.cuts.add(purpose, False)
        return [engine.Generated(self.answers.pop(0), 7) for _ in prompts]

    def sample(self, *args: Any, **kwargs: Any) -> list[engine.Generated]:
        raise AssertionError("self-debugging revises greedily")

    def mean_logprobs(self, *args: Any, **kwargs: Any) -> list[tuple[float, int]]:
        raise AssertionError("not used")


def test_visible_examples_are_the_prompts_doctests() -> None:
    assert selfdebug.visible_examples(DOC) == ["assert add(2, 3) == 5", "assert add(1, 1) == 2"]
    assert selfdebug.visible_examples({"task_id": 1, "text": "add", "test_list": ["assert add(1, 2) == 3"]}) == []


def test_feedback_names_the_failing_test_and_what_it_saw() -> None:
    tests = ["assert add(2, 3) == 5", "assert add(1, 1) == 2"]
    assert selfdebug.first_failure(tests, execbatch.Result(None, "PF", ["returned 5", "returned 0"])) == \
        "assert add(1, 1) == 2  # AssertionError; returned 0"
    assert selfdebug.first_failure(tests, execbatch.Result(None, "PP", ["", ""])) is None
    crash = execbatch.Result(None, "YP", ["TypeError: bad operand (solution line 2)", ""])
    assert selfdebug.first_failure(tests, crash) == "assert add(2, 3) == 5  # TypeError: bad operand (solution line 2)"
    broken = execbatch.Result("SyntaxError", "DD", [], "SyntaxError: invalid syntax (solution.py, line 2)")
    assert selfdebug.first_failure(tests, broken) == \
        "The code does not run: SyntaxError: invalid syntax (solution.py, line 2)"
    prompt = selfdebug.revision_prompt(SPEC["template"], "PROMPT", "def add(a, b):\n    return a - b\n",
                                       "line one\nline two", 500)
    assert prompt == ("def add(a, b):\n    return a - b\n# The code above fails a test:\n# line one\n# line two\n"
                      "# A corrected version:\nPROMPT")


def test_rounds_revise_only_failing_programs_and_score_each_round(tmp_path: Path) -> None:
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=5), "bwrap" if sandbox.bwrap_available() else "process")
    # Three samples: right, wrong (a - b), wrong (a * b). Round 1 fixes the first wrong one and
    # breaks nothing; round 2 fixes the other.
    p = rerank.Problem(DOC, DOC["prompt"], ["    return a + b\n", "    return a - b\n", "    return a * b\n"],
                       correct=[True, False, False], tests=["assert add(0, 0) == 0"])
    eng = Scripted(["    return a + b\n", "    return b * a\n", "    return b + a\n"])
    runner = execbatch.Runner(box, 1.0, Cache(tmp_path / "c.sqlite"), workers=2)
    done = selfdebug.run([p], "humaneval", eng, runner, box, SPEC, 16, 2, 0.9)
    assert [r["revised"] for r in done["rounds"]] == [2, 1]
    assert done["metrics"]["selfdebug_pass@1_round1"]["value"] == pytest.approx(2 / 3)
    assert done["metrics"]["selfdebug_pass@1_round2"]["value"] == 1.0
    assert [r["tokens"] for r in done["rounds"]] == [14, 7] and done["rounds"][0]["gold_executions"] == 2
    assert done["metrics"]["selfdebug_pass@1_round2"]["tokens"] == 21  # spent up to that round
    assert done["feedback_tests"] == 3  # two doctest examples and the generated test
    assert "# assert add(2, 3) == 5  # AssertionError; returned -1" in eng.prompts[0]
    assert eng.prompts[0].endswith(DOC["prompt"])
    assert done["completions"][0] == ["    return a + b\n", "    return a + b\n", "    return b + a\n"]
    # Round 2 ran the feedback tests only for the one new program (b * a): the revised a + b is the
    # first sample's program, so its outcomes came from the cache.
    assert done["rounds"][0]["feedback_executions"] == 9 and done["rounds"][1]["feedback_executions"] == 3
