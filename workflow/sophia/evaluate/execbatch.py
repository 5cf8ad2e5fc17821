"""Every generated test against every solution, one sandboxed process per solution.

The process (an ordinary `Sandbox.run` program, so it gets whatever isolation the sandbox has)
defines the solution once, then runs its tests one by one, each under its own SIGALRM time limit
and a catch-all, printing one line per test as it goes: the outcome letter and what the test saw
(the value the tested call returned, or the error and the solution's line that raised it; the
execution result LEVER's verifier reads and self-debugging feeds back). A Python exception in one
test is that test's outcome; the others still run.

Time: the process gets the sandbox's budget for one program (interpreter start, loading the
solution) plus one test budget per test, as CodeT's `extend_timeout` scales its limit with the
number of tests; a slow but correct solution is not cut off by its own test count. A test that
takes the whole process down (segfault, `os._exit`, a loop in C code that no alarm interrupts)
is the test after the last line read: it is marked `C`/`T` and the tests after it run in a fresh
process. Definitions failing are recorded once per solution. Results are cached by content hash
(`execcache`).

The solution runs with `__name__` unset in its namespace (the reference harness's semantics), and
its prints go to a sink. A solution written to attack the harness could forge lines by finding
the per-process nonce in the harness's frames: that is adversarial, not a model mistake.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sophia.evaluate import sandbox as sb
from sophia.evaluate.execcache import Cache, digest

PASS, FAIL, TIMEOUT, CRASH, OTHER, NOT_LOADED = "P", "F", "T", "C", "E", "D"
EXCEPTIONS = {"NameError": "N", "TypeError": "Y", "ValueError": "V", "IndexError": "I", "KeyError": "K",
              "AttributeError": "A", "ZeroDivisionError": "Z", "RecursionError": "R", "MemoryError": "M",
              "SystemExit": "X", "UnboundLocalError": "U", "NotImplementedError": "L", "StopIteration": "S"}
LETTERS = {PASS: "passed", FAIL: "AssertionError", TIMEOUT: "timeout", CRASH: "crash", OTHER: "other",
           NOT_LOADED: "solution did not load",
           **{v: k for k, v in EXCEPTIONS.items()}}
MAX_TESTS_PER_PROCESS = 1000
DETAIL_CHARS = 100  # of a returned value's repr or an error message: the verifier reads a summary
VALUE = "_sophia_tested_value"  # where an instrumented test leaves the value it checked

_PROGRAM = r'''
def _batch(solution, tests, codes, nonce, limit, load_limit, width, value_name):
    import io, signal, sys, traceback
    out = sys.stdout
    missing = object()

    class Timeout(BaseException):
        pass

    def alarm(signum, frame):
        raise Timeout()

    class Sink(io.TextIOBase):
        def write(self, s):
            return len(s)

    def emit(text):
        out.write("\n" + nonce + text + "\n")
        out.flush()

    def cut(text):
        return text if len(text) <= width else text[: width - 3] + "..."

    def error(exc):
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == "solution.py":
                line = frame.lineno
        try:
            text = type(exc).__name__ + ": " + cut(str(exc))
        except BaseException:
            text = type(exc).__name__
        return text + ("" if line is None else " (solution line %d)" % line)

    def shown(value):
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                return cut(repr(value))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException:
            return "<unprintable>"

    signal.signal(signal.SIGALRM, alarm)
    sys.stdout = Sink()
    ns = {{}}
    try:
        signal.setitimer(signal.ITIMER_REAL, load_limit)
        try:
            exec(compile(solution, "solution.py", "exec"), ns)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Timeout:
        emit("!timeout")
        return
    except BaseException as exc:
        emit("!" + repr(error(exc)))
        return
    emit(":")
    for i, test in enumerate(tests):
        detail = ""
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                exec(compile(test, "test.py", "exec"), ns)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            code = "P"
        except Timeout:
            code = "T"
        except AssertionError:
            code = "F"
        except BaseException as exc:
            code = codes.get(type(exc).__name__, "E")
            detail = error(exc)
        value = ns.pop(value_name, missing)
        if code in "PF" and value is not missing:
            detail = "returned " + shown(value)
        emit(str(i) + code + repr(detail))
    emit(".")


_batch({solution!r}, {tests!r}, {codes!r}, {nonce!r}, {limit!r}, {load_limit!r}, {width!r}, {value!r})
'''
HARNESS_DIGEST = digest(_PROGRAM, repr(sorted(EXCEPTIONS.items())), repr(DETAIL_CHARS))


@dataclass
class Result:
    """One solution against its tests: `error` is the type of error that stopped the solution
    loading (None when it did) and `error_detail` its message; `codes` has one letter per test, in
    order, and `details` what each test saw."""
    error: str | None
    codes: str
    details: list[str] = field(default_factory=list)
    error_detail: str = ""

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


def instrument(test: str) -> str:
    """The test rewritten to leave the value it checks in `VALUE` (the left side of a comparison,
    else the whole asserted expression), so the harness can report what the program returned."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError):
        return test
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return test
    node = tree.body[0]
    checked = node.test.left if isinstance(node.test, ast.Compare) and len(node.test.ops) == 1 else node.test
    keep = ast.Assign(targets=[ast.Name(VALUE, ast.Store())], value=checked, lineno=1)
    if checked is node.test:
        node.test = ast.Name(VALUE, ast.Load())
    else:
        node.test.left = ast.Name(VALUE, ast.Load())
    return ast.unparse(ast.fix_missing_locations(ast.Module([keep, node], type_ignores=[])))


def program(solution: str, tests: Sequence[str], nonce: str, limit_s: float, load_s: float) -> str:
    return _PROGRAM.format(solution=solution, tests=[instrument(t) for t in tests], codes=EXCEPTIONS, nonce=nonce,
                           limit=float(limit_s), load_limit=float(load_s), width=DETAIL_CHARS, value=VALUE)


def batch_limits(box: sb.Limits, n_tests: int, test_timeout_s: float) -> sb.Limits:
    """A program's budget plus one per test; room in the output cap for every test's line."""
    return dataclasses.replace(box, timeout_s=box.timeout_s + n_tests * test_timeout_s,
                               output_bytes=max(box.output_bytes, 256 + n_tests * (4 * DETAIL_CHARS + 48)))


def _literal(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return ""
    return value if isinstance(value, str) else ""


def split_error(error: str) -> tuple[str, str]:
    """("SyntaxError", "SyntaxError: invalid syntax ...") from a stored definition error."""
    return error.split(":", 1)[0].strip() or "error", error


def parse(outcome: sb.Outcome, nonce: str, n_tests: int) -> tuple[str | None, list[tuple[str, str]], bool]:
    """(definition error or None, (letter, detail) per test read in order, finished) from one
    process's output. A line lost to an output flood reads as `E`; the test after the last line
    read is the one that took the process down."""
    text = outcome.stdout
    prefix = re.escape(nonce)
    failed = list(re.finditer(prefix + r"!([^\n]*)", text))
    if failed:
        found = failed[-1].group(1)
        return (found if found == "timeout" else _literal(found) or "error"), [], True
    if not re.search(prefix + ":", text):  # it never reported the definition: hung or died while loading
        return ("timeout" if outcome.status == sb.TIMEOUT else "crash"), [], True
    seen: dict[int, tuple[str, str]] = {}
    for m in re.finditer(prefix + r"(\d+)([A-Z])([^\n]*)", text):
        i = int(m.group(1))
        if i < n_tests:
            seen[i] = (m.group(2), _literal(m.group(3)))
    if re.search(prefix + r"\.", text):
        return None, [seen.get(i, (OTHER, "")) for i in range(n_tests)], True
    last = max(seen, default=-1)
    return None, [seen.get(i, (OTHER, "")) for i in range(last + 1)], False


class Runner:
    """Runs solutions against tests in `box`, `workers` processes at a time, through `cache`."""

    def __init__(self, box: sb.Sandbox, test_timeout_s: float, cache: Cache, workers: int) -> None:
        self.box, self.limit, self.cache, self.workers = box, test_timeout_s, cache, workers
        self.context = digest(HARNESS_DIGEST, repr(test_timeout_s), repr(sorted(vars(box.limits).items())),
                              box.isolation)
        self.stats = Stats()
        self.chunk = MAX_TESTS_PER_PROCESS

    def key(self, solution: str) -> str:
        return digest(self.context, solution)

    def run(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> list[Result]:
        """`jobs`: (solution source, its tests); one Result per job, in order."""
        start = time.perf_counter()
        keys = [self.key(s) for s, _ in jobs]
        tkeys = [[digest(t) for t in tests] for _, tests in jobs]
        errors: list[str | None] = [None] * len(jobs)
        codes: list[dict[str, tuple[str, str]]] = [{} for _ in jobs]
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
                kind, detail = split_error(errors[j])
                out.append(Result(kind, NOT_LOADED * len(tkeys[j]), [detail] * len(tkeys[j]), detail))
            else:
                seen = [codes[j][t] for t in tkeys[j]]
                out.append(Result(None, "".join(c for c, _ in seen), [d for _, d in seen]))
        return out

    def _round(self, jobs: Sequence[tuple[str, Sequence[str]]], keys: list[str], tkeys: list[list[str]],
               pending: list[tuple[int, list[int]]], errors: list[str | None],
               codes: list[dict[str, tuple[str, str]]], restart: bool) -> list[tuple[int, list[int]]]:
        nonces = [secrets.token_hex(8) for _ in pending]
        load = self.box.limits.timeout_s
        programs = [program(jobs[j][0], [jobs[j][1][i] for i in idx], n, self.limit, load)
                    for (j, idx), n in zip(pending, nonces, strict=True)]
        limits = [batch_limits(self.box.limits, len(idx), self.limit) for _, idx in pending]
        outcomes = self.box.run_many(programs, self.workers, limits)
        self.stats.processes += len(programs)
        self.stats.by_round.append(len(programs))
        if restart:
            self.stats.restarts += len(programs)
        again = []
        for (j, idx), nonce, outcome in zip(pending, nonces, outcomes, strict=True):
            error, seen, finished = parse(outcome, nonce, len(idx))
            if error is not None:
                errors[j] = error
                self.cache.store(keys[j], error, ())
                continue
            if not finished:  # the test after the last line took the process down
                seen.append((TIMEOUT if outcome.status == sb.TIMEOUT else CRASH, ""))
            done = [(tkeys[j][i], c, d) for i, (c, d) in zip(idx, seen, strict=False)]
            self.stats.executed_tests += len(done)
            codes[j].update({t: (c, d) for t, c, d in done})
            self.cache.store(keys[j], "", done)
            if len(seen) < len(idx):
                again.append((j, idx[len(seen):]))
        return again
