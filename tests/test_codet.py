"""CodeT's estimator checked against an exhaustive enumeration of every draw order, CodeT's released
ranking (ported below as the reference), and hand cases."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from fractions import Fraction

import pytest
from sophia.evaluate import codet
from sophia.evaluate.scoring import pass_at_k as unbiased

S = frozenset


def released_ranking(passed: Sequence[frozenset[int]], weight: str,
                     multiplicity: Sequence[int] | None) -> list[tuple[list[int], float]]:
    """CodeT's `agreement.py` consensus sets, independently of `codet.group`: a solution passing no
    test is left out; score = (tests counted with multiplicity for sqrt) x f(solutions)."""
    sets: dict[frozenset[int], list[int]] = {}
    for i, tests in enumerate(passed):
        if tests:
            sets.setdefault(frozenset(tests), []).append(i)
    ranked = []
    for tests, members in sets.items():
        if weight == "sqrt":
            score = sum(multiplicity[t] if multiplicity else 1 for t in tests) * math.sqrt(len(members))
        else:
            score = len(tests) * len(members)
        ranked.append((members, score))
    return sorted(ranked, key=lambda x: x[1], reverse=True)


def released_choose_count(sorted_solution_scores: list[tuple[list[int], float]],
                          topk: int) -> list[tuple[list[int], int]]:
    """`_turn_solution_scores_into_choose_count` of microsoft/CodeT src/evaluation.py (wrapped case)."""
    result = []
    last_score = sorted_solution_scores[0][1]
    merged = [sorted_solution_scores[0]]
    for solutions, score in sorted_solution_scores[1:]:
        if score == last_score:
            merged[-1] = (merged[-1][0] + solutions, score)
        else:
            merged.append((solutions, score))
            last_score = score
    for solutions, _ in merged:
        result.append((solutions, 1))
    if len(result) >= topk:
        return result[:topk]
    counts = [1] * len(result)
    for i in range(topk - len(result)):
        counts[i % len(result)] += 1
    return [(r[0], c) for r, c in zip(result, counts, strict=True)]


def released_pass_at_k(passed: Sequence[frozenset[int]], correct: Sequence[bool], k: int, weight: str,
                       multiplicity: Sequence[int] | None = None) -> float:
    """CodeT's released arithmetic: each pick with replacement, (wrong share) ** picks per level."""
    ranked = released_ranking(passed, weight, multiplicity)
    if not ranked:
        return unbiased(len(correct), sum(correct), min(k, len(correct)))
    fail = 1.0
    for solutions, count in released_choose_count(ranked, k):
        fail *= (sum(not correct[s] for s in solutions) / len(solutions)) ** count
    return 1 - fail


def enumerated_pass_at_k(passed: Sequence[frozenset[int]], correct: Sequence[bool], k: int, weight: str,
                         multiplicity: Sequence[int] | None = None) -> Fraction:
    """Every draw order, counted: each level is shuffled in every way, picks go round robin over
    the levels in score order (one per level per round, a level out once its solutions are all
    picked), and the share of orders in which a correct solution is picked is returned exactly."""
    ranked = released_ranking(passed, weight, multiplicity)
    levels: list[list[int]] = []
    last = None
    for members, score in ranked:  # pool equal scores (floating ties as CodeT's `==`, or isclose)
        if last is not None and math.isclose(score, last, rel_tol=1e-9):
            levels[-1] += members
        else:
            levels.append(list(members))
            last = score
    if not levels:  # nothing ranked: k random draws without replacement from all
        levels = [list(range(len(correct)))]
    hits = total = 0
    for orders in itertools.product(*(itertools.permutations(lv) for lv in levels)):
        taken = [0] * len(orders)
        picked: list[int] = []
        while len(picked) < k and any(t < len(o) for t, o in zip(taken, orders, strict=True)):
            for li, order in enumerate(orders):
                if len(picked) < k and taken[li] < len(order):
                    picked.append(order[taken[li]])
                    taken[li] += 1
        hits += any(correct[i] for i in picked)
        total += 1
    return Fraction(hits, total)


def random_instance(rng: random.Random) -> tuple[list[frozenset[int]], list[bool], list[int]]:
    n, m = rng.randint(1, 5), rng.randint(0, 3)
    passed = [S(t for t in range(m) if rng.random() < 0.5) for _ in range(n)]
    correct = [rng.random() < 0.4 for _ in range(n)]
    return passed, correct, [rng.randint(1, 3) for _ in range(m)]


@pytest.mark.parametrize("weight", ["linear", "sqrt"])
def test_exact_over_every_draw_order_on_random_instances(weight: str) -> None:
    rng = random.Random(7)
    ties = 0
    for _ in range(100):
        passed, correct, mult = random_instance(rng)
        ranked = released_ranking(passed, weight, mult)
        ties += len({s for _, s in ranked}) < len(ranked)
        for k in range(1, len(correct) + 1):
            want = enumerated_pass_at_k(passed, correct, k, weight, mult)
            assert codet.pass_at_k(passed, correct, k, weight, mult) == pytest.approx(float(want), abs=1e-12)
        assert codet.pass_at_1(passed, correct, weight, mult) == codet.pass_at_k(passed, correct, 1, weight, mult)
    assert ties >= 3  # the instances do exercise pooled levels


@pytest.mark.parametrize("weight", ["linear", "sqrt"])
def test_one_pick_per_level_is_codets_released_arithmetic(weight: str) -> None:
    """Where no level gets a second pick, drawing with or without replacement is the same: the
    released code's numbers are reproduced exactly (and its pick counts, through the enumeration)."""
    rng = random.Random(11)
    checked = 0
    for _ in range(200):
        passed, correct, mult = random_instance(rng)
        ranked = released_ranking(passed, weight, mult)
        if not ranked:
            continue
        for k in range(1, len(released_choose_count(ranked, len(ranked))) + 1):
            if all(c == 1 for _, c in released_choose_count(ranked, k)):
                assert codet.pass_at_k(passed, correct, k, weight, mult) == pytest.approx(
                    released_pass_at_k(passed, correct, k, weight, mult), abs=1e-12)
                checked += 1
    assert checked > 100


def test_hand_case_pass_at_k_equals_pass_at_1_on_tied_scores() -> None:
    # Scores: {0} 2 x 1 = 2, {0,1} 1 x 2 = 2 (tied: one level of 3, one right), {1} 1 x 1 = 1.
    passed, correct = [S({0}), S({1}), S({0}), S({0, 1})], [False, False, False, True]
    assert codet.pass_at_1(passed, correct) == pytest.approx(1 / 3)
    assert codet.pass_at_k(passed, correct, 1) == pytest.approx(1 / 3)
    # k = 2: one from the top level, one from the second (all wrong): 1/3.
    assert codet.pass_at_k(passed, correct, 2) == pytest.approx(1 / 3)


def test_hand_case_a_solution_passing_no_test_is_not_ranked() -> None:
    # Three wrong solutions pass {t0} (3 x 1 = 3), a right one {t0,t1,t2} (1 x 3 = 3), a right one
    # nothing: CodeT ranks only the first four (one level, one right); both picks come from it.
    passed = [S({0}), S({0}), S({0}), S({0, 1, 2}), S()]
    correct = [False, False, False, True, True]
    assert codet.pass_at_k(passed, correct, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    assert released_pass_at_k(passed, correct, 2, "linear") == pytest.approx(0.4375)  # with replacement
    assert codet.pass_at_k(passed, correct, 5) == 1.0  # all four ranked ones picked
    assert codet.pass_at_1(passed, correct) == pytest.approx(0.25)


def test_sqrt_weight_counts_how_often_a_test_was_generated() -> None:
    # A passes t0 (generated 3 times), B passes t1 and t2 (once each): 3 x 1 > 2 x 1 with
    # multiplicity, 1 x 1 < 2 x 1 without it.
    passed, correct = [S({0}), S({1, 2})], [True, False]
    assert codet.pass_at_1(passed, correct, "sqrt", [3, 1, 1]) == 1.0
    assert codet.pass_at_1(passed, correct, "sqrt") == 0.0
    assert codet.pass_at_1(passed, correct, "linear", [3, 1, 1]) == 0.0  # the paper's score: distinct tests
    assert codet.multiplicities(["a", "b"], ["a", "b", "a", "c"]) == [2, 1]
    with pytest.raises(ValueError, match="multiplicity"):
        codet.pass_at_1(passed, correct, "sqrt", [0, 1, 1])


def test_without_valid_tests_the_unranked_expectation() -> None:
    passed = [S()] * 10
    correct = [True] * 3 + [False] * 7
    assert codet.pass_at_1(passed, correct) == pytest.approx(0.3)
    for k in (1, 2, 5, 10):
        assert codet.pass_at_k(passed, correct, k) == pytest.approx(unbiased(10, 3, k))
    assert codet.pass_at_1([], []) is None
    with pytest.raises(ValueError, match="weight"):
        codet.pass_at_1(passed, correct, "log")
    with pytest.raises(ValueError, match="k must be"):
        codet.pass_at_k(passed, correct, 0)
