"""The paper's sampling: n rows per task with a seed, equal shares per language, disjoint splits."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

SPLITS = ("train", "eval")


def shares(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` near-equal integers; the first parts take the remainder."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def quotas(
    tasks: Mapping[str, Mapping[str, int]], groups: Sequence[str | None]
) -> dict[str | None, dict[tuple[str, str], int]]:
    """Rows each language group must supply to each (task, split)."""
    out: dict[str | None, dict[tuple[str, str], int]] = {g: {} for g in groups}
    for task, counts in tasks.items():
        for split, key in (("train", "n_train"), ("eval", "n_eval")):
            for group, n in zip(groups, shares(counts[key], len(groups)), strict=True):
                out[group][(task, split)] = n
    return out


def sample(
    pools: Mapping[str | None, Sequence[int]],
    tasks: Mapping[str, Mapping[str, int]],
    groups: Sequence[str | None],
    seed: int,
) -> dict[tuple[str, str], list[tuple[int, str | None]]]:
    """Draw without replacement: every (task, split) gets its quota of (row, language) pairs.

    Each language's pool is shuffled once and consumed in a fixed order of tasks and splits,
    so no row appears twice (eval never leaks into any task's train) and the result depends
    only on the pools, the counts and the seed. Callers check that pools are large enough.
    """
    rng = random.Random(seed)
    need = quotas(tasks, groups)
    picked: dict[tuple[str, str], list[tuple[int, str | None]]] = {
        (t, s): [] for t in tasks for s in SPLITS
    }
    for group in groups:
        pool = list(pools[group])
        rng.shuffle(pool)
        pos = 0
        for task in tasks:
            for split in ("eval", "train"):
                n = need[group][(task, split)]
                picked[(task, split)].extend((row, group) for row in pool[pos : pos + n])
                pos += n
    for rows in picked.values():
        rng.shuffle(rows)  # interleave languages so training batches are mixed
    return picked
