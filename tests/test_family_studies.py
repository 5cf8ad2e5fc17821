"""The Llama (DeepSeek-Coder layout) and Qwen2 (Qwen2.5-Coder layout) micro studies through the whole
DAG: every stage's output, the export's and the GGUF's parity gates, a completion and a
fill-in-the-middle completion from `sophia serve`, and the phone app on the family's bundle in
headless Chromium. Each study runs once per test run (tests/family_studies.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest
from family_studies import FAMILIES, family_config
from micro_dag import MicroDag

pytestmark = pytest.mark.parametrize("family", FAMILIES)
VARIANT = "gptq+alpaca"  # the one variant .test/<family>.yaml evaluates and exports


@pytest.fixture
def study(family_dag: MicroDag) -> Path:
    """results/ of the family's study, once it has ended."""
    result = family_dag.wait()
    if result.returncode != 0:
        pytest.fail(f"the {family_dag.root.name} study failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return family_dag.workdir / "results"


def test_every_stage_ran_on_the_family(study: Path, family: str) -> None:
    from sophia.base_model.families import FAMILIES as SPECS

    base = json.loads((study / "models" / "base" / "config.json").read_text())
    assert base["model_type"] == family and base["architectures"] == [SPECS[family].model_class]
    merged = json.loads((study / "merged" / VARIANT / "config.json").read_text())
    assert merged["model_type"] == family and "quantization_config" not in merged
    gptq = json.loads((study / "models" / "gptq" / "config.json").read_text())
    assert gptq["quantization_config"]["bits"] == family_config(family)["quantize"]["bits"]
    adapter = json.loads((study / "adapters" / "alpaca" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"}
    scores = json.loads((study / "eval" / VARIANT / "humaneval" / "scores.json").read_text())
    limit = family_config(family)["evaluate"]["benchmarks"]["humaneval"]["limit"]
    assert scores["model"] == VARIANT and "pass@1" in scores["metrics"] and scores["score"]["n"] == limit, scores
    assert VARIANT in (study / "report" / "table.md").read_text()
    if family == "llama":  # .test/llama.yaml distils a Llama student from its Llama teacher
        for student in (study / "distill" / "micro", study / "distill" / "micro" / "control"):
            assert json.loads((student / "config.json").read_text())["model_type"] == "llama", student


def test_export_passes_its_parity_gates(study: Path, family: str) -> None:
    out = study / "export" / VARIANT
    parity = json.loads((out / "parity.json").read_text())
    assert parity["failures"] == [] and set(parity["tflite"]) == {"window_fp32", "kv_fp32"}
    assert parity["torch_kv_vs_full_max_abs"] < 1e-4 and parity["torch_prefill_decode_vs_full_max_abs"] < 1e-4
    assert all(r["greedy_equal"] for r in parity["tflite"].values())
    prompt = json.loads((out / "bundle" / "prompt.json").read_text())
    bos = [json.loads((study / "models" / "base" / "config.json").read_text())["bos_token_id"]]
    assert prompt["family"] == family and prompt["prefix_ids"] == (bos if family == "llama" else [])


def test_gguf_passes_its_parity_gates(study: Path) -> None:
    parity = json.loads((study / "gguf" / VARIANT / "parity.json").read_text())
    f16 = parity["types"]["f16"]
    assert parity["failures"] == [] and f16["tokens"]["equal"], f16["tokens"]
    assert f16["greedy_equal"] and f16["greedy"][0]["tokens"] == parity["greedy_tokens_torch"][0]


@pytest.fixture
def served(study: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from test_serve_fim import start

    path = study / "gguf" / VARIANT / "model-f16.gguf"
    proc, url = start(path, tmp_path / "serve.log", "--ctx", "64")
    try:
        yield {"url": url, "path": path, "parity": json.loads((path.parent / "parity.json").read_text())}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_answers_and_fills_in_the_middle(served: dict[str, Any], study: Path, family: str) -> None:
    """A request gives the GGUF parity run's greedy tokens; a prefix and suffix give llama.cpp's own
    greedy continuation of [BOS] <fim prefix> prefix <fim suffix> suffix <fim middle>, with the
    family's FIM tokens (DeepSeek-Coder's or Qwen's)."""
    from sophia.base_model.families import FAMILIES as SPECS
    from test_serve_fim import NAME, bos, greedy
    from transformers import AutoTokenizer

    client = ollama.Client(host=served["url"])
    parity = served["parity"]
    prompt_ids, want = parity["greedy_prompt_ids"][0], parity["types"]["f16"]["greedy"][0]["tokens"]
    r = client.generate(NAME, family_config(family)["reference_prompts"][0],
                        options={"temperature": 0, "num_predict": len(want) or 1, "stop": []})
    assert list(r.context) == prompt_ids + want, (r.context, prompt_ids, want)

    tok = AutoTokenizer.from_pretrained(study / "merged" / VARIANT)
    fim = [tok.convert_tokens_to_ids(t) for t in SPECS[family].fim]
    assert client.show(NAME).capabilities == ["completion", "insert"]
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    expected_prompt = [*bos(served), fim[0], *tok.encode(prefix, add_special_tokens=False), fim[1],
                       *tok.encode(suffix, add_special_tokens=False), fim[2]]
    n = 4
    r = client.generate(NAME, prefix, suffix=suffix, options={"num_predict": n, "temperature": 0})
    assert r.context == expected_prompt + greedy(served["path"], expected_prompt, n)


def test_app_runs_the_bundle_in_headless_chromium(study: Path, tmp_path: Path) -> None:
    from test_mobile import build_app, in_chromium

    report = in_chromium(build_app(study / "export" / VARIANT / "bundle", tmp_path), tmp_path / "artifacts")
    assert "generate mode: greedy token ids equal the Python reference (KV cache)" in {r["name"]
                                                                                      for r in report["results"]}
