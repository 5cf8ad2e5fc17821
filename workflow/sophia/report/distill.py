"""The report's distillation part: sizes of the students and, per student, SFT control vs distilled
vs teacher on the same benchmarks, with their agreement with the teacher."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sophia import checkpoint
from sophia.errors import DataError
from sophia.report.table import GROUP_TITLES, _cell, _params, shown_groups


def summaries(out: Path) -> dict[str, dict[str, Any]]:
    """variant -> distill.json of the distilled student (`out`) and its control (`out/control`)."""
    found = {}
    for folder in (out, out / "control"):
        path = folder / "distill.json"
        if not path.is_file():
            raise DataError(f"{path}: missing (written by the distill stage)")
        s = json.loads(path.read_text(encoding="utf-8"))
        found[s["variant"]] = {**s, "folder": str(folder)}
    return found


def sizes(students: Mapping[str, Path], base: Path) -> dict[str, dict[str, Any]]:
    """Weights on disk and parameter count of each student: its own weights, or base + adapter."""
    out = {}
    for folder in students.values():
        for variant, s in summaries(folder).items():
            weights = checkpoint.size_on_disk(Path(s["folder"]))["weights_bytes"]
            if s["lora"]:
                weights += checkpoint.size_on_disk(base)["weights_bytes"]
            out[variant] = {"size_bytes": weights, "parameters": s["parameters"]}
    return out


def answers(students: Mapping[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """variant -> reference-prompt answers of each student."""
    return {variant: json.loads((Path(s["folder"]) / "reference_answers.json").read_text(encoding="utf-8"))
            for folder in students.values() for variant, s in summaries(folder).items()}


def _agreement(s: Mapping[str, Any], key: str, fmt: str) -> str:
    before, after = s.get("agreement_before"), s.get("agreement_after")
    if not before or not after:
        return "—"
    scale = 100 if key == "top1_agreement" else 1
    return f"{format(scale * before[key], fmt)} → {format(scale * after[key], fmt)}"


def comparison(rows: Sequence[dict[str, Any]], students: Mapping[str, Path]) -> str:
    """One table per student: what distillation buys over SFT on the same data and budget."""
    if not students:
        return ""
    by_model = {r["model"]: r for r in rows}
    groups = shown_groups(rows)
    head = ["model", "role", *(GROUP_TITLES[g] for g in groups), "parameters", "top-1 agreement % (before → after)",
            "KL to teacher (before → after)", "train s"]
    lines = ["", "## Distillation: SFT control vs distilled vs teacher", "",
             "Same student, data and training budget for the control and the distilled model; agreement is "
             "measured on the phase's held-out answers (top-1 next token, KL(teacher || student) per token).", ""]
    for name, folder in students.items():
        found = summaries(folder)
        kd, sft = found[f"distill+{name}"], found[f"sft+{name}"]
        lines += [f"### {name}: teacher {kd['teacher']}, student {kd['student']}, method {kd['method']}", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        entries = [(f"sft+{name}", "SFT control", sft), (f"distill+{name}", "distilled", kd),
                   (kd["teacher"], "teacher", None)]
        for model, role, s in entries:
            r = by_model.get(model, {"groups": {}})
            cells = [model, role, *(_cell(r["groups"].get(g)) for g in groups),
                     _params(s["parameters"] if s else r.get("parameters")),
                     _agreement(s, "top1_agreement", ".1f") if s else "—",
                     _agreement(s, "kl", ".3f") if s else "—", f"{s['seconds']:.0f}" if s else "—"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
