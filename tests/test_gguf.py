"""Stage gguf: a real conversion of the micro model with llama.cpp's converter and quantizer, the
tokenizer mapping, the parity gates, the Modelfile, config checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import GGUF_SPEC, config_error, runs_of
from sophia.errors import ModelError
from sophia.gguf import modelfile, parity, pre_tokenizer, stage, tools
from sophia.provenance import sha256_file


def test_stage_writes_files_modelfile_and_parity(micro_gguf: Path) -> None:
    names = sorted(p.name for p in micro_gguf.iterdir())
    assert names == ["Modelfile", "convert.log", "gguf.json", "mlflow_run.json", "model-Q4_K_M.gguf",
                     "model-f16.gguf", "parity.json"]
    summary = json.loads((micro_gguf / "gguf.json").read_text())
    for kind, f in summary["files"].items():
        assert f["sha256"] == sha256_file(micro_gguf / f"model-{kind}.gguf")
    assert summary["files"]["Q4_K_M"]["bytes"] < summary["files"]["f16"]["bytes"]
    assert summary["ollama_name"] == "sophia-base:q4_k_m" and summary["num_ctx"] == 768
    report = json.loads((micro_gguf / "parity.json").read_text())
    assert report["failures"] == [] and report["pre_tokenizer"] == "gpt-2"
    f16 = report["types"]["f16"]
    assert f16["tokens"]["equal"] and f16["tokens"]["texts"] >= len(parity.TOKENIZATION_TEXTS)
    assert f16["greedy_equal"] and [g["tokens"] for g in f16["greedy"]] == report["greedy_tokens_torch"]
    assert f16["logits_max_abs"] < 0.05 and f16["argmax_agreement"] > 0.98
    assert report["types"]["Q4_K_M"]["tokens"]["equal"]
    text = (micro_gguf / "Modelfile").read_text()
    assert "FROM ./model-Q4_K_M.gguf\n" in text and "PARAMETER num_ctx 768\n" in text
    assert 'PARAMETER stop "\nInstruct:"\n' in text and "PARAMETER repeat_penalty 1\n" in text
    assert "\nSYSTEM" not in text and ".Suffix" not in text  # the micro Phi has no FIM tokens


def test_stage_logs_sizes_times_parity_and_files_to_mlflow(micro_gguf: Path) -> None:
    record = json.loads((micro_gguf / "mlflow_run.json").read_text())
    run = next(r for r in runs_of(record["tracking_uri"]) if r.info.run_id == record["run_id"])
    m = run.data.metrics
    assert m["convert_s"] > 0 and m["quantize_s.Q4_K_M"] > 0 and m["bytes.f16"] > m["bytes.Q4_K_M"] > 0
    assert m["f16.greedy_equal"] == 1.0 and m["f16.tokens_equal"] == 1.0 and "Q4_K_M.ppl_increase" in m
    assert run.data.tags["sophia.stage"] == "gguf" and run.data.tags["sophia.input.model"]


def test_llama_cpp_tokenizes_varied_text_like_the_hf_tokenizer(micro_gguf: Path, micro_model: Path) -> None:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    llm = Llama(str(micro_gguf / "model-f16.gguf"), n_ctx=64, verbose=False)
    try:
        check = parity.token_check(AutoTokenizer.from_pretrained(micro_model), llm, parity.TOKENIZATION_TEXTS)
        # the special token inside text is one id, as in the HF tokenizer
        assert llm.tokenize(b"a<|endoftext|>b", add_bos=True, special=True).count(0) == 1
    finally:
        llm.close()
    assert check == {"texts": len(parity.TOKENIZATION_TEXTS), "equal": True, "mismatches": []}


def test_retrained_bpe_is_not_recognised_without_the_explicit_mapping(micro_model: Path, tmp_path: Path) -> None:
    src = tools.converter_src(None)
    with pytest.raises(ModelError, match=r"pre-tokenizer was not recognized(.|\n)*gguf.pre_tokenizer"):
        tools.convert(src, micro_model, tmp_path / "x.gguf", None, tmp_path / "convert.log")
    assert not (tmp_path / "x.gguf").exists() or (tmp_path / "x.gguf").stat().st_size == 0


def test_pre_tokenizer_setting() -> None:
    assert pre_tokenizer("auto", {"scratch": {}}) == "gpt-2"
    assert pre_tokenizer("auto", {"hub": "microsoft/phi-2"}) is None  # hub models: the converter's detection
    assert pre_tokenizer("detect", {"scratch": {}}) is None
    assert pre_tokenizer("qwen2", {"hub": "x"}) == "qwen2"


def measured(**over: Any) -> dict[str, Any]:
    m = {"tokens": {"equal": True, "texts": 20, "mismatches": []}, "logits_max_abs": 0.01,
         "argmax_agreement": 0.99, "greedy_equal": True, "greedy": [{"equal": True, "first_difference": None}],
         "ppl_increase": 0.001}
    return {**m, **over}


def test_gates_name_the_check_and_the_config_key() -> None:
    from sophia.config import validate_section

    gates = validate_section({}, "gguf", "gguf")["parity"]["gates"]
    assert stage.gate_failures({"f16": measured(), "Q4_K_M": measured(argmax_agreement=0.9, ppl_increase=0.1)},
                               gates) == []
    bad = {"f16": measured(logits_max_abs=0.2, greedy_equal=False,
                           greedy=[{"equal": False, "first_difference": 3}]),
           "Q4_K_M": measured(argmax_agreement=0.5, ppl_increase=0.4,
                              tokens={"equal": False, "texts": 20,
                                      "mismatches": [{"text": "café", "first_difference": 1}]})}
    failures = stage.gate_failures(bad, gates)
    assert failures == [
        "model-f16.gguf: max |logit diff| 0.2 > gguf.parity.gates.f16.max_abs=0.05",
        "model-f16.gguf: greedy tokens differ from PyTorch generate (prompt, first differing token): [(0, 3)] "
        "(gguf.parity.gates.f16.greedy_equal=true)",
        "model-Q4_K_M.gguf: llama.cpp tokenizes 1 of 20 texts differently from the HF tokenizer "
        "(first: 'café' at token 1) (gguf.parity.gates.tokens_equal=true)",
        "model-Q4_K_M.gguf: argmax agreement 0.500 < gguf.parity.gates.Q4_K_M.argmax_agreement=0.8",
        "model-Q4_K_M.gguf: perplexity +40.0% vs PyTorch > gguf.parity.gates.Q4_K_M.max_ppl_increase=0.15",
    ]


def test_a_missed_gate_fails_the_stage_and_leaves_no_output(micro_model: Path, micro_data: list[Path],
                                                            tmp_path: Path, mlflow_store: str) -> None:
    from sophia.errors import ParityError

    spec = copy.deepcopy(GGUF_SPEC)
    spec["gguf"]["types"] = ["f16"]
    spec["gguf"]["modelfile_type"] = "f16"
    spec["gguf"]["parity"]["gates"] = {"tokens_equal": True, "f16": {"max_abs": 1e-9}}
    with pytest.raises(ParityError, match=r"max \|logit diff\| .* > gguf.parity.gates.f16.max_abs=1e-09"):
        stage.run_stage(spec, "base", micro_model, micro_data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [r.info.status for r in runs_of(mlflow_store)] == ["FAILED"]


def test_config_defaults_and_errors() -> None:
    from conftest import micro_config
    from sophia.config import validate

    cfg = validate(micro_config())
    assert cfg["gguf"]["models"] == cfg["export"]["models"] and cfg["gguf"]["types"] == ["f16", "Q4_K_M"]
    cfg_err = config_error(lambda c: c.update(gguf={"models": ["gptq+nope"]}))
    assert "gguf.models: gptq+nope unknown (variants: base, gptq, gptq+alpaca" in cfg_err
    assert "gguf.modelfile_type: Q8_0 is not among gguf.types (f16, Q4_K_M)" in config_error(
        lambda c: c.update(gguf={"modelfile_type": "Q8_0"}))
    assert "gguf.types.1: 'Q4_K_X' is not one of" in config_error(lambda c: c.update(gguf={"types": ["f16", "Q4_K_X"]}))
    assert "gguf.parity.gates.f16.max_ab: unknown key" in config_error(
        lambda c: c.update(gguf={"parity": {"gates": {"f16": {"max_ab": 1}}}}))


def test_template_and_python_rendering_agree_on_the_prompt_format() -> None:
    msgs = [{"role": "user", "content": "Reverse a string."}]
    assert modelfile.render_messages(msgs) == "Instruct: Reverse a string.\nOutput:"
    two = [*msgs, {"role": "assistant", "content": "s[::-1]"}, {"role": "user", "content": "Now in C."}]
    assert modelfile.render_messages(two) == ("Instruct: Reverse a string.\nOutput: s[::-1]\n"
                                              "Instruct: Now in C.\nOutput:")
    assert ".Suffix" not in modelfile.template()
    fim = modelfile.template(("<PRE>", "<SUF>", "<MID>"))
    assert fim.startswith("{{- if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{- else }}")
    assert modelfile.ollama_name("gptq+tiny-alpaca", "Q4_K_M") == "sophia-gptq-tiny-alpaca:q4_k_m"
