"""benchmarks/make_times.py's reading of make's output and its table."""

from __future__ import annotations

from conftest import benchmark_script

make_times = benchmark_script("make_times")


def test_the_closing_pytest_line_is_the_steps_test_summary() -> None:
    log = ("ruff check .\nAll checks passed!\n....\n"
           "== 236 passed, 160 deselected, 6 warnings in 95.21s (0:01:35) ==\n")
    assert make_times.tests_summary(log) == "236 passed, 160 deselected, 6 warnings in 95.21s (0:01:35)"
    assert make_times.tests_summary("pip install ...\nSuccessfully installed torch\n") is None
    assert make_times.tests_summary("== 1 failed, 3 passed in 2.00s ==\n") == "1 failed, 3 passed in 2.00s"


def test_the_table_gives_minutes_and_seconds_per_step() -> None:
    rows = [{"step": "setup-check", "seconds": 125.4, "rc": 0, "tests": None},
            {"step": "check", "seconds": 59.6, "rc": 0, "tests": "236 passed in 59.00s"}]
    assert make_times.table(rows).splitlines()[2:] == ["| make setup-check | 2 min 5 s | 0 |  |",
                                                       "| make check | 1 min 0 s | 0 | 236 passed in 59.00s |"]
