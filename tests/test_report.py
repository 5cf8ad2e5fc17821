"""Report stage: the table, CSV and plot from known scores files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sophia.errors import DataError
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.scoring import summarize
from sophia.report import table
from sophia.report.stage import run_stage

# model -> benchmark -> per-item 0/1 values (deterministic, so every number below is known)
KNOWN = {
    "base": {"bbh": [1, 0, 0, 0], "piqa": [1, 1, 0, 0], "winogrande": [1, 0], "arc_easy": [1, 1, 1, 0],
             "arc_challenge": [0, 0, 0, 1], "siqa": [1, 0, 1, 0], "gsm8k": [0, 0, 0, 0], "humaneval": [1, 0],
             "mbpp": [0, 0, 0, 0]},
    "gptq": {"bbh": [1, 1, 0, 0], "piqa": [1, 1, 1, 0], "humaneval": [1, 1]},
}


def write_scores(root: Path) -> list[Path]:
    dirs = []
    for model, benches in KNOWN.items():
        for bench, values in benches.items():
            d = root / model / bench
            d.mkdir(parents=True)
            metric = BENCHMARKS[bench].metric
            metrics = {metric: summarize(values, 0.9)}
            if BENCHMARKS[bench].code:
                metrics["pass@10"] = summarize([1.0] * len(values), 0.9)
                metrics["codet_pass@1"] = summarize([0.5, 1.0] * (len(values) // 2), 0.9)
                metrics["lever_pass@1"] = summarize([0.25] * len(values), 0.9)
            (d / "scores.json").write_text(json.dumps({"model": model, "benchmark": bench, "metrics": metrics,
                                                       "score": metrics[metric]}))
            dirs.append(d)
    return dirs


def test_groups_follow_the_paper() -> None:
    per_bench = {b: {"score": summarize(v, 0.9)} for b, v in KNOWN["base"].items()}
    groups = table.group_scores(per_bench, 0.9)
    assert groups["bbh"]["value"] == 0.25 and groups["math"]["value"] == 0.0
    assert groups["commonsense"]["value"] == pytest.approx((0.5 + 0.5 + 0.75 + 0.25 + 0.5) / 5)
    assert groups["coding"]["value"] == pytest.approx((0.5 + 0.0) / 2)
    partial = table.group_scores({"piqa": per_bench["piqa"]}, 0.9)
    assert partial["commonsense"]["members"] == ["piqa"] and len(partial["commonsense"]["expected"]) == 5


def test_table_csv_and_plot(micro_model: Path, tmp_path: Path, mlflow_store: str) -> None:
    dirs = write_scores(tmp_path / "eval")
    reference = {"name": "Phi-2", "source": "paper", "scores": {"bbh": 59.2, "commonsense": 68.8, "math": 61.1,
                                                                 "coding": 53.7}}
    out = tmp_path / "report"
    spec: dict[str, Any] = {"confidence": 0.9, "models": ["base", "gptq"], "reference": reference}
    # base only (no GPTQ dir): sizes for the base row, none for gptq
    run_stage(spec, dirs, micro_model, None, {}, out)
    md = (out / "table.md").read_text()
    lines = md.splitlines()
    base_row = next(line for line in lines if line.startswith("| base |"))
    assert base_row.split(" | ")[1].startswith("25.0 [")  # BBH 1/4 with its Wilson interval
    assert "| 50.0 [" in base_row  # commonsense mean of the five
    gptq_row = next(line for line in lines if line.startswith("| gptq |"))
    assert "(1/5)" in gptq_row and "(1/2)" in gptq_row  # groups measured only partly say so
    assert "| Phi-2 (published) | 59.2 | 68.8 | 61.1 | 53.7 |" in md
    rows = {r["model"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert float(rows["base"]["commonsense"]) == pytest.approx(0.5)
    assert float(rows["Phi-2"]["bbh"]) == pytest.approx(0.592) and rows["Phi-2"]["published"] == "True"
    assert float(rows["gptq"]["humaneval_pass@10"]) == 1.0
    assert float(rows["gptq"]["humaneval_codet_pass@1"]) == 0.75 and rows["gptq"]["humaneval_codet_pass@1_ci_low"]
    assert float(rows["base"]["mbpp_lever_pass@1"]) == 0.25
    per_bench = [line for line in lines if line.startswith("| gptq |")][-1]
    assert "; CodeT 75.0 [" in per_bench and "; LEVER 25.0 [" in per_bench
    assert int(rows["base"]["parameters"]) > 0 and rows["gptq"]["parameters"] == ""
    png = (out / "benchmarks.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"]


def test_missing_or_broken_scores_are_named(micro_model: Path, tmp_path: Path, mlflow_store: str) -> None:
    dirs = write_scores(tmp_path / "eval")
    spec: dict[str, Any] = {"confidence": 0.9, "models": ["base"], "reference": None}
    (dirs[0] / "scores.json").unlink()
    with pytest.raises(DataError, match=f"{dirs[0] / 'scores.json'}: missing"):
        run_stage(spec, dirs, micro_model, None, {}, tmp_path / "report")
    (dirs[0] / "scores.json").write_text("{not json")
    with pytest.raises(DataError, match="not an evaluate scores file"):
        run_stage(spec, dirs, micro_model, None, {}, tmp_path / "report")
    assert not (tmp_path / "report").exists()
