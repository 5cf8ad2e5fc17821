"""Curricula → the steps to train: every prefix of every curriculum, each trained once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def chain(phases: Sequence[str]) -> str:
    return "/".join(phases)


def steps(curricula: Mapping[str, Sequence[str]]) -> list[str]:
    """All chains to train, prefixes first, each once however many curricula share it."""
    seen: dict[str, None] = {}
    for phases in curricula.values():
        for i in range(1, len(phases) + 1):
            seen.setdefault(chain(phases[:i]))
    return list(seen)


def finals(curricula: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Curriculum name → the chain of its last step (the adapter it stands for)."""
    return {name: chain(phases) for name, phases in curricula.items()}


def parent(step: str) -> str | None:
    return step.rsplit("/", 1)[0] if "/" in step else None


def phase_of(step: str) -> str:
    return step.rsplit("/", 1)[-1]
