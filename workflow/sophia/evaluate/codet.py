"""CodeT dual execution agreement (Chen et al. 2022) with the released code's ranking, scored exactly.

Solutions that pass the same set of generated tests form a consensus set. Its score is
(tests passed) x f(solutions in it): with `weight: linear` (the paper) the distinct tests passed
times the number of solutions; with `weight: sqrt` (CodeT's released `agreement.py`) the tests
passed counted with their multiplicity (how often the model generated each) times the square root
of the number of solutions. As in the released code, a solution that passes no generated test is
not ranked at all; when no solution passes any, nothing is ranked and the scores fall back to the
unranked expectations (c/n and the unbiased pass@k): a model that writes no tests is not punished
below its own samples.

The pick follows the released `evaluation.py` (`_turn_solution_scores_into_choose_count`):
consensus sets of equal score are pooled into one level; picks go one per level, in score order,
round after round; inside a level the solution is drawn at random. CodeT's released arithmetic
draws with replacement ((wrong share) ** picks); here draws are without replacement and exact
(C(n - c, m) / C(n, m) per level), and a level whose solutions are all picked drops out of later
rounds, so k picks are k distinct solutions. `pass_at_1` is `pass_at_k` with k = 1: the share of
correct solutions in the top level.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sophia.evaluate.scoring import pass_at_k as unbiased_pass_at_k

WEIGHTS = ("linear", "sqrt")


@dataclass(frozen=True)
class Group:
    tests: frozenset[int]
    members: tuple[int, ...]
    correct: int
    score: float

    @property
    def size(self) -> int:
        return len(self.members)


def group(passed: Sequence[frozenset[int]], correct: Sequence[bool], weight: str = "linear",
          multiplicity: Mapping[int, int] | Sequence[int] | None = None) -> list[Group]:
    """Consensus sets, highest score first (equal scores in order of first member). `multiplicity`:
    how often each test (by index) was generated, read by `weight: sqrt` only (default 1 each)."""
    if weight not in WEIGHTS:
        raise ValueError(f"CodeT weight must be one of {WEIGHTS}, got {weight!r}")
    if len(passed) != len(correct):
        raise ValueError(f"{len(passed)} test results but {len(correct)} correctness labels")
    members: dict[frozenset[int], list[int]] = {}
    for i, tests in enumerate(passed):
        members.setdefault(frozenset(tests), []).append(i)
    out = []
    for tests, idx in members.items():
        if weight == "linear":
            score = len(tests) * len(idx)
        else:
            score = sum(_count(multiplicity, t) for t in tests) * math.sqrt(len(idx))
        out.append(Group(tests, tuple(idx), sum(bool(correct[i]) for i in idx), float(score)))
    return sorted(out, key=lambda g: -g.score)


def _count(multiplicity: Mapping[int, int] | Sequence[int] | None, test: int) -> int:
    if multiplicity is None:
        return 1
    count = multiplicity[test]
    if count < 1:
        raise ValueError(f"test {test} has multiplicity {count}; a generated test occurs at least once")
    return count


@dataclass(frozen=True)
class Level:
    """Solutions of equal score, pooled: one random draw per pick."""
    score: float
    size: int
    correct: int


def levels(groups: Sequence[Group]) -> list[Level]:
    """The ranked levels: equal scores (to 1e-9 relative, for the square root) pooled, and
    solutions that pass no test left out, as CodeT's released ranking does."""
    out: list[Level] = []
    for g in groups:
        if not g.tests:
            continue
        if out and math.isclose(out[-1].score, g.score, rel_tol=1e-9, abs_tol=1e-12):
            last = out[-1]
            out[-1] = Level(last.score, last.size + g.size, last.correct + g.correct)
        else:
            out.append(Level(g.score, g.size, g.correct))
    return out


def picks(sizes: Sequence[int], k: int) -> list[int]:
    """How many solutions each level gives to k picks: one per level in order, round after round,
    a level dropping out once all its solutions are picked."""
    counts = [0] * len(sizes)
    left = k
    while left > 0 and any(c < s for c, s in zip(counts, sizes, strict=True)):
        for i, s in enumerate(sizes):
            if left == 0:
                break
            if counts[i] < s:
                counts[i] += 1
                left -= 1
    return counts


def _all_wrong(size: int, correct: int, m: int) -> float:
    """Chance that m solutions drawn without replacement from a level are all wrong."""
    return math.comb(size - correct, m) / math.comb(size, m)


def pass_at_k(passed: Sequence[frozenset[int]], correct: Sequence[bool], k: int, weight: str = "linear",
              multiplicity: Mapping[int, int] | Sequence[int] | None = None) -> float | None:
    """Chance that one of CodeT's k picks is correct, exact over every draw order; None without solutions."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    groups = group(passed, correct, weight, multiplicity)
    if not groups:
        return None
    ranked = levels(groups)
    if not ranked:  # no solution passes a generated test: nothing to rank by
        n, c = len(correct), sum(map(bool, correct))
        return unbiased_pass_at_k(n, c, min(k, n))
    fail = 1.0
    for level, m in zip(ranked, picks([lv.size for lv in ranked], k), strict=True):
        fail *= _all_wrong(level.size, level.correct, m)
    return 1.0 - fail


def pass_at_1(passed: Sequence[frozenset[int]], correct: Sequence[bool], weight: str = "linear",
              multiplicity: Mapping[int, int] | Sequence[int] | None = None) -> float | None:
    """Expected correctness of CodeT's top pick (a random solution of the top level)."""
    return pass_at_k(passed, correct, 1, weight, multiplicity)


def multiplicities(tests: Sequence[str], generated: Sequence[str]) -> list[int]:
    """How often each of `tests` (deduplicated) occurs among the `generated` asserts."""
    counts = Counter(generated)
    return [counts[t] for t in tests]
