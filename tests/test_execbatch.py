"""The batched test runner: one process per solution, a time budget per test, resumption after a
test that took the process down, what each test saw, and the cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sophia.evaluate import execbatch, sandbox
from sophia.evaluate.execcache import Cache


@pytest.fixture(scope="module")
def box() -> sandbox.Sandbox:
    isolation = "bwrap" if sandbox.bwrap_available() else "process"
    return sandbox.Sandbox(sandbox.Limits(timeout_s=10), isolation)


def test_batch_runner_survives_a_crashing_test_and_caches(box: sandbox.Sandbox, tmp_path: Path) -> None:
    solution = ("import os, sys\n"
                "def f(x):\n"
                "    if x == 3:\n        os._exit(7)\n"
                "    if x == 4:\n        while True: pass\n"
                "    if x == 5:\n        print('x' * 100000)\n        sys.exit(0)\n"
                "    return 1 / x\n")
    tests = ["assert f(1) == 1", "assert f(2) == 1", "assert f(0) == 1", "assert f(3) == 1",
             "assert f(1) == 1.0", "assert f(4) == 1", "assert g(1)", "assert f(5) == 1", "assert f(1) == 1"]
    cache = Cache(tmp_path / "cache.sqlite")
    runner = execbatch.Runner(box, 0.5, cache, workers=2)
    broken = "def g(:\n"
    results = runner.run([(solution, tests), (broken, tests[:2]), ("def f(x): return 1\n", [])])
    assert results[0].error is None
    assert results[0].codes == "PFZCPTNXP"  # os._exit loses the process: the rest run in a new one
    assert results[0].passed() == {0, 4, 8}
    # What each test saw: the value returned, or the error and the solution's line that raised it.
    assert results[0].details[:3] == ["returned 1.0", "returned 0.5",
                                      "ZeroDivisionError: division by zero (solution line 10)"]
    assert results[0].details[6].startswith("NameError: name 'g' is not defined")
    assert results[1].error == "SyntaxError" and results[1].codes == "DD"
    assert results[1].error_detail.startswith("SyntaxError: ")
    assert results[2].error is None and results[2].codes == ""
    first = runner.stats.to_dict()
    assert first["processes"] == 4 and first["restarts"] == 1 and first["cached_tests"] == 0
    # A rerun with one more test runs only that one (in one process), the rest come from the cache.
    again = execbatch.Runner(box, 0.5, Cache(tmp_path / "cache.sqlite"), workers=2)
    results = again.run([(solution, [*tests, "assert f(-1) == -1"]), (broken, tests[:2])])
    assert results[0].codes == "PFZCPTNXPP" and results[1].codes == "DD"
    assert results[0].details[1] == "returned 0.5"  # from the cache
    stats = again.stats.to_dict()
    assert stats["processes"] == 1 and stats["executed_tests"] == 1 and stats["cached_tests"] == 9
    assert stats["cached_definitions"] == 2


def test_a_slow_correct_solution_gets_a_budget_per_test(tmp_path: Path) -> None:
    """Twelve tests of 0.3 s each: 3.6 s in all, beyond the sandbox's 1.5 s for one program, within
    each test's own 1 s. Every test passes; none is cut off by the test count."""
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=1.5),
                          "bwrap" if sandbox.bwrap_available() else "process")
    solution = "import time\ndef slow(x):\n    time.sleep(0.3)\n    return x\n"
    tests = [f"assert slow({i}) == {i}" for i in range(12)]
    result = execbatch.Runner(box, 1.0, Cache(None), workers=1).run([(solution, tests)])[0]
    assert result.codes == "P" * 12


def test_a_killed_batch_resumes_after_the_test_that_hung(tmp_path: Path) -> None:
    """A loop inside C code never returns to the interpreter, so no alarm ends it: the process is
    killed at its budget, that test is a timeout, and the tests after it run in a fresh process."""
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=1.0),
                          "bwrap" if sandbox.bwrap_available() else "process")
    solution = "def f(x):\n    if x < 0:\n        sum(range(10 ** 12))\n    return x\n"
    tests = ["assert f(1) == 1", "assert f(-1) == 1", "assert f(2) == 2", "assert f(3) == 0"]
    runner = execbatch.Runner(box, 0.5, Cache(tmp_path / "c.sqlite"), workers=1)
    start = time.monotonic()
    result = runner.run([(solution, tests)])[0]
    assert result.codes == "PTPF" and result.details[3] == "returned 3"
    assert runner.stats.processes == 2 and runner.stats.restarts == 1
    assert time.monotonic() - start < 1.0 + 4 * 0.5 + 5  # the first process's budget, not a hang


def test_instrumented_tests_keep_their_meaning() -> None:
    assert execbatch.instrument("assert f(1) == 2") == f"{execbatch.VALUE} = f(1)\nassert {execbatch.VALUE} == 2"
    assert execbatch.instrument("assert f(1)") == f"{execbatch.VALUE} = f(1)\nassert {execbatch.VALUE}"
    assert execbatch.instrument("assert 0 < f(1) < 3") == f"{execbatch.VALUE} = 0 < f(1) < 3\nassert {execbatch.VALUE}"
    assert execbatch.instrument("x = (") == "x = ("  # not Python: left for the harness to report
