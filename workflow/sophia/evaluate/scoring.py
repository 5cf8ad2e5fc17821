"""Scores with uncertainty: the unbiased pass@k estimator, the standard error of a mean over
items, a normal-approximation confidence interval, and group scores made of several benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. (2021): 1 - C(n-c, k) / C(n, k), the chance that k of n samples hold a pass."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion: unlike mean ± z·se it stays informative at 0/n and
    n/n, which small benchmark runs hit all the time."""
    z = z_value(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(values: Sequence[float], confidence: float) -> dict[str, Any]:
    """Mean over items and its standard error (sample std / sqrt(n), as lm-eval reports). The
    interval is Wilson's for 0/1 items (accuracy, greedy pass@1) and mean ± z·se otherwise
    (pass@k per problem), clipped to [0, 1]; with one item the standard error is unknown."""
    n = len(values)
    if n == 0:
        return {"value": None, "stderr": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    if all(v in (0.0, 1.0) for v in values):
        low, high = wilson(sum(values), n, confidence)
    elif se is not None:
        half = z_value(confidence) * se
        low, high = max(0.0, mean - half), min(1.0, mean + half)
    else:
        low = high = None
    return {"value": mean, "stderr": se, "ci_low": low, "ci_high": high, "n": n}


def _error(part: dict[str, Any], z: float) -> float:
    """A member's standard error for the group: the larger of its sample standard error and its
    interval's half-width over z (all-equal items have a sample error of 0; one 0/1 item has only
    Wilson's interval); with neither (one fractional item), the bound 0.5 / sqrt(n) that holds
    for any mean of values in [0, 1]."""
    errors = []
    if part.get("stderr") is not None:
        errors.append(part["stderr"])
    if part.get("ci_low") is not None and part.get("ci_high") is not None:
        errors.append((part["ci_high"] - part["ci_low"]) / (2 * z))
    return max(errors) if errors else 0.5 / math.sqrt(max(1, part.get("n") or 1))


def combine(parts: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Unweighted mean of benchmark scores (how the paper averages a group); the benchmarks are
    independent samples, so their standard errors add in quadrature (see `_error`).
    A group of one benchmark is that benchmark's score. Every part must have a value: the caller
    decides which members were measured (and says so), nothing is dropped here."""
    if any(p.get("value") is None for p in parts):
        raise ValueError("combine: a member has no value; leave unmeasured members out and mark the group partial")
    if not parts:
        return {"value": None, "stderr": None, "ci_low": None, "ci_high": None, "n": 0}
    if len(parts) == 1:
        return dict(parts[0])
    m = len(parts)
    mean = sum(p["value"] for p in parts) / m
    z = z_value(confidence)
    se = math.sqrt(sum(_error(p, z) ** 2 for p in parts)) / m
    half = z * se
    return {"value": mean, "stderr": se, "ci_low": max(0.0, mean - half), "ci_high": min(1.0, mean + half), "n": m}
