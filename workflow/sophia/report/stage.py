"""Stage function: every evaluation + model summaries → results/report/ (table.md, table.csv,
benchmarks.png, protocol.md/json: the protocol card of every benchmark, reference_answers.md),
logged to the workflow invocation's MLflow run."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sophia import checkpoint, tracking
from sophia.atomic import atomic_dir
from sophia.errors import DataError
from sophia.evaluate import protocol
from sophia.plots import grouped_bars
from sophia.report import distill, table
from sophia.report import forgetting as fg

log = logging.getLogger(__name__)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: missing (written by an earlier stage)")
    return json.loads(path.read_text(encoding="utf-8"))


def model_sizes(base: Path, gptq: Path | None, adapters: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Weights on disk and parameter count per variant; an adapter adds its own file and LoRA weights."""
    base_params = sum(checkpoint.parameter_counts(base).values())
    sizes = {"base": {"size_bytes": checkpoint.size_on_disk(base)["weights_bytes"], "parameters": base_params}}
    if gptq is not None:
        gptq_bytes = checkpoint.size_on_disk(gptq)["weights_bytes"]
        sizes["gptq"] = {"size_bytes": gptq_bytes, "parameters": base_params}
        for name, adapter in adapters.items():
            summary = _read_json(adapter / "finetune.json")
            sizes[f"gptq+{name}"] = {
                "size_bytes": gptq_bytes + (adapter / "adapter_model.safetensors").stat().st_size,
                "parameters": base_params + summary["trainable_parameters"],
            }
    return sizes


def reference_answers(gptq: Path | None, adapters: Mapping[str, Path], models: Sequence[str],
                      students: Mapping[str, Path] | None = None) -> str:
    """The reference prompts answered by every variant, side by side (one section per prompt)."""
    by_request: dict[str, dict[str, str]] = {}
    if gptq is not None:
        for a in _read_json(gptq / "reference_answers.json"):
            by_request.setdefault(a["request"], {}).update({"base": a["base"], "gptq": a["gptq"]})
    for name, adapter in adapters.items():
        for a in _read_json(adapter / "reference_answers.json"):
            by_request.setdefault(a["request"], {})[f"gptq+{name}"] = a["answer"]
    for variant, found in distill.answers(students or {}).items():
        for a in found:
            by_request.setdefault(a["request"], {})[variant] = a["answer"]
    parts = ["# Reference prompts, every variant", ""]
    for request, answers in by_request.items():
        parts += [f"## {request}", ""]
        for model in models:
            if model in answers:
                parts += [f"**{model}**", "", "```", answers[model] or "(empty)", "```", ""]
    return "\n".join(parts)


def references(spec_reference: Any) -> list[dict[str, Any]]:
    """The configured published rows (null: none)."""
    return list(spec_reference or [])


def protocol_cards(scores: Mapping[str, Mapping[str, dict[str, Any]]],
                   models: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """benchmark → model → the protocol card its evaluate run wrote."""
    cards: dict[str, dict[str, dict[str, Any]]] = {}
    for model in models:
        for bench, s in scores.get(model, {}).items():
            if "protocol" in s:
                cards.setdefault(bench, {})[model] = s["protocol"]
    return cards


def plot(rows: Sequence[dict[str, Any]], refs: Sequence[Mapping[str, Any]], confidence: float, path: Path) -> None:
    groups = table.shown_groups(rows, refs)
    series = {r["model"]: [(s.get("value"), s.get("ci_low"), s.get("ci_high"))
                           for s in (r["groups"].get(g, {}) for g in groups)] for r in rows}
    notes = {r["model"]: [table.partial(r["groups"].get(g)) for g in groups] for r in rows}
    for ref in refs:
        series[f"{ref['name']} (published)"] = [
            ((ref["scores"][g] / 100) if g in ref["scores"] else None, None, None) for g in groups]
    grouped_bars([table.GROUP_TITLES[g] for g in groups], series, path,
                 title=f"Benchmarks ({round(100 * confidence)} % CI; k/n: group only partly measured)",
                 ylabel="score", hatched=[k for k in series if k.endswith("(published)")], notes=notes)


def forgetting_matrix(spec: Mapping[str, Any], folders: Sequence[Path]) -> tuple[list[dict[str, Any]], str]:
    """The matrix's entries and its Markdown section (none without measurements)."""
    if not spec.get("forgetting") or not folders:
        return [], ""
    rows = fg.read(folders)
    settings = spec["forgetting"]
    entries = fg.matrix(rows, spec["confidence"], settings["bootstrap"], settings["seed"])
    chains = {label: r["chain"] for label, r in rows.items()}
    return entries, fg.markdown(entries, chains, spec["confidence"], spec.get("curricula") or {},
                                spec.get("phases") or {})


def run_stage(spec: dict[str, Any], eval_dirs: Sequence[Path], base: Path, gptq: Path | None,
              adapters: Mapping[str, Path], out: Path, students: Mapping[str, Path] | None = None,
              forgetting: Sequence[Path] = ()) -> list[dict[str, Any]]:
    confidence, models = spec["confidence"], spec["models"]
    students = students or {}
    refs = references(spec["reference"])
    scores = table.read_scores(eval_dirs)
    sizes = {**model_sizes(base, gptq, adapters), **distill.sizes(students, base)}
    rows = table.build_rows(scores, models, sizes, confidence)
    allowed = max((s.get("truncation", {}).get("allowed", 0.0) for per in scores.values() for s in per.values()),
                  default=0.0)
    cards = protocol_cards(scores, models)
    entries, forgetting_md = forgetting_matrix(spec, forgetting)
    with atomic_dir(out) as tmp:
        md = (table.markdown(rows, refs, confidence, allowed, entries) + distill.comparison(rows, students)
              + forgetting_md)
        if entries:
            fg.write_csv(entries, tmp / "forgetting.csv")
            fg.heatmap(entries, tmp / "forgetting.png", confidence)
        (tmp / "table.md").write_text(md, encoding="utf-8")
        table.write_csv(rows, refs, tmp / "table.csv")
        plot(rows, refs, confidence, tmp / "benchmarks.png")
        (tmp / table.PROTOCOL).write_text(protocol.markdown(cards), encoding="utf-8")
        (tmp / "protocol.json").write_text(json.dumps(cards, indent=2, default=str) + "\n", encoding="utf-8")
        (tmp / "reference_answers.md").write_text(reference_answers(gptq, adapters, models, students),
                                                  encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps({"rows": rows, "reference": refs, "forgetting": entries},
                                                    indent=2) + "\n", encoding="utf-8")
        log_report(rows, tmp, eval_dirs, entries)
    print(md)
    return rows


def log_report(rows: Sequence[dict[str, Any]], folder: Path, eval_dirs: Sequence[Path],
               forgetting: Sequence[dict[str, Any]] = ()) -> None:
    """Onto the workflow invocation's run (the one the MLflow UI opens first); a new run when the
    stage runs alone from its CLI."""
    parent = os.environ.get(tracking.ENV_PARENT)
    metrics = {}
    for r in rows:
        for g, s in r["groups"].items():
            if s["value"] is not None:
                metrics[f"report/{r['model']}/{g}"] = s["value"]
    for e in forgetting:
        metrics[f"forgetting/{e['variant']}/{e['dataset']}"] = e["loss"]["value"]
    files = ("table.md", "table.csv", "benchmarks.png", table.PROTOCOL, "protocol.json", "reference_answers.md",
             "report.json", *(("forgetting.csv", "forgetting.png") if forgetting else ()))
    if parent:
        client, exp_id = tracking.connect()
        run = tracking.Run(client, parent, exp_id)
        _log(run, metrics, folder, files)
        run.write_record(folder, "report", "table")
        return
    inputs = {f"eval.{Path(d).parent.name}.{Path(d).name}": d for d in eval_dirs}
    with tracking.stage_run("report", "table", {"models": [r["model"] for r in rows]}, inputs=inputs) as run:
        _log(run, metrics, folder, files)
        run.write_record(folder, "report", "table")


def _log(run: tracking.Run, metrics: Mapping[str, float], folder: Path, files: Sequence[str]) -> None:
    run.log_metrics({tracking.metric_name(k): v for k, v in metrics.items()})
    for name in files:
        run.log_artifact(folder / name, "report")
    # The table is the study's answer: put it where the run page opens, its description.
    table_md = (folder / "table.md").read_text(encoding="utf-8")
    run.describe(table_md)  # a report run of its own (CLI): its description, written when it ends
    run.set_tags({tracking.MLFLOW_RUN_NOTE: "**workflow** report (files under *Artifacts* → `report/`; the "
                                            "*Models* tab compares the variants per benchmark)\n\n" + table_md})


def main() -> None:
    from sophia.cli import load_spec, parser

    p: argparse.ArgumentParser = parser("Build the comparison table and plot (stage report).")
    p.add_argument("--eval", required=True, type=Path, nargs="+", help="evaluate stage output directories")
    p.add_argument("--base", required=True, type=Path, help="base model directory")
    p.add_argument("--gptq", type=Path, help="GPTQ model directory")
    p.add_argument("--adapter", action="append", default=[], metavar="CURRICULUM=DIR",
                   help="a curriculum's final adapter directory (repeatable)")
    p.add_argument("--distill", action="append", default=[], metavar="NAME=DIR",
                   help="a distill stage output (results/distill/NAME, its control inside) (repeatable)")
    p.add_argument("--forgetting", action="append", default=[], type=Path, metavar="DIR",
                   help="a variant's held-out losses (results/forgetting/<model>) (repeatable)")
    args = p.parse_args()
    adapters, students = _pairs(args.adapter, "--adapter", "CURRICULUM"), _pairs(args.distill, "--distill", "NAME")
    run_stage(load_spec(args.spec), args.eval, args.base, args.gptq, adapters, args.out, students, args.forgetting)


def _pairs(items: Sequence[str], flag: str, key: str) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise DataError(f"{flag} {item}: expected {key}=DIR")
        out[name] = Path(path)
    return out
