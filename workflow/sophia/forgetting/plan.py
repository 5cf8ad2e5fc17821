"""What the forgetting matrix measures, decided from the config alone (rules import this; no torch):
which eval splits, which rows each variant job measures, and which row is a row's previous step.

Rows are the evaluated variants plus every curriculum step that is no evaluated variant's final
adapter (`step:<chain>`, e.g. `step:tiny_codegen`). Such a step is measured by the job of the first
evaluated curriculum that passes through it: that job already holds the GPTQ model, and a LoRA
adapter is small to add, so no model is loaded twice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STEP = "step:"


def chain(phases: Sequence[str]) -> str:
    return "/".join(phases)


def splits(phases: Mapping[str, Mapping[str, Any]], curricula: Mapping[str, Sequence[str]],
           extra_phases: Sequence[str] = ()) -> dict[str, list[str]]:
    """dataset -> its tasks that some curriculum (or a distillation's phase) trains on, in config order."""
    used = [p for phases_ in curricula.values() for p in phases_] + list(extra_phases)
    out: dict[str, list[str]] = {}
    for name in dict.fromkeys(used):
        phase = phases[name]
        tasks = out.setdefault(phase["dataset"], [])
        tasks += [t for t in phase["tasks"] if t not in tasks]
    return out


def window(phases: Mapping[str, Mapping[str, Any]], curricula: Mapping[str, Sequence[str]]) -> int:
    """Tokens per example (prompt + answer) when not configured: the longest training window of the
    curricula's phases, so the loss is the one training minimised (capped later by each model's context)."""
    return max(phases[p]["max_length"] for phases_ in curricula.values() for p in phases_)


def curriculum_of(model: str) -> str | None:
    return model.split("+", 1)[1] if model.startswith("gptq+") else None


def job_rows(curricula: Mapping[str, Sequence[str]], models: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """model -> the rows its job measures: `{"label", "chain", "previous"}`, its own row first (chain
    None for base, gptq and distilled students), then the intermediate steps it owns."""
    finals = {chain(curricula[c]) for m in models if (c := curriculum_of(m)) in curricula}
    owned: set[str] = set()
    out: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        c = curriculum_of(model)
        phases = curricula.get(c, []) if c is not None else []
        rows = [{"label": model, "chain": chain(phases) if phases else None}]
        for i in range(1, len(phases)):
            step = chain(phases[:i])
            if step not in finals and step not in owned:
                owned.add(step)
                rows.append({"label": STEP + step, "chain": step})
        out[model] = rows
    chains = {r["label"]: r["chain"] for rows in out.values() for r in rows}
    for rows in out.values():
        for r in rows:
            r["previous"] = previous(r["label"], r["chain"], chains)
    return out


def previous(label: str, step_chain: str | None, rows: Mapping[str, str | None]) -> str | None:
    """The row a row is compared with as "the previous step": gptq for the first curriculum step,
    the row of the chain one step shorter for later ones, base for gptq; None otherwise (base,
    distilled students) or when that row was not measured. `rows`: label -> chain of every row."""
    if label == "gptq":
        return "base" if "base" in rows else None
    if step_chain is None:
        return None
    if "/" not in step_chain:
        return "gptq" if "gptq" in rows else None
    parent = step_chain.rsplit("/", 1)[0]
    found = [lbl for lbl, c in rows.items() if c == parent]
    # an evaluated variant's own label before a step: label, so the table names what readers know
    found.sort(key=lambda lbl: lbl.startswith(STEP))
    return found[0] if found else None
