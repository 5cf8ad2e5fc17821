"""LEVER (Ni et al. 2023): rerank programs by P_LM x P_verifier, summed over equal execution results.

The execution result of a program is what running it shows without the hidden tests: whether it
loads (and the error type if not) and its outcome on each generated test (pass, assertion
failure, timeout, crash, or the exception type; `execbatch` letters). The verifier's features
(`features`) describe the problem, the program and that result; its labels come from the gold
tests, and only on the MBPP train split (sophia.verifier).

P_LM is the per-token probability exp(mean log-prob) of the program: the summed log-prob of a
sampled program mostly measures its length, which would make every aggregate favour one-liners.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

from sophia.evaluate.execbatch import CRASH, FAIL, LETTERS, NOT_LOADED, PASS, TIMEOUT

# Per-test outcome letters whose share is a feature (the exception types a model makes most).
TEST_LETTERS = (PASS, FAIL, TIMEOUT, CRASH, "N", "Y", "V", "I", "K", "A", "Z", "R")
LOAD_ERRORS = ("SyntaxError", "IndentationError", "NameError", "ImportError", "timeout", "crash")
FEATURES = (
    "mean_logprob", "tokens", "chars", "lines", "problem_chars", "n_tests", "loads",
    *(f"load_error={e}" for e in (*LOAD_ERRORS, "other")),
    *(f"test={t}" for t in (*TEST_LETTERS, "other")),
    "passed", "agreement", "codet_score",
)


SHOWN_TESTS = 8  # generated tests the LM verifier reads per program (the window is small)


def execution_text(tests: Sequence[str], error: str | None, error_detail: str, codes: str,
                   details: Sequence[str]) -> str:
    """A program's execution result as the LM verifier reads it: what it returned or raised on
    the generated tests (LEVER's execution result), or why it did not load."""
    if error is not None:
        return f"does not load: {error_detail or error}"
    if not tests:
        return "loads; no generated test to run"
    lines = []
    for test, code, detail in list(zip(tests, codes, details, strict=True))[:SHOWN_TESTS]:
        outcome = LETTERS.get(code, "other")
        lines.append(f"{test}  # {outcome}" + (f"; {detail}" if detail else ""))
    if len(tests) > SHOWN_TESTS:
        lines.append(f"# ... {len(tests) - SHOWN_TESTS} more tests, {codes.count(PASS)} of {len(tests)} passed")
    return "\n".join(lines)


def verifier_text(problem: str, program: str, execution: str) -> str:
    """LEVER's verifier input: the problem, the program and its execution result."""
    return f"# Problem\n{problem.strip()}\n# Program\n{program.strip()}\n# Execution result\n{execution}\n"


def execution_key(error: str | None, codes: str) -> Hashable:
    return (error, codes)


def features(problem: str, program: str, error: str | None, codes: str, mean_logprob: float, tokens: int,
             agreement: float, codet_score: float) -> dict[str, float]:
    """One candidate's features. `agreement`: share of the problem's candidates with the same
    execution result; `codet_score`: its CodeT group score over the problem's best (0 if none)."""
    n = len(codes)
    counts = Counter(codes)
    f: dict[str, float] = {
        "mean_logprob": float(mean_logprob), "tokens": float(tokens), "chars": float(len(program)),
        "lines": float(program.count("\n") + 1), "problem_chars": float(len(problem)), "n_tests": float(n),
        "loads": float(error is None),
    }
    for e in LOAD_ERRORS:
        f[f"load_error={e}"] = float(error == e)
    f["load_error=other"] = float(error is not None and error not in LOAD_ERRORS)
    for t in TEST_LETTERS:
        f[f"test={t}"] = counts.get(t, 0) / n if n else 0.0
    f["test=other"] = sum(v for k, v in counts.items() if k not in TEST_LETTERS and k != NOT_LOADED) / n if n else 0.0
    f["passed"] = float(counts.get(PASS, 0))
    f["agreement"], f["codet_score"] = float(agreement), float(codet_score)
    assert tuple(f) == FEATURES, "feature order drifted"
    return f


def problem_features(problem: str, programs: Sequence[str], errors: Sequence[str | None], codes: Sequence[str],
                     logprobs: Sequence[tuple[float, int]], codet_scores: Sequence[float]) -> list[dict[str, float]]:
    """Features of all candidates of one problem (agreement needs them all)."""
    keys = [execution_key(e, c) for e, c in zip(errors, codes, strict=True)]
    sizes = Counter(keys)
    best = max(codet_scores, default=0.0)
    return [features(problem, p, e, c, lp, nt, sizes[k] / len(keys), s / best if best > 0 else 0.0)
            for p, e, c, (lp, nt), k, s in zip(programs, errors, codes, logprobs, keys, codet_scores, strict=True)]


def pass_at_1(keys: Sequence[Hashable], programs: Sequence[str], mean_logprobs: Sequence[float],
              p_verifier: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Expected correctness of LEVER's pick: the execution result with the largest summed
    P_LM x P_verifier over its distinct programs, then its highest-scoring program; ties at random."""
    if not (len(keys) == len(programs) == len(mean_logprobs) == len(p_verifier) == len(correct)):
        raise ValueError("LEVER inputs differ in length")
    if not keys:
        return None
    distinct: dict[Hashable, dict[str, tuple[float, bool]]] = {}
    for k, prog, lp, pv, ok in zip(keys, programs, mean_logprobs, p_verifier, correct, strict=True):
        distinct.setdefault(k, {})[prog] = (math.exp(lp) * pv, bool(ok))
    totals = {k: sum(s for s, _ in progs.values()) for k, progs in distinct.items()}
    best = max(totals.values())
    top = [k for k, t in totals.items() if _same(t, best)]
    value = 0.0
    for k in top:
        progs = distinct[k].values()
        high = max(s for s, _ in progs)
        picks = [ok for s, ok in progs if _same(s, high)]
        value += sum(picks) / len(picks)
    return value / len(top)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)
