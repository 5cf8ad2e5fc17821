"""Stage function: dataset spec + base tokenizer → results/data/{dataset}/ + one MLflow run."""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from sophia import references, tracking
from sophia.atomic import atomic_dir
from sophia.config import validate_dataset
from sophia.data import formats, readers, sampling, stats
from sophia.errors import DataError, ModelError
from sophia.prompt import build_completion, build_prompt
from sophia.tracking import data as tracking_data

log = logging.getLogger(__name__)


def _scan(spec: dict[str, Any], fmt: references.Format, groups: list[str | None], source: str) -> dict[str, Any]:
    """First pass: validate every row and index the usable ones by language."""
    pools: dict[str | None, list[int]] = {g: [] for g in groups}
    skipped: Counter[str] = Counter()
    other: Counter[str] = Counter()
    total = 0
    for number, row, problem in readers.read_rows(spec):
        total += 1
        problem = problem or formats.row_problem(row, fmt)
        if problem:
            if spec["invalid_rows"] == "error":
                raise DataError(f"{source}: row {number}: {problem}")
            skipped[problem] += 1
            continue
        group = row[fmt.language_field] if fmt.language_field else None
        if group in pools:
            pools[group].append(number)
        else:
            other[group] += 1
    return {"pools": pools, "skipped": skipped, "other": other, "rows_read": total}


def _check_pools(scan: dict[str, Any], spec: dict[str, Any], groups: list[str | None], source: str) -> None:
    need = sampling.quotas(spec["tasks"], groups)
    for group in groups:
        have, want = len(scan["pools"][group]), sum(need[group].values())
        if have >= want:
            continue
        detail = ", ".join(f"{t} {s} {n}" for (t, s), n in need[group].items() if n)
        where = f"language '{group}'" if group is not None else "the dataset"
        msg = f"{source}: {where} has {have} usable rows, {want} needed ({detail})"
        if group is not None and have == 0 and scan["other"]:
            msg += f"; languages present: {', '.join(sorted(map(str, scan['other'])))}"
        if scan["skipped"]:
            msg += f"; skipped rows: {dict(scan['skipped'])}"
        raise DataError(msg)


def _collect(spec: dict[str, Any], wanted: set[int]) -> dict[int, dict[str, Any]]:
    """Second pass: fetch only the sampled rows (keeps memory flat on million-row sources)."""
    return {number: row for number, row, _ in readers.read_rows(spec) if number in wanted}


Records = dict[tuple[str, str], list[dict[str, Any]]]


def build_records(name: str, spec: dict[str, Any]) -> tuple[Records, dict[str, Any]]:
    """Sample and format every (task, split); return the records and the scan summary."""
    fmt = references.FORMATS[spec["format"]]
    source = readers.describe(spec)
    groups: list[str | None] = list(spec["languages"]) if fmt.language_field else [None]
    scan = _scan(spec, fmt, groups, source)
    _check_pools(scan, spec, groups, source)
    picked = sampling.sample(scan["pools"], spec["tasks"], groups, spec["seed"])
    rows = _collect(spec, {row for pairs in picked.values() for row, _ in pairs})
    records: Records = {}
    for (task, split), pairs in picked.items():
        out = []
        for i, (number, language) in enumerate(pairs):
            instruction, answer = formats.example(spec["format"], task, rows[number])
            out.append({
                "id": f"{name}/{task}/{split}/{i:06d}",
                "task": task,
                "language": language,
                "prompt": build_prompt(instruction),
                "completion": build_completion(answer),
                "source_row": number,
            })
        records[(task, split)] = out
    summary = {
        "source": source,
        "rows_read": scan["rows_read"],
        "rows_skipped": dict(scan["skipped"]),
        "usable_rows": {str(g) if g is not None else "all": len(p) for g, p in scan["pools"].items()},
    }
    return records, summary


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelError(f"--tokenizer: cannot load a tokenizer from {path}: {exc}") from exc


def run_stage(name: str, spec: dict[str, Any], tokenizer_dir: Path, out: Path) -> dict[str, Any]:
    spec = validate_dataset(name, spec)
    tokenizer = _load_tokenizer(tokenizer_dir)
    with tracking.stage_run("data", name, spec, inputs={"base_model": tokenizer_dir}) as run:
        records, summary = build_records(name, spec)
        summary.update(dataset=name, format=spec["format"], tokenizer=str(tokenizer_dir), tasks={})
        metrics: dict[str, float] = {"rows_read": summary["rows_read"],
                                     "rows_skipped": sum(summary["rows_skipped"].values())}
        with atomic_dir(out) as tmp:
            for (task, split), recs in records.items():
                (tmp / task).mkdir(exist_ok=True)
                with open(tmp / task / f"{split}.jsonl", "w", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
                s = stats.split_stats(recs, tokenizer)
                summary["tasks"].setdefault(task, {})[split] = s
                metrics[f"{task}.{split}.rows"] = s["rows"]
                for part, q in s["tokens"].items():
                    for k in ("p50", "p95", "max"):
                        if k in q:
                            metrics[f"{task}.{split}.tokens_{part}.{k}"] = q[k]
            (tmp / "stats.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            run.write_record(tmp, "data", name)
            run.log_metrics(metrics)
            run.log_datasets(tracking_data.data_splits(tmp, final=out))
            run.describe(f"Dataset `{name}` from {summary['source']}: {summary['rows_read']:,} rows read, "
                         f"{metrics['rows_skipped']:,} skipped.",
                         {f"{t}/{s}": len(r) for (t, s), r in records.items()})
            tracking.log_output(run, tmp, out, ("stats.json",))
            run.log_text(_preview(records), "samples.md")
    log.info("dataset %s: %s", name, {f"{t}/{s}": len(r) for (t, s), r in records.items()})
    return summary


def _preview(records: Records, per_task: int = 3) -> str:
    """A few formatted examples per task, for eyeballing the template in the MLflow UI."""
    parts = []
    for (_task, split), recs in records.items():
        if split != "train":
            continue
        for r in recs[:per_task]:
            head = f"### {r['id']} ({r['language'] or 'no language'})"
            parts.append(f"{head}\n```\n{r['prompt']}{r['completion']}\n```\n")
    return "\n".join(parts)


def main() -> None:
    from sophia.cli import load_spec, parser

    p: argparse.ArgumentParser = parser("Sample an instruction dataset (stage data).")
    p.add_argument("--name", required=True, help="dataset name (output folder, MLflow variant)")
    p.add_argument("--tokenizer", required=True, type=Path, help="base model directory (for token stats)")
    args = p.parse_args()
    run_stage(args.name, load_spec(args.spec), args.tokenizer, args.out)
