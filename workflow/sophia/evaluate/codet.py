"""CodeT dual execution agreement (Chen et al. 2022), as exact expectations.

Solutions that pass the same set of generated tests form a group (a consensus set); a group
scores (#tests passed) x f(#solutions), with f the identity as in the paper or the square root as
in CodeT's released code (`weight`). Which solution a ranker shows is random among equals, so the
scores here are expectations over that randomness, computed exactly:

- `pass_at_1`: solutions ranked by their group's score, ties broken at random: the share of
  correct solutions among those in the top-scoring groups.
- `pass_at_k`: round robin over the groups in score order (one solution from each group per
  round, a group dropping out when empty), groups of equal score in random order, solutions
  drawn at random within a group; the chance that one of the k picked is correct.

With no valid tests every solution passes the same (empty) set, so there is one group and both
reduce to the unranked expectations c/n and the unbiased pass@k: a model that writes no tests
is not punished below its own samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def group(passed: Sequence[frozenset[int]], correct: Sequence[bool], weight: str = "linear") -> list[Group]:
    """Consensus sets, highest score first (equal scores in order of first member)."""
    if weight not in WEIGHTS:
        raise ValueError(f"CodeT weight must be one of {WEIGHTS}, got {weight!r}")
    if len(passed) != len(correct):
        raise ValueError(f"{len(passed)} test results but {len(correct)} correctness labels")
    members: dict[frozenset[int], list[int]] = {}
    for i, tests in enumerate(passed):
        members.setdefault(frozenset(tests), []).append(i)
    out = []
    for tests, idx in members.items():
        f = len(idx) if weight == "linear" else math.sqrt(len(idx))
        out.append(Group(tests, tuple(idx), sum(bool(correct[i]) for i in idx), len(tests) * f))
    return sorted(out, key=lambda g: -g.score)


def _blocks(groups: Sequence[Group]) -> list[list[Group]]:
    """Runs of equal score (to 1e-9 relative, for the square-root weight)."""
    blocks: list[list[Group]] = []
    for g in groups:
        if blocks and math.isclose(blocks[-1][0].score, g.score, rel_tol=1e-9, abs_tol=1e-12):
            blocks[-1].append(g)
        else:
            blocks.append([g])
    return blocks


def pass_at_1(passed: Sequence[frozenset[int]], correct: Sequence[bool], weight: str = "linear") -> float | None:
    """Expected correctness of the top-ranked solution, ties broken at random; None without solutions."""
    groups = group(passed, correct, weight)
    if not groups:
        return None
    top = _blocks(groups)[0]
    return sum(g.correct for g in top) / sum(g.size for g in top)


def _all_wrong(size: int, correct: int, picks: int) -> float:
    """Chance that `picks` solutions drawn without replacement from a group are all wrong."""
    if picks <= 0:
        return 1.0
    return math.comb(size - correct, picks) / math.comb(size, picks)


def pass_at_k(passed: Sequence[frozenset[int]], correct: Sequence[bool], k: int,
              weight: str = "linear") -> float | None:
    """Round robin over consensus sets (see the module docstring), exact over all tie orders."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    groups = group(passed, correct, weight)
    if not groups:
        return None
    sizes = [g.size for g in groups]
    rounds = 0  # full rounds: every group with solutions left gives one
    while rounds < max(sizes) and sum(min(s, rounds + 1) for s in sizes) <= k:
        rounds += 1
    left = k - sum(min(s, rounds) for s in sizes)  # picks of the partial round, in score order
    fail = 1.0
    for block in _blocks(groups):
        eligible = [g for g in block if g.size > rounds]
        for g in block:
            if g.size <= rounds:
                fail *= _all_wrong(g.size, g.correct, g.size)
        if left >= len(eligible):
            fail *= math.prod(_all_wrong(g.size, g.correct, rounds + 1) for g in eligible)
            left -= len(eligible)
            continue
        # The partial round ends inside this block: `left` of its groups, a uniformly random
        # subset, get one more pick. Sum over subsets by the elementary symmetric polynomial.
        subsets = [1.0] + [0.0] * left
        for g in eligible:
            more, base = _all_wrong(g.size, g.correct, rounds + 1), _all_wrong(g.size, g.correct, rounds)
            for j in range(left, 0, -1):
                subsets[j] = subsets[j] * base + subsets[j - 1] * more
            subsets[0] *= base
        fail *= subsets[left] / math.comb(len(eligible), left)
        left = 0
    return 1.0 - fail
