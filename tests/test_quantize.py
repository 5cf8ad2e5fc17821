from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import config_error, micro_config, runs_of
from sophia import generate, lm
from sophia.errors import ConfigError, DataError
from sophia.quantize.stage import run_stage


def stage_spec(**quantize: Any) -> dict[str, Any]:
    q = micro_config()["quantize"]
    q.update(quantize)
    return {"quantize": q, "reference_prompts": ["Give me a program that checks if a number is prime."],
            "generation": {"max_new_tokens": 8, "batch_size": 8}}


@pytest.fixture(scope="module")
def quantized(micro_gptq: Path) -> tuple[Path, dict]:
    return micro_gptq, json.loads((micro_gptq / "quantize.json").read_text())


def test_checkpoint_reloads_with_plain_transformers(quantized: tuple[Path, dict]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = quantized
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["bits"] == 4 and qcfg["group_size"] == 32 and qcfg["quant_method"] == "gptq"
    model = AutoModelForCausalLM.from_pretrained(out, device_map="cpu")
    tok = AutoTokenizer.from_pretrained(out)
    q_proj = dict(model.named_modules())["model.layers.0.self_attn.q_proj"]
    assert hasattr(q_proj, "qweight") and q_proj.qweight.dtype == torch.int32  # really packed int4
    ids = tok("Instruct: add two numbers\nOutput:", return_tensors="pt")
    out_ids = model.generate(**ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert out_ids.shape[1] == ids["input_ids"].shape[1] + 5


def test_cpu_measurements_use_the_exact_kernel(quantized: tuple[Path, dict]) -> None:
    """lm.load picks gptqmodel's plain torch kernel on CPU (fp32 dequantization, any group size)."""
    model, _ = lm.load(quantized[0], torch.device("cpu"))
    assert type(dict(model.named_modules())["model.layers.0.self_attn.q_proj"]).__name__ == "TorchLinear"


def test_cpu_inference_dequantizes_once_with_the_same_numbers(quantized: tuple[Path, dict]) -> None:
    """Eval-mode forwards reuse the dequantized weights (a decode step is one forward per token);
    the cached weights give the very logits that dequantizing afresh gives."""
    model, _ = lm.load(quantized[0], torch.device("cpu"))
    qlinears = [m for m in model.modules() if type(m).__name__ == "TorchLinear"]
    calls = []
    for m in qlinears:
        m.dequantize_weight = lambda *a, _f=m.dequantize_weight, **k: calls.append(1) or _f(*a, **k)
    ids = torch.arange(3, 19).reshape(2, 8)
    with torch.no_grad():
        fresh = model(input_ids=ids).logits
        assert len(calls) == len(qlinears)
        cached = model(input_ids=ids).logits
    assert len(calls) == len(qlinears), "the second forward dequantized again"
    assert torch.equal(fresh, cached)

def test_measurements(quantized: tuple[Path, dict]) -> None:
    out, summary = quantized
    # Micro model: hidden 64, embeddings (400 x 64, twice) stay fp32 and are ~40 % of the weights,
    # so the whole file shrinks far less than the 8x of the linears alone; > 1.4x still proves packing.
    assert summary["size_ratio"] > 1.4
    assert summary["size_after"]["weights_bytes"] < summary["size_before"]["weights_bytes"]
    assert summary["tensor_elements_after"]["int32"] > 0
    # 4-bit GPTQ with groups of 32 costs well under 1 % perplexity on real LMs (GPTQ paper, OPT/BLOOM
    # at g128: ~1-3 %); this barely trained model is flatter still. 5 % leaves room for noise but
    # catches a broken quantizer, which shows up as a large multiple of the base perplexity.
    assert summary["ppl_overall_after"] < summary["ppl_overall_before"] * 1.05
    assert set(summary["perplexity_after"]) == {"alpaca/instruct", "tiny/codegen", "tiny/summary"}
    assert 0 < summary["logits"]["mean_abs"] <= summary["logits"]["max_abs"]
    assert summary["quantize_seconds"] > 0 and summary["peak_rss_mb"] > 0
    answers = json.loads((out / "reference_answers.json").read_text())
    assert answers[0]["request"].startswith("Give me a program") and {"base", "gptq"} <= set(answers[0])
    assert (out / "quantize_logs").is_dir() and not (out / ".gptq_cwd").exists()


def test_nothing_written_to_the_working_directory(quantized: tuple[Path, dict]) -> None:
    assert not Path("logs").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"group_size": 48}, "quantize.group_size: 48 does not divide the model's hidden_size=64"),
    ],
)
def test_group_size_checked_before_work(change: dict, expected: str, micro_model: Path, micro_data: list[Path],
                                        mlflow_store: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=expected):
        run_stage(stage_spec(**change), micro_model, micro_data, tmp_path / "gptq")
    assert not (tmp_path / "gptq").exists()
    assert runs_of(mlflow_store) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda q: q.update(bits=5), "quantize.bits: 5 is not one of [2, 3, 4, 8]"),
        (lambda q: q["calibration"].update(n_samples=21),
         "quantize.calibration.n_samples: 21 exceeds the 20 training rows of alpaca/instruct"),
        (lambda q: q["calibration"].update(dataset="nope"), "quantize.calibration.dataset: 'nope' is not in datasets"),
        (lambda q: q["calibration"].update(task="summary"),
         "quantize.calibration.task: summary not built for dataset 'alpaca' (instruct)"),
        (lambda q: q.update(group_size=0), "quantize.group_size: 0 must be -1 or a positive integer"),
        (lambda q: q.update(damp_percent=1.5), "quantize.damp_percent: 1.5 is greater than or equal to"),
    ],
)
def test_bad_quantize_config_fails_at_start(mutate, expected: str) -> None:
    assert expected in config_error(mutate, "quantize")


def test_missing_calibration_rows(micro_model: Path, micro_data: list[Path], tmp_path: Path) -> None:
    """Data made with a smaller config than the quantize settings assume: named, not a crash."""
    spec = stage_spec()
    spec["quantize"]["calibration"]["n_samples"] = 500
    expected = r"instruct/train.jsonl: 20 rows, fewer than quantize.calibration.n_samples=500"
    with pytest.raises(DataError, match=expected):
        run_stage(spec, micro_model, micro_data, tmp_path / "gptq")


def test_quantize_run_lineage(quantized: tuple[Path, dict], micro_model: Path, micro_data: list[Path]) -> None:
    out, _ = quantized
    record = json.loads((out / "mlflow_run.json").read_text())
    from mlflow import MlflowClient

    run = MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert run.info.run_name == "quantize:w4g32" and run.info.status == "FINISHED"
    def run_id(path: Path) -> str:
        return json.loads((path / "mlflow_run.json").read_text())["run_id"]

    assert run.data.tags["sophia.input.base_model"] == run_id(micro_model)
    assert run.data.tags["sophia.input.data.alpaca"] == run_id(micro_data[0])
    for key in ("size_ratio", "ppl_before", "ppl_after", "quantize_seconds", "peak_rss_mb", "logit_max_abs_diff"):
        assert key in run.data.metrics


# --- shared helpers used by the stage -------------------------------------------------------


class _Uniform(torch.nn.Module):
    """A 'model' whose next-token distribution is uniform: its perplexity is the vocabulary size."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab) + self.w})()


def test_perplexity_of_uniform_model_is_vocab_size(micro_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(micro_model)
    result = lm.perplexity(_Uniform(len(tok)), tok, ["def f(x): return x", "a much longer text " * 5], max_length=32)
    assert math.isclose(result["ppl"], len(tok), rel_tol=1e-5)


def test_logit_difference_ignores_padding() -> None:
    a = torch.zeros(1, 3, 2)
    b = torch.tensor([[[0.5, 0.0], [0.0, 0.1], [9.0, 9.0]]])
    d = lm.logit_difference(a, b, torch.tensor([[1, 1, 0]]))
    assert d["max_abs"] == 0.5 and math.isclose(d["mean_abs"], 0.15, rel_tol=1e-6)


def test_cut_at_stop() -> None:
    assert generate.cut_at_stop(" def f(): pass\nInstruct: next task") == "def f(): pass"
    assert generate.cut_at_stop(" no stop here ") == "no stop here"


def test_answer_is_bounded_and_template_shaped(micro_model: Path) -> None:
    model, tok = lm.load(micro_model)
    results = generate.answer(model, tok, ["Reverse a string.", "A longer request about sorting lists."], 6)
    assert [r["request"] for r in results] == ["Reverse a string.", "A longer request about sorting lists."]
    for r in results:
        assert r["new_tokens"] <= 6 and r["finish"] in {"eos", "stop", "length"}
        assert "Instruct:" not in r["answer"]
    assert tok.padding_side == "right"  # restored


def test_per_row_groups(micro_model: Path, micro_data: list[Path], mlflow_store: str, tmp_path: Path) -> None:
    """group_size -1 (one scale per output row) needs gptqmodel's group-aware reordering off."""
    summary = run_stage(stage_spec(group_size=-1), micro_model, micro_data, tmp_path / "gptq")
    assert json.loads((tmp_path / "gptq" / "config.json").read_text())["quantization_config"]["group_size"] == -1
    assert summary["ppl_overall_after"] < summary["ppl_overall_before"] * 1.05
