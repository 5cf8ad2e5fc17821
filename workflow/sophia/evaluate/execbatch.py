"""Every generated test against every solution, one sandboxed process per solution.

The process (an ordinary `Sandbox.run` program, so it gets whatever isolation the sandbox has)
defines the solution once, then runs its tests one by one, each under a SIGALRM time limit and a
catch-all, printing one outcome letter per test as it goes. A Python exception in one test is
that test's outcome; the others still run. A test that takes the whole process down (segfault,
`os._exit`, a timeout the program swallows) shows up as a short progress line: that test is
marked `C`/`T` and the remaining tests run in a fresh process. Definitions failing are recorded
once per solution. Results are cached by content hash (`execcache`).

The solution runs with `__name__` unset in its namespace (the reference harness's semantics), and
its prints go to a sink so they cannot crowd the progress line out of the sandbox's output cap.
A solution that rewrites the harness's own objects could forge letters: that is adversarial,
not a model mistake (the same caveat as the sandbox's pass token).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sophia.evaluate import sandbox as sb
from sophia.evaluate.execcache import Cache, digest

PASS, FAIL, TIMEOUT, CRASH, OTHER, NOT_LOADED = "P", "F", "T", "C", "E", "D"
# One letter per outcome keeps a progress line of hundreds of tests inside the output cap.
EXCEPTIONS = {"NameError": "N", "TypeError": "Y", "ValueError": "V", "IndexError": "I", "KeyError": "K",
              "AttributeError": "A", "ZeroDivisionError": "Z", "RecursionError": "R", "MemoryError": "M",
              "SystemExit": "X", "UnboundLocalError": "U", "NotImplementedError": "L", "StopIteration": "S"}
LETTERS = {PASS: "passed", FAIL: "AssertionError", TIMEOUT: "timeout", CRASH: "crash", OTHER: "other",
           NOT_LOADED: "solution did not load",
           **{v: k for k, v in EXCEPTIONS.items()}}
MAX_TESTS_PER_PROCESS = 1000

_PROGRAM = r'''
import io as _io, signal as _signal, sys as _sys
_SOLUTION = {solution!r}
_TESTS = {tests!r}
_CODES = {codes!r}
_out = _sys.stdout
class _Timeout(BaseException):
    pass
def _alarm(signum, frame):
    raise _Timeout()
class _Sink(_io.TextIOBase):
    def write(self, s):
        return len(s)
_signal.signal(_signal.SIGALRM, _alarm)
_sys.stdout = _Sink()
_ns = {{}}
try:
    exec(compile(_SOLUTION, "solution.py", "exec"), _ns)
except BaseException as _e:
    _out.write("\n{nonce}!" + type(_e).__name__ + "\n")
    _out.flush()
else:
    _out.write("\n{nonce}:")
    _out.flush()
    for _t in _TESTS:
        try:
            _signal.setitimer(_signal.ITIMER_REAL, {limit!r})
            exec(compile(_t, "test.py", "exec"), _ns)
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _c = "P"
        except _Timeout:
            _c = "T"
        except AssertionError:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _c = "F"
        except BaseException as _e:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _c = _CODES.get(type(_e).__name__, "E")
        _out.write(_c)
        _out.flush()
    _out.write("\n")
    _out.flush()
'''
HARNESS_DIGEST = digest(_PROGRAM, repr(sorted(EXCEPTIONS.items())))


@dataclass
class Result:
    """One solution against its tests: `error` is why the solution itself did not load (None when
    it did); `codes` has one letter per test, in order."""
    error: str | None
    codes: str

    def passed(self) -> frozenset[int]:
        return frozenset(i for i, c in enumerate(self.codes) if c == PASS)


@dataclass
class Stats:
    processes: int = 0
    executed_tests: int = 0
    cached_tests: int = 0
    cached_definitions: int = 0
    restarts: int = 0
    seconds: float = 0.0
    by_round: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        looked_up = self.executed_tests + self.cached_tests
        return {"processes": self.processes, "executed_tests": self.executed_tests,
                "cached_tests": self.cached_tests, "cached_definitions": self.cached_definitions,
                "restarts": self.restarts, "seconds": self.seconds,
                "cache_hit_rate": self.cached_tests / looked_up if looked_up else None}


def program(solution: str, tests: Sequence[str], nonce: str, limit_s: float) -> str:
    return _PROGRAM.format(solution=solution, tests=list(tests), codes=EXCEPTIONS, nonce=nonce, limit=float(limit_s))


def parse(outcome: sb.Outcome, nonce: str, n_tests: int) -> tuple[str | None, str, bool]:
    """(definition error or None, letters read, finished) from one process's output. The last
    progress line counts: a program may print the nonce's prefix itself only by reading its source."""
    marks = list(re.finditer(re.escape(nonce) + r"([:!])([^\n]*)", outcome.stdout))
    if not marks:  # it never reported the definition: hung or died while loading
        return ("timeout" if outcome.status == sb.TIMEOUT else "crash"), "", True
    kind, text = marks[-1].group(1), marks[-1].group(2)
    if kind == "!":
        return (text.strip() or "error"), "", True
    letters = re.match(r"[A-Z]*", text).group(0)[:n_tests]
    return None, letters, len(letters) == n_tests


class Runner:
    """Runs solutions against tests in `box`, `workers` processes at a time, through `cache`."""

    def __init__(self, box: sb.Sandbox, test_timeout_s: float, cache: Cache, workers: int) -> None:
        self.box, self.limit, self.cache, self.workers = box, test_timeout_s, cache, workers
        self.context = digest(HARNESS_DIGEST, repr(test_timeout_s), repr(sorted(vars(box.limits).items())),
                              box.isolation)
        self.stats = Stats()
        # The progress line must fit the sandbox's output cap: one letter per test plus the nonce.
        self.chunk = max(1, min(MAX_TESTS_PER_PROCESS, getattr(box.limits, "output_bytes", 4096) - 64))

    def key(self, solution: str) -> str:
        return digest(self.context, solution)

    def run(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> list[Result]:
        """`jobs`: (solution source, its tests); one Result per job, in order."""
        start = time.perf_counter()
        keys = [self.key(s) for s, _ in jobs]
        tkeys = [[digest(t) for t in tests] for _, tests in jobs]
        errors: list[str | None] = [None] * len(jobs)
        codes: list[dict[str, str]] = [{} for _ in jobs]
        pending: list[tuple[int, list[int]]] = []  # job, indices of tests still to run
        for j in range(len(jobs)):
            loaded = self.cache.definition(keys[j])
            self.stats.cached_definitions += loaded is not None
            if loaded:  # a non-empty string: the solution itself fails, whatever the tests
                errors[j] = loaded
                continue
            codes[j] = self.cache.outcomes(keys[j], tkeys[j])
            self.stats.cached_tests += sum(t in codes[j] for t in tkeys[j])
            first_of = {t: i for i, t in reversed(list(enumerate(tkeys[j]))) if t not in codes[j]}
            todo = sorted(first_of.values())
            for c in range(0, len(todo), self.chunk):
                pending.append((j, todo[c: c + self.chunk]))
            if not todo and loaded is None:
                pending.append((j, []))  # no tests to run, but whether it loads is a LEVER feature
        first = True
        while pending:
            pending = self._round(jobs, keys, tkeys, pending, errors, codes, restart=not first)
            first = False
        self.stats.seconds += time.perf_counter() - start
        out = []
        for j in range(len(jobs)):
            if errors[j] is not None:
                out.append(Result(errors[j], NOT_LOADED * len(tkeys[j])))
            else:
                out.append(Result(None, "".join(codes[j][t] for t in tkeys[j])))
        return out

    def _round(self, jobs: Sequence[tuple[str, Sequence[str]]], keys: list[str], tkeys: list[list[str]],
               pending: list[tuple[int, list[int]]], errors: list[str | None], codes: list[dict[str, str]],
               restart: bool) -> list[tuple[int, list[int]]]:
        nonces = [secrets.token_hex(8) for _ in pending]
        programs = [program(jobs[j][0], [jobs[j][1][i] for i in idx], n, self.limit)
                    for (j, idx), n in zip(pending, nonces, strict=True)]
        outcomes = self.box.run_many(programs, self.workers)
        self.stats.processes += len(programs)
        self.stats.by_round.append(len(programs))
        if restart:
            self.stats.restarts += len(programs)
        again = []
        for (j, idx), nonce, outcome in zip(pending, nonces, outcomes, strict=True):
            error, letters, finished = parse(outcome, nonce, len(idx))
            if error is not None:
                errors[j] = error
                self.cache.store(keys[j], error, ())
                continue
            if not finished:  # the test after the last letter took the process down
                letters += TIMEOUT if outcome.status == sb.TIMEOUT else CRASH
            done = [(tkeys[j][i], c) for i, c in zip(idx, letters, strict=False)]
            self.stats.executed_tests += len(done)
            codes[j].update(done)
            self.cache.store(keys[j], "", done)
            if len(letters) < len(idx):
                again.append((j, idx[len(letters):]))
        return again
