from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import MicroRun, assert_resumed_like_straight, config_error, kill_after_checkpoint, micro_config
from sophia import lm
from sophia.errors import ConfigError
from sophia.finetune import curricula, lora
from sophia.finetune.stage import run_stage


def step_spec(chain: str, **training: Any) -> dict[str, Any]:
    ft = micro_config()["finetune"]
    ft["training"].update(training)
    return {
        "chain": chain,
        "phase": ft["phases"][curricula.phase_of(chain)],
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": []},
        "training": ft["training"],
        "reference_prompts": ["Reverse a string."],
        "generation": {"max_new_tokens": 6, "batch_size": 8},
    }


def data_dir(micro_data: list[Path], name: str) -> Path:
    return next(d for d in micro_data if d.name == name)


# --- curricula and settings -----------------------------------------------------------------


def test_shared_prefixes_are_trained_once() -> None:
    chains = micro_config()["finetune"]["curricula"]
    steps = curricula.steps(chains)
    assert steps == ["alpaca", "tiny_codegen", "tiny_codegen/tiny_summary", "alpaca/tiny_mixed",
                     "tiny_codegen/tiny_summary/alpaca"]
    assert curricula.finals(chains)["tiny-alpaca"] == "tiny_codegen/tiny_summary/alpaca"
    assert curricula.parent("a/b/c") == "a/b" and curricula.parent("a") is None
    assert curricula.phase_of("a/b/c") == "c"


def test_family_targets_and_optimizer() -> None:
    assert lora.target_modules("phi", []) == ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
    assert lora.target_modules("gpt_neox", ["query_key_value"]) == ["query_key_value"]
    with pytest.raises(ConfigError, match="no default for model family 'gpt_neox'"):
        lora.target_modules("gpt_neox", [])


@pytest.mark.parametrize("bnb", [True, False])
def test_optimizer_choice(monkeypatch: pytest.MonkeyPatch, bnb: bool) -> None:
    """auto: paged 8-bit AdamW on CUDA where bitsandbytes is installed; 8-bit without CUDA or without
    bitsandbytes is a config error that says what to do."""
    real_find_spec = lora.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> object:
        if name == "bitsandbytes":
            return object() if bnb else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(lora.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert lora.optimizer("auto") == "adamw_torch"
    assert lora.optimizer("adamw_torch") == "adamw_torch"
    with pytest.raises(ConfigError, match="paged_adamw_8bit needs CUDA"):
        lora.optimizer("paged_adamw_8bit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if bnb:
        assert lora.optimizer("auto") == "paged_adamw_8bit"
        assert lora.optimizer("adamw_8bit") == "adamw_8bit"
    else:
        with pytest.raises(ConfigError, match=r"auto chooses paged_adamw_8bit .* needs bitsandbytes.*envs/cuda.txt"):
            lora.optimizer("auto")
        with pytest.raises(ConfigError, match="optimizer: adamw_8bit needs bitsandbytes"):
            lora.optimizer("adamw_8bit")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda f: f["curricula"].update(bad=["alpaca", "nope"]), "finetune.curricula.bad: unknown phase nope"),
        (lambda f: f["phases"]["alpaca"].update(dataset="x"), "finetune.phases.alpaca.dataset: 'x' is not in datasets"),
        (lambda f: f["phases"]["alpaca"].update(tasks=["summary"]), "finetune.phases.alpaca.tasks: summary not built"),
        (lambda f: f["phases"]["alpaca"].pop("epochs"), "finetune.phases.alpaca: 'epochs' is a required property"),
        (lambda f: f["training"].update(optimizer="sgd"), "finetune.training.optimizer: 'sgd' is not one of"),
    ],
)
def test_bad_finetune_config(mutate, expected: str) -> None:
    assert expected in config_error(mutate, "finetune")


# --- the correctness trap: gradients through the frozen int4 base ---------------------------


def _lora_grads(model: Any, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                  target_modules=lora.FAMILY_TARGETS["phi"]))
    # Same LoRA weights in both models, set by name; B non-zero (its default init of zero
    # would make every lora_A gradient zero and hide a broken path through the base).
    gen = torch.Generator().manual_seed(1)
    for _, p in sorted((n, p) for n, p in peft_model.named_parameters() if "lora_" in n):
        p.data = torch.randn(p.shape, generator=gen) * 0.1
    peft_model.train()
    peft_model(input_ids=batch, labels=batch).loss.backward()
    return {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}


def test_lora_gradients_match_dequantized_float_model(micro_gptq: Path, tmp_path: Path) -> None:
    """gptqmodel's default CPU kernel silently drops gradients through the frozen base when its
    first forward ran without grad; the kernel the finetune stage loads must not."""
    from gptqmodel.utils.model_dequant import dequantize_model
    from transformers import AutoModelForCausalLM

    quantized, _ = lm.load(micro_gptq, torch.device("cpu"), trainable=True)
    with torch.no_grad():  # the order that triggers the silent failure in the default kernel
        quantized(input_ids=torch.tensor([[1, 2, 3]]))
    dequantize_model(str(micro_gptq), str(tmp_path / "float"), target_dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "float", dtype=torch.float32)
    batch = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(2))
    got, want = _lora_grads(quantized, batch), _lora_grads(reference, batch)
    assert got.keys() == want.keys() and len(got) == 2 * 6 * 2  # A and B, 6 targets, 2 layers
    for name in want:
        rel = (got[name] - want[name]).norm() / want[name].norm()
        assert rel < 1e-3, (name, float(rel))


# --- the stage ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alpaca_step(micro_run: MicroRun) -> Path:
    """The micro workflow's first step (LoRA r=8 on the GPTQ model, the alpaca phase)."""
    return micro_run.results / "adapters" / "alpaca"


def test_step_outputs(alpaca_step: Path) -> None:
    s = json.loads((alpaca_step / "finetune.json").read_text())
    assert (alpaca_step / "adapter_model.safetensors").is_file() and (alpaca_step / "adapter_config.json").is_file()
    assert s["train_rows"] == 20 and s["eval_rows"] == 5 and s["global_steps"] > 0
    assert s["optimizer"] == ("paged_adamw_8bit" if torch.cuda.is_available() else "adamw_torch")
    assert s["nonpad_token_share"] == 1.0  # packed without padding
    assert 0 < s["loss_token_share"] < 1  # prompts carry no loss
    assert s["final_eval_loss"] is not None and s["tokens_per_second"] > 0
    assert [h["step"] for h in s["history"] if "train_loss" in h] == list(range(1, s["global_steps"] + 1))
    assert not (alpaca_step / ".checkpoints").exists()
    answers = json.loads((alpaca_step / "reference_answers.json").read_text())
    assert [a["request"] for a in answers] == micro_config()["reference_prompts"]
    assert all(a["new_tokens"] <= micro_config()["generation"]["max_new_tokens"] for a in answers)
    assert "LoRA (r=8, alpha=16)" in (alpaca_step / "README.md").read_text()


def test_step_mlflow_run(alpaca_step: Path) -> None:
    from mlflow import MlflowClient

    record = json.loads((alpaca_step / "mlflow_run.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["sophia.stage"] == "finetune"
    for name in ("train_loss", "learning_rate", "grad_norm", "eval_loss"):
        assert client.get_metric_history(record["run_id"], name), name
    assert {"nonpad_token_share", "loss_token_share", "tokens_per_second"} <= set(run.data.metrics)
    assert "adapter_model.safetensors" in {a.path for a in client.list_artifacts(record["run_id"])}


def test_step_continues_from_prefix(alpaca_step: Path, micro_run: MicroRun) -> None:
    from safetensors.torch import load_file

    out = micro_run.results / "adapters" / "alpaca" / "tiny_mixed"
    s = json.loads((out / "finetune.json").read_text())
    assert s["prefix"] == "alpaca" and s["train_rows"] == 20
    before, after = load_file(alpaca_step / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    record = json.loads((out / "mlflow_run.json").read_text())
    run = __import__("mlflow").MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    prefix_run = json.loads((alpaca_step / "mlflow_run.json").read_text())["run_id"]
    assert run.data.tags["sophia.input.prefix"] == prefix_run


def test_resume_after_kill(micro_gptq: Path, micro_data: list[Path], mlflow_store: str, tmp_path: Path) -> None:
    """Kill the process after its second checkpoint; the rerun resumes and ends where an
    uninterrupted run ends (CPU, fixed seeds: identical up to float summation order)."""
    spec = step_spec("tiny_codegen", save_steps=1, logging_steps=1)
    spec["phase"]["epochs"] = 4
    data = data_dir(micro_data, "tiny")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sophia.finetune", "--spec", json.dumps(spec), "--model", str(micro_gptq),
           "--data", str(data), "--out", str(out), "--threads", "1"]
    kill_after_checkpoint(cmd, out)
    assert not (out / "finetune.json").exists()  # no half-written adapter looks finished

    resumed = run_stage(spec, micro_gptq, data, None, out)
    straight = run_stage(spec, micro_gptq, data, None, tmp_path / "straight")
    assert resumed["resumed"] and not straight["resumed"]
    assert resumed["global_steps"] == straight["global_steps"]
    assert_resumed_like_straight(out, tmp_path / "straight", "adapter_model.safetensors", mlflow_store)


def test_checkpoint_cut_off_mid_save_is_skipped(tmp_path: Path) -> None:
    from sophia.finetune import trainer

    root = tmp_path / ".checkpoints"
    for step, state in ((2, "{}"), (4, "{}"), (6, None), (8, '{"trunc')):
        (root / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (root / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    trainer.remember(root, "fp", "run1")
    state = trainer.resume_state(root, "fp")
    assert state == {"fingerprint": "fp", "run_id": "run1", "checkpoint": str(root / "checkpoint-4")}
    assert sorted(p.name for p in root.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert trainer.resume_state(root, "other settings") is None and not root.exists()


def test_window_without_answers_is_refused(micro_gptq: Path, micro_data: list[Path], mlflow_store: str,
                                           tmp_path: Path) -> None:
    spec = step_spec("tiny_summary")
    spec["phase"]["max_length"] = 32
    with pytest.raises(ConfigError, match=r"finetune.phases.tiny_summary.max_length: 32 tokens leave no answer"):
        run_stage(spec, micro_gptq, data_dir(micro_data, "tiny"), None, tmp_path / "s")
    assert not (tmp_path / "s" / "finetune.json").exists()


def test_gradient_checkpointing_costs_compute_not_results(micro_gptq: Path, micro_data: list[Path],
                                                          mlflow_store: str, tmp_path: Path) -> None:
    """`training.gradient_checkpointing` reaches TRL (whose default is on), and turning it off, as the
    embedded default does, trains the very same adapter."""
    from safetensors.torch import load_file
    from sophia.finetune import trainer

    data = data_dir(micro_data, "alpaca")
    adapters = {}
    for on in (True, False):
        spec = step_spec("alpaca", gradient_checkpointing=on)
        run_stage(spec, micro_gptq, data, None, tmp_path / str(on))
        summary = json.loads((tmp_path / str(on) / "finetune.json").read_text())
        assert trainer.sft_config(summary["spec"], tmp_path / "c", has_eval=True).gradient_checkpointing is on
        adapters[on] = load_file(tmp_path / str(on) / "adapter_model.safetensors")
    for k, v in adapters[True].items():
        assert torch.allclose(v, adapters[False][k], atol=1e-6), k
