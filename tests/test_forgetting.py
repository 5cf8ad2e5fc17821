"""The forgetting matrix: what it measures (plan), the held-out answer loss of a loaded model
(losses), the per-variant stage with its intermediate steps and cache, and the report's paired
bootstrap intervals, table, sentences and heatmap. All on a scratch model built here (seconds)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scratch_model
import torch
from sophia import lm
from sophia.forgetting import losses, plan
from sophia.forgetting import stage as fstage
from sophia.prompt import build_completion, build_prompt
from sophia.report import forgetting as fg

CURRICULA = {"alpaca": ["alpaca"], "tiny": ["tiny_codegen", "tiny_summary"],
             "tiny-alpaca": ["tiny_codegen", "tiny_summary", "alpaca"]}
PHASES = {"alpaca": {"dataset": "alpaca", "tasks": ["instruct"], "max_length": 64},
          "tiny_codegen": {"dataset": "tiny", "tasks": ["codegen"], "max_length": 96},
          "tiny_summary": {"dataset": "tiny", "tasks": ["summary"], "max_length": 128}}


def test_plan_measures_every_step_once_and_names_the_previous_one() -> None:
    assert plan.splits(PHASES, CURRICULA) == {"alpaca": ["instruct"], "tiny": ["codegen", "summary"]}
    assert plan.window(PHASES, CURRICULA) == 128
    rows = plan.job_rows(CURRICULA, ["base", "gptq", "gptq+alpaca", "gptq+tiny", "gptq+tiny-alpaca"])
    # tiny_codegen is no evaluated variant's final adapter: the first curriculum through it measures it
    assert [r["label"] for r in rows["gptq+tiny"]] == ["gptq+tiny", "step:tiny_codegen"]
    assert [r["label"] for r in rows["gptq+tiny-alpaca"]] == ["gptq+tiny-alpaca"]
    prev = {r["label"]: r["previous"] for rs in rows.values() for r in rs}
    assert prev == {"base": None, "gptq": "base", "gptq+alpaca": "gptq", "gptq+tiny": "step:tiny_codegen",
                    "step:tiny_codegen": "gptq", "gptq+tiny-alpaca": "gptq+tiny"}
    # without gptq+tiny evaluated, tiny-alpaca's job measures both earlier steps
    rows = plan.job_rows(CURRICULA, ["base", "gptq", "gptq+tiny-alpaca"])
    assert [r["label"] for r in rows["gptq+tiny-alpaca"]] == [
        "gptq+tiny-alpaca", "step:tiny_codegen", "step:tiny_codegen/tiny_summary"]
    assert rows["gptq+tiny-alpaca"][0]["previous"] == "step:tiny_codegen/tiny_summary"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_model.build(tmp_path_factory.mktemp("scratch"))


def _rows(n: int, long: bool = False) -> list[dict[str, Any]]:
    return [{"prompt": build_prompt(("write code " * 80 if long and i == 0 else "") + f"double {i}"),
             "completion": build_completion(f"def f(x): return x * {i}")} for i in range(n)]


def test_answer_loss_is_the_answer_tokens_nll_whatever_the_batch(scratch: Path) -> None:
    model, tok = lm.load(scratch, torch.device("cpu"))
    rows = _rows(5)
    one = losses.answer_losses(model, tok, rows, 128, batch_size=1)
    batched = losses.answer_losses(model, tok, rows, 128, batch_size=3)  # right padding changes nothing
    assert [r["tokens"] for r in one] == [r["tokens"] for r in batched]
    assert np.allclose([r["nll"] for r in one], [r["nll"] for r in batched], atol=1e-4)
    # independently: the model's own mean loss over the answer tokens (labels -100 on the prompt)
    ids, start = losses.encode(tok, rows[0]["prompt"], rows[0]["completion"], 128)
    assert ids[-1] == tok.eos_token_id and 0 < start < len(ids)
    # the loss starts exactly at the answer: the prompt before it, the answer and EOS after it
    assert tok.decode(ids[:start]) == rows[0]["prompt"]
    assert tok.decode(ids[start:]) == rows[0]["completion"] + tok.eos_token
    labels = torch.tensor([[-100] * start + ids[start:]])
    with torch.no_grad():
        mean = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
    assert one[0]["tokens"] == len(ids) - start
    assert one[0]["nll"] / one[0]["tokens"] == pytest.approx(mean, rel=1e-5)
    # an answer beyond the window is dropped, not scored as zero
    cut = losses.answer_losses(model, tok, _rows(2, long=True), 64)
    assert cut[0] == {"nll": None, "tokens": 0} and cut[1]["tokens"] > 0


def _lora(scratch: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model, _ = lm.load(scratch, torch.device("cpu"))
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, cfg).save_pretrained(out)
    return out


def _data(root: Path) -> dict[str, Path]:
    for dataset, task, n in (("alpaca", "instruct", 6), ("tiny", "codegen", 4)):
        folder = root / dataset / task
        folder.mkdir(parents=True)
        lines = [json.dumps({"id": f"{task}-{i}", "language": None if dataset == "alpaca" else ["Ruby", "Bash"][i % 2],
                             **r}) for i, r in enumerate(_rows(n))]
        (folder / "eval.jsonl").write_text("\n".join(lines) + "\n")
    return {"alpaca": root / "alpaca", "tiny": root / "tiny"}


def test_stage_measures_its_steps_on_one_loaded_model_and_caches(scratch: Path, tmp_path: Path,
                                                                 mlflow_store: str) -> None:
    own, step = _lora(scratch, tmp_path / "own", 1), _lora(scratch, tmp_path / "step", 2)
    from sophia import tracking

    client, experiment = tracking.connect()
    logged = client.create_logged_model(experiment, name="gptq_tiny").model_id  # as finetune files the variant
    for i, folder in enumerate((scratch, own, step)):  # the runs that made them: the cache key's inputs
        models = {"gptq+tiny": logged} if folder == own else {}
        (folder / "mlflow_run.json").write_text(json.dumps({"run_id": f"run{i}", "models": models}))
    data = _data(tmp_path / "data")
    spec = {"forgetting": {"max_length": None, "batch_size": 4}, "window": 128,
            "splits": {"alpaca": ["instruct"], "tiny": ["codegen"]},
            "rows": [{"label": "gptq+tiny", "chain": "a/b/c", "previous": "step:a/b"},
                     {"label": "step:a/b", "chain": "a/b", "previous": "gptq"}]}
    loads: list[Path] = []

    def loader(model_dir: Path, adapter: Path | None, dev: torch.device) -> Any:
        loads.append(model_dir)
        return lm.load_variant(model_dir, adapter, dev)

    variant = lm.SharedVariant(scratch, own, torch.device("cpu"), loader=loader)
    out = tmp_path / "forgetting"
    summary = fstage.run_stage(spec, "gptq+tiny", scratch, own, {"step:a/b": step}, data, out, tmp_path / "cache",
                               variant)
    assert len(loads) == 1
    rows = summary["rows"]
    assert set(rows) == {"gptq+tiny", "step:a/b"} and rows["step:a/b"]["previous"] == "gptq"
    assert set(rows["gptq+tiny"]["splits"]) == {"alpaca/instruct", "tiny/codegen", "tiny/codegen/Ruby",
                                                "tiny/codegen/Bash"}
    assert rows["gptq+tiny"]["splits"]["alpaca/instruct"]["examples"] == 6
    # each row's own adapter: the step's losses are its adapter's, and the variant's come back after it
    model, tok = lm.load_variant(scratch, step, torch.device("cpu"))
    alone = fstage.summarise(fstage.measure(model, tok, fstage.eval_rows(spec["splits"], data), 128, 4))
    assert rows["step:a/b"]["splits"]["alpaca/instruct"]["loss"] == pytest.approx(alone["alpaca/instruct"]["loss"],
                                                                                rel=1e-5)
    assert rows["gptq+tiny"]["splits"]["alpaca/instruct"]["loss"] != pytest.approx(alone["alpaca/instruct"]["loss"])
    assert variant.get()[0].active_adapter == "default" and list(variant.get()[0].peft_config) == ["default"]
    lines = (out / fstage.LOSSES).read_text().splitlines()
    assert len(lines) == 2 * 10 and json.loads(lines[0])["row"] == "gptq+tiny"
    # one metric per dataset on the variant's LoggedModel (the Models tab's columns)
    filed = {(m.key, m.dataset_name) for m in client.get_logged_model(logged).metrics or []}
    assert {("heldout_loss.alpaca.instruct", "alpaca/instruct"), ("heldout_loss.tiny.codegen", "tiny/codegen")} <= filed
    run = client.get_run(json.loads((out / "mlflow_run.json").read_text())["run_id"])
    assert {"heldout_loss.alpaca.instruct", "heldout_loss.tiny.codegen", "heldout_loss.tiny.codegen.Ruby",
            "step_a/b.heldout_loss.alpaca.instruct"} <= set(run.data.metrics)
    assert run.data.metrics["heldout_loss.alpaca.instruct"] == rows["gptq+tiny"]["splits"]["alpaca/instruct"]["loss"]
    # unchanged: restored from the cache without loading the model
    import shutil

    shutil.rmtree(out)
    again = fstage.run_stage(spec, "gptq+tiny", scratch, own, {"step:a/b": step}, data, out, tmp_path / "cache",
                             lm.SharedVariant(scratch, own, torch.device("cpu"),
                                              loader=lambda *a: pytest.fail("loaded the model for a cached output")))
    assert again == summary
    with pytest.raises(Exception, match="no adapter given for step"):
        fstage.run_stage(spec, "gptq+tiny", scratch, own, {}, data, tmp_path / "other", None, variant)


def _examples(losses_: list[float], tokens: int = 10) -> fg.Example:
    return {str(i): (v * tokens, tokens) for i, v in enumerate(losses_)}


def test_paired_interval_finds_a_shift_the_independent_ones_hide() -> None:
    rng = np.random.default_rng(0)
    base = list(rng.normal(5.0, 1.0, 40))
    tuned = [v - 0.05 + rng.normal(0, 0.01) for v in base]  # every example 0.05 lower, spread 1.0
    a, b = _examples(tuned), _examples(base)
    ia, ib = fg.interval(a, None, "s", 0.9, 2000, 0), fg.interval(b, None, "s", 0.9, 2000, 0)
    assert ia["ci_high"] > ib["ci_low"]  # the losses' own intervals overlap
    d = fg.interval(a, b, "s", 0.9, 2000, 0)
    assert d["value"] == pytest.approx(np.mean(tuned) - np.mean(base)) and d["n"] == 40
    assert d["ci_high"] < 0 and fg.excludes_zero(d)
    noise = _examples([v + rng.normal(0, 0.3) for v in base])
    assert not fg.excludes_zero(fg.interval(noise, b, "s", 0.9, 2000, 0))
    # one example has no spread to resample: a value, no interval, never "excludes 0"
    one = fg.interval(_examples([5.0]), _examples([4.0]), "s", 0.9, 200, 0)
    assert one["value"] == pytest.approx(1.0) and one["ci_low"] is None and not fg.excludes_zero(one)
    assert fg.cell(one, signed=True) == "+1.0000 (n=1)"
    # only shared examples are paired
    assert fg.interval(a, {"0": (50.0, 10)}, "s", 0.9, 200, 0)["n"] == 1
    assert fg.interval(a, {"x": (50.0, 10)}, "s", 0.9, 200, 0) is None


def _folder(root: Path, model: str, rows: dict[str, tuple[str | None, str | None, dict[str, list[float]]]],
            tokenizer: str = "t") -> Path:
    folder = root / model
    folder.mkdir(parents=True)
    lines, summary = [], {"model_id": model, "tokenizer": tokenizer, "rows": {}}
    for label, (chain, prev, splits) in rows.items():
        summary["rows"][label] = {"chain": chain, "previous": prev}
        for split, values in splits.items():
            lines += [json.dumps({"row": label, "split": split, "id": i, "language": None, "nll": 10 * v,
                                  "tokens": 10}) for i, v in enumerate(values)]
    (folder / fg.LOSSES).write_text("\n".join(lines) + "\n")
    (folder / fg.SUMMARY).write_text(json.dumps(summary))
    return folder


def test_report_matrix_table_sentences_and_heatmap(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = {"tiny/codegen": list(rng.normal(5, 1, 30)), "tiny/summary": list(rng.normal(6, 1, 30))}
    shift = lambda d, c, s: {k: [v + (c if k == "tiny/codegen" else s) + rng.normal(0, 0.005) for v in vs]  # noqa: E731
                             for k, vs in d.items()}
    step1 = shift(base, -0.2, 0.0)       # codegen learnt
    step2 = shift(step1, 0.0, -0.1)      # summary learnt, codegen kept (no change shown)
    folders = [_folder(tmp_path, "base", {"base": (None, None, base)}),
               _folder(tmp_path, "gptq", {"gptq": (None, "base", base)}),
               _folder(tmp_path, "gptq+tiny", {"gptq+tiny": ("c/s", "step:c", step2), "step:c": ("c", "gptq", step1)}),
               _folder(tmp_path, "gptq+three", {"gptq+three": ("c/s/a", "gptq+tiny", shift(step2, 0.3, 0.0))}),
               _folder(tmp_path, "sft+x", {"sft+x": (None, None, base)}, tokenizer="other")]
    rows = fg.read(folders)
    assert list(rows) == ["base", "gptq", "step:c", "gptq+tiny", "gptq+three", "sft+x"]
    entries = fg.matrix(rows, 0.9, 1000, 0)
    get = {(e["variant"], e["dataset"]): e for e in entries}
    assert get[("step:c", "tiny/codegen")]["vs_previous"]["ci_high"] < 0
    assert not fg.excludes_zero(get[("gptq+tiny", "tiny/codegen")]["vs_previous"])
    assert get[("gptq+tiny", "tiny/summary")]["vs_base"]["value"] == pytest.approx(-0.1, abs=0.01)
    assert get[("sft+x", "tiny/codegen")]["vs_base"] is None  # another tokenizer: no paired difference
    chains = {k: r["chain"] for k, r in rows.items()}
    phases = {"c": {"dataset": "tiny", "tasks": ["codegen"]}, "s": {"dataset": "tiny", "tasks": ["summary"]}}
    md = fg.markdown(entries, chains, 0.9, {"tiny": ["c", "s"], "three": ["c", "s", "a"]},
                     {**phases, "a": {"dataset": "alpaca", "tasks": ["instruct"]}})
    three = next(line for line in md.splitlines() if line.startswith("- **three**"))
    assert "The third step (a) on the earlier steps' data: on tiny/codegen +0.3" in three
    assert "a cost (the loss rose); on tiny/summary" in three
    sentence = next(line for line in md.splitlines() if line.startswith("- **tiny**"))
    assert "c on tiny/codegen -0.2" in sentence and "a gain" in sentence
    assert "The second step (s) on the first step's data: on tiny/codegen" in sentence
    assert sentence.endswith("inside its interval: no change shown.")
    assert "| step:c | gptq | **-0.2" in md  # a difference that excludes 0 is bold
    fg.write_csv(entries, tmp_path / "forgetting.csv")
    table = list(csv.DictReader((tmp_path / "forgetting.csv").open()))
    row = next(r for r in table if r["variant"] == "gptq+tiny" and r["dataset"] == "tiny/summary")
    assert row["previous"] == "step:c" and float(row["previous_diff_ci_high"]) < 0 and row["examples"] == "30"
    fg.heatmap(entries, tmp_path / "forgetting.png", 0.9)
    assert (tmp_path / "forgetting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
