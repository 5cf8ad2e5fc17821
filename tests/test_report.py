"""Report stage: the table, CSV and plot from known scores files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from sophia.errors import DataError
from sophia.evaluate import protocol
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.scoring import combine, summarize
from sophia.report import stage as report_stage
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
            cut = {"requests": len(values), "truncated": 1 if bench == "bbh" else 0, "allowed": 0.0,
                   "share": (1 if bench == "bbh" else 0) / len(values)}
            card = {"benchmark": bench, "lm_eval_version": "0.4.13", "items_scored": len(values),
                    "shots": 3 if bench == "bbh" else 0, "truncated_share": cut["share"]}
            (d / "scores.json").write_text(json.dumps({"model": model, "benchmark": bench, "metrics": metrics,
                                                       "score": metrics[metric], "truncation": cut,
                                                       "protocol": card}))
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


def test_unscored_members_mark_the_group_partial_and_one_item_keeps_the_interval() -> None:
    per_bench = {b: {"score": summarize(v, 0.9)} for b, v in KNOWN["base"].items()}
    per_bench["siqa"] = {"score": summarize([], 0.9)}  # an old scores file with value null
    commonsense = table.group_scores(per_bench, 0.9)["commonsense"]
    assert commonsense["members"] == ["piqa", "winogrande", "arc_easy", "arc_challenge"]
    assert commonsense["value"] == pytest.approx((0.5 + 0.5 + 0.75 + 0.25) / 4)
    assert table.partial(commonsense) == "4/5" and table._cell(commonsense).endswith("(4/5)")
    with pytest.raises(ValueError, match="no value"):
        combine([summarize([1.0], 0.9), summarize([], 0.9)], 0.9)
    # a member with one item: Wilson's interval stands in for its unknown standard error
    one = combine([summarize([1.0], 0.9), summarize([1, 0, 1, 0], 0.9)], 0.9)
    assert one["ci_low"] is not None and one["ci_low"] < one["value"] < one["ci_high"]
    frac = combine([summarize([0.3], 0.9), summarize([0.5, 0.7], 0.9)], 0.9)  # one fractional item
    assert frac["stderr"] == pytest.approx(math.sqrt(0.5**2 + 0.1**2) / 2)


def test_protocol_fields_that_differ_are_shown_per_model() -> None:
    cards = {"gsm8k": {"base": {"shots": 8, "items_scored": 1319}, "gptq": {"shots": 8, "items_scored": 817}}}
    md = protocol.markdown(cards)
    assert "| shots | 8 |" in md and "| items_scored | base: 1319; gptq: 817 |" in md
    assert '<a id="math"></a>' in md and '<a id="gsm8k"></a>' in md


def test_table_csv_and_plot(micro_model: Path, tmp_path: Path, mlflow_store: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = write_scores(tmp_path / "eval")
    reference = [{"name": "Phi-2", "model": "base", "source": "paper",
                  "scores": {"bbh": 59.2, "commonsense": 68.8, "math": 61.1, "coding": 53.7}},
                 {"name": "GPTQ (study)", "model": "gptq", "protocol": "BBH 259 items", "size_gb": 1.84,
                  "scores": {"bbh": 50.75, "coding": 21.39}}]
    out = tmp_path / "report"
    spec: dict[str, Any] = {"confidence": 0.9, "models": ["base", "gptq"], "reference": reference}
    # base only (no GPTQ dir): sizes for the base row, none for gptq
    drawn: dict[str, Any] = {}
    real = report_stage.grouped_bars
    monkeypatch.setattr(report_stage, "grouped_bars", lambda *a, **kw: drawn.update(kw) or real(*a, **kw))
    run_stage(spec, dirs, micro_model, None, {}, out)
    assert drawn["notes"]["gptq"] == [None, "1/5", None, "1/2"] and drawn["notes"]["base"] == [None] * 4
    md = (out / "table.md").read_text()
    lines = md.splitlines()
    base_row = next(line for line in lines if line.startswith("| base |"))
    assert base_row.split(" | ")[1].startswith("25.0 [")  # BBH 1/4 with its Wilson interval
    assert "| 50.0 [" in base_row  # commonsense mean of the five
    gptq_row = next(line for line in lines if line.startswith("| gptq |"))
    assert "(1/5)" in gptq_row and "(1/2)" in gptq_row  # groups measured only partly say so
    assert "| Phi-2 (published) | 59.2 | 68.8 | 61.1 | 53.7 | — | — | — |" in md
    assert "| GPTQ (study) (published) | 50.8 | — | — | 21.4 | — | 1840 | — |" in md
    assert "- GPTQ (study) (gptq): BBH 259 items" in md
    # measured against published, per matched variant: base BBH 25.0 vs 59.2
    assert "| base | Phi-2 | 25.0 / 59.2 (Δ -34.2) |" in md
    assert "| gptq | GPTQ (study) | 50.0 / 50.8 (Δ -0.8) | — | — | 100.0 (1/2) / 21.4 (Δ +78.6) |" in md
    # truncated share per model (1 of the 4 BBH requests of 32 base requests) and per benchmark
    assert base_row.split(" | ")[5] == f"{100 / 32:.1f} %" and "; cut 25.0 %" in md
    assert "[BBH](protocol.md#bbh)" in md and "[Coding](protocol.md#coding)" in md
    cards = (out / "protocol.md").read_text()
    assert '<a id="coding"></a>' in cards and '<a id="humaneval"></a>' in cards
    assert "| shots | 3 |" in cards and "| items_scored | 2 |" in cards  # equal for both models: one value
    rows = {r["model"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert float(rows["base"]["commonsense"]) == pytest.approx(0.5)
    assert float(rows["Phi-2"]["bbh"]) == pytest.approx(0.592) and rows["Phi-2"]["published"] == "True"
    assert rows["Phi-2"]["reference_model"] == "base" and rows["GPTQ (study)"]["protocol"] == "BBH 259 items"
    assert rows["gptq"]["commonsense_measured"] == "1/5" and rows["base"]["commonsense_measured"] == "5/5"
    assert float(rows["base"]["bbh_truncated_share"]) == 0.25
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
