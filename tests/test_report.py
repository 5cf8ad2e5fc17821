"""Report stage: the table, CSV and plot from known scores files, on a scratch model folder (sizes)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import scratch_model
from sophia.errors import DataError
from sophia.evaluate import protocol, results
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.scoring import combine, summarize
from sophia.report import compare, table
from sophia.report import stage as report_stage
from sophia.report.stage import run_stage

# model -> benchmark -> per-item 0/1 values (deterministic, so every number below is known)
KNOWN = {
    "base": {"bbh": [1, 0, 0, 0], "piqa": [1, 1, 0, 0], "winogrande": [1, 0], "arc_easy": [1, 1, 1, 0],
             "arc_challenge": [0, 0, 0, 1], "siqa": [1, 0, 1, 0], "gsm8k": [0, 0, 0, 0], "humaneval": [1, 0],
             "mbpp": [0, 0, 0, 0]},
    "gptq": {"bbh": [1, 1, 0, 0], "piqa": [1, 1, 1, 0], "humaneval": [1, 1]},
}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_model.build(tmp_path_factory.mktemp("base"))


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
                metrics["pass@1_sampled"] = summarize([0.1] * len(values), 0.9)
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


def test_table_csv_and_plot(base_dir: Path, tmp_path: Path, mlflow_store: str,
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
    run_stage(spec, dirs, base_dir, None, {}, out)
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
    # measured against published, per matched variant, each Δ with what differs: base BBH 25.0 vs 59.2,
    # with a quarter of our BBH prompts cut
    assert "| base | Phi-2 | 25.0 / 59.2 (Δ -34.2) ⚑ ours: bbh 25 % prompts cut | 50.0 / 68.8 (Δ -18.8) |" in md
    assert ("| gptq | GPTQ (study) | 50.0 / 50.8 (Δ -0.8) ⚑ ours: bbh 25 % prompts cut | — | — | "
            "100.0 / 21.4 (Δ +78.6) ⚑ ours: 1/2 benchmarks |") in md
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
    assert "; pass@1 sampled 10.0 [" in per_bench and "; CodeT 75.0 [" in per_bench and "; LEVER 25.0 [" in per_bench
    assert float(rows["gptq"]["humaneval_pass@1_sampled"]) == pytest.approx(0.1)
    assert int(rows["base"]["parameters"]) > 0 and rows["gptq"]["parameters"] == ""
    png = (out / "benchmarks.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"]


def test_missing_or_broken_scores_are_named(base_dir: Path, tmp_path: Path, mlflow_store: str) -> None:
    dirs = write_scores(tmp_path / "eval")
    spec: dict[str, Any] = {"confidence": 0.9, "models": ["base"], "reference": None}
    (dirs[0] / "scores.json").unlink()
    with pytest.raises(DataError, match=f"{dirs[0] / 'scores.json'}: missing"):
        run_stage(spec, dirs, base_dir, None, {}, tmp_path / "report")
    (dirs[0] / "scores.json").write_text("{not json")
    with pytest.raises(DataError, match="not an evaluate scores file"):
        run_stage(spec, dirs, base_dir, None, {}, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def _row(model: str, per_bench: dict[str, list[float]], cards: dict[str, dict[str, Any]] | None = None,
         params: int | None = None) -> dict[str, Any]:
    scores = {b: {"score": summarize(v, 0.9), "metrics": {BENCHMARKS[b].metric: summarize(v, 0.9)},
                  "protocol": {"items_scored": len(v), **(cards or {}).get(b, {})}} for b, v in per_bench.items()}
    return table.build_rows({model: scores}, [model], {model: {"parameters": params}}, 0.9)[0]


def test_a_humaneval_reference_is_compared_with_humaneval_alone_with_its_own_interval() -> None:
    row = _row("base", {"humaneval": [1, 0, 0, 0], "mbpp": [1, 1, 1, 1]},
               {"humaneval": {"cpu_caps": ["limit=4 items per task"]}})
    assert row["groups"]["coding"]["value"] == pytest.approx(0.625)  # the HumanEval/MBPP mean
    ref = {"name": "study", "model": "base", "scores": {"humaneval": 32.66}, "items": {"humaneval": 20},
           "differs": {"humaneval": "20-task subset"}}
    lines = compare.comparison([row], [ref], 0.9, "protocol.md")
    assert "[humaneval](protocol.md#humaneval)" in lines[-3] and "coding" not in lines[-3]
    cell = lines[-1].split(" | ")[2]
    low, high = compare.published_interval(ref, "humaneval", 0.9)
    assert high - low == pytest.approx(32.7, abs=1.5)  # 20 tasks: about ±16 points at 90 %
    assert cell.startswith(f"25.0 / 32.7 [{low:.1f}, {high:.1f}] (Δ -7.7) ⚑ 20-task subset; 20 vs our 4 items; "
                           "ours: humaneval limit=4 items per task")
    md = table.markdown([row], [ref], 0.9)
    assert f"| study (published) | {32.66:.1f} [{low:.1f}, {high:.1f}] |" in md  # per-benchmark table


def test_bbh_with_a_short_subtask_budget_is_flagged_in_its_cell() -> None:
    tasks = [f"bbh_cot_fewshot_t{i}" for i in range(27)]
    row = _row("base", {"bbh": [1, 0]}, {"bbh": {"tasks": tasks, "short_budget_subtasks": {"geometric_shapes": 24}}})
    assert table.flags(row, "bbh") == ["geometric_shapes at 24 tokens: BBH 26/27 in effect"]
    line = next(x for x in table.markdown([row], [], 0.9).splitlines() if x.startswith("| base |"))
    assert "⚑ geometric_shapes at 24 tokens: BBH 26/27 in effect" in line
    assert protocol.short_budgets({"subtask_max_gen_toks": {"geometric_shapes": 24, "salient": 256}}) == {
        "geometric_shapes": 24}
    card_tasks = "27 tasks: a … z"  # the card's short form when there are many
    row["protocol"]["bbh"]["tasks"] = card_tasks
    assert table.flags(row, "bbh") == ["geometric_shapes at 24 tokens: BBH 26/27 in effect"]


def test_bbh_is_the_macro_mean_of_its_subtasks_and_every_group_says_which_mean() -> None:
    rows = [{"doc_id": i, "filter": "get-answer", "exact_match": 1.0} for i in range(4)]
    samples = {"bbh_cot_fewshot_a": rows, "bbh_cot_fewshot_b": [{"doc_id": 0, "filter": "get-answer",
                                                                  "exact_match": 0.0}]}
    m = results.score(BENCHMARKS["bbh"], {}, samples, 0.9, None, 1)["metrics"]
    assert m["exact_match"]["value"] == 0.5 and m["exact_match"]["n"] == 5 and m["exact_match"]["tasks"] == 2
    assert m["exact_match_micro"]["value"] == 0.8
    md = protocol.markdown({b: {"base": {"aggregate": "x"}} for b in ("bbh", "piqa", "gsm8k", "humaneval")})
    for group in ("bbh", "commonsense", "math", "coding"):
        assert f"**Group {group}**: {protocol.AGGREGATION[group]}." in md
    assert md.count("**Group ") == 4 and "macro" in protocol.AGGREGATION["bbh"]


def test_the_default_table_says_in_one_bold_line_what_it_can_and_cannot_show() -> None:
    zero = {"humaneval": [0, 0], "mbpp": [0, 0], "gsm8k": [0, 0], "piqa": [1, 0]}
    rows = [_row("base", zero, params=4_200_000), _row("gptq", zero)]
    steps = [{"dataset": "tiny/codegen", "vs_previous": {"ci_low": -0.2, "ci_high": -0.1}},
             {"dataset": "tiny/codegen/Ruby", "vs_previous": {"ci_low": -0.2, "ci_high": -0.1}},
             {"dataset": "tiny/summary", "vs_previous": {"ci_low": -0.1, "ci_high": 0.1}}]
    md = table.markdown(rows, [], 0.9, forgetting=steps)
    bold = [x for x in md.splitlines() if x.startswith("**What this table")]
    assert len(bold) == 1 and bold[0].endswith(".**")
    assert "4.20 M-parameter base model" in bold[0] and "0 on Math, Coding:" in bold[0]
    assert "Commonsense" not in bold[0] and "(1 of 2 paired differences" in bold[0]
    rows[1] = _row("gptq", {**zero, "gsm8k": [1, 0]})
    assert "0 on Coding:" in table.markdown(rows, [], 0.9)
    rows[1] = _row("gptq", {**zero, "gsm8k": [1, 0], "humaneval": [1, 0]})
    assert "What this table" not in table.markdown(rows, [], 0.9)


def test_reference_items_and_differences_name_only_its_own_scores() -> None:
    from conftest import config_error

    def add(cfg: dict[str, Any]) -> None:
        cfg["report"] = {"reference": [{"name": "study", "model": "base", "scores": {"humaneval": 32.66},
                                        "items": {"coding": 20}}]}
    assert "report.reference[0].items: coding not among its scores (humaneval)" in config_error(add)
