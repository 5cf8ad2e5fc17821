from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_resumed_like_straight, config_error, isolated_tracking, kill_after_checkpoint, micro_config
from sophia import references
from sophia.distill import trainer as kd
from sophia.distill.stage import run_stage
from sophia.errors import ConfigError, DataError

# A quarter-size student of the micro model, with its tokenizer.
STUDENT = {"scratch": {"seed": 0, "architecture": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                   "num_attention_heads": 2, "max_position_embeddings": 768}}}


def distill_spec(method: str = "token", **training: Any) -> dict[str, Any]:
    phase = micro_config()["finetune"]["phases"]["alpaca"]
    return {
        "name": "micro",
        "distill": {"teacher": {"variant": "base"}, "student": copy.deepcopy(STUDENT), "phase": "alpaca",
                    "method": method, "loss": {"temperature": 2.0},
                    "sequence": {"max_new_tokens": 8},
                    "training": {"batch_size": 10, "learning_rate": 0.01, "logging_steps": 1, "eval_steps": 1,
                                 "save_steps": 1, "warmup_ratio": 0.0, **training}},
        "phase": phase,
        "reference_prompts": ["Reverse a string."],
        "generation": {"max_new_tokens": 4, "batch_size": 8},
    }


def alpaca(micro_data: list[Path]) -> Path:
    return next(d for d in micro_data if d.name == "alpaca")


# --- the loss --------------------------------------------------------------------------------


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_teacher_equal_to_student_gives_zero_loss_and_gradient(micro_model: Path, divergence: str) -> None:
    from sophia import lm

    student, tok = lm.load(micro_model, torch.device("cpu"))
    teacher, _ = lm.load(micro_model, torch.device("cpu"))
    rows = kd.tokenize(tok, [{"prompt": "Instruct: add two numbers\nOutput:", "completion": " a + b"}], 64)
    ids = torch.tensor([rows[0]["input_ids"]])
    labels = torch.tensor([rows[0]["labels"]])[:, 1:]
    keep = labels != -100
    student.train()
    s = student(input_ids=ids).logits[:, :-1][keep]
    with torch.no_grad():
        t = teacher(input_ids=ids).logits[:, :-1][keep]
    beta = kd.gkd_beta({"divergence": divergence, "beta": 0.5})
    loss, _, ce = kd.kd_loss(s, t, labels[keep], beta=beta, temperature=1.0, alpha=0.0)
    loss.backward()
    assert abs(float(loss.detach())) < 1e-6 and float(ce.detach()) > 1  # the hard-label part is there, weighted 0
    grads = [p.grad.abs().max() for p in student.parameters() if p.grad is not None]
    assert grads and max(float(g) for g in grads) < 1e-6


def test_tokenized_rows_learn_the_answer_only(micro_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(micro_model)
    (row,) = kd.tokenize(tok, [{"prompt": "Instruct: x\nOutput:", "completion": " y = 1"}], 64)
    answer = [t for t in row["labels"] if t != -100]
    assert row["input_ids"][-1] == tok.eos_token_id and answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == " y = 1" and len(row["labels"]) == len(row["input_ids"])
    assert row["labels"][0] == -100


# --- configuration ---------------------------------------------------------------------------


def _fake_model(path: Path, vocab: int) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "phi", "vocab_size": vocab}))
    return path


def test_vocabulary_mismatch_fails_before_any_job(tmp_path: Path) -> None:
    teacher, student = _fake_model(tmp_path / "t", 32256), _fake_model(tmp_path / "s", 51200)
    def add(cfg: dict[str, Any]) -> None:
        cfg["distill"] = {"x": {"teacher": {"path": str(teacher)}, "student": {"path": str(student)},
                                "phase": "alpaca"}}
    msg = config_error(add)
    assert "distill.x.method: token-level KD needs one vocabulary" in msg
    assert f"path:{teacher} has 32256 tokens" in msg and f"path:{student} has 51200" in msg
    with pytest.raises(ConfigError, match="has 32256 tokens"):  # the stage checks too, before loading weights
        references.check_vocabularies(32256, 51200, "distill.x", {"path": str(teacher)}, {"path": str(student)})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(phase="nope"), "distill.x.phase: 'nope' is not in finetune.phases"),
        (lambda d: d.update(teacher={"variant": "gptq+nope"}), "distill.x.teacher.variant: 'gptq+nope' unknown"),
        (lambda d: d.update(teacher={"scratch": {}}), "distill.x.teacher: set exactly one of variant, hub, path"),
        (lambda d: d.update(lora={"r": 4}), "distill.x.lora: a scratch student has no pretrained weights"),
        (lambda d: d["loss"].update(divergence="l2"), "distill.x.loss.divergence: 'l2' is not one of"),
    ],
)
def test_bad_distill_config(mutate, expected: str) -> None:
    def add(cfg: dict[str, Any]) -> None:
        cfg["distill"] = {"x": {"teacher": {"variant": "gptq+alpaca"}, "student": copy.deepcopy(STUDENT),
                                "phase": "alpaca", "loss": {}}}
        mutate(cfg["distill"]["x"])
    assert expected in config_error(add)


# --- the stage -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_run(micro_model: Path, micro_data: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kd")
    with isolated_tracking(root):
        run_stage(distill_spec(), micro_model, None, micro_model, alpaca(micro_data), root / "micro")
    return root / "micro"


def test_two_kd_steps_bring_the_student_closer_to_its_teacher(token_run: Path) -> None:
    s = json.loads((token_run / "distill.json").read_text())
    assert s["global_steps"] == 2 and s["method"] == "token" and s["train_rows"] == 20
    kd_losses = [h["kd_loss"] for h in s["history"] if "kd_loss" in h]
    assert len(kd_losses) == 2 and kd_losses[1] < kd_losses[0]
    assert s["agreement_after"]["kl"] < s["agreement_before"]["kl"]
    cache = s["teacher_cache"]  # 20 train + 5 held-out rows through the teacher once; 2 more evaluations hit
    assert cache["misses"] == 25 and cache["hits"] == 10 and s["student_vocab"] == s["teacher_vocab"]
    assert (token_run / "model.safetensors").is_file() and (token_run / "README.md").is_file()


def test_kd_run_is_tracked(token_run: Path, micro_model: Path) -> None:
    from mlflow import MlflowClient

    record = json.loads((token_run / "mlflow_run.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.data.tags["sophia.variant"] == "distill+micro" and run.data.tags["sophia.method"] == "token"
    base_run = json.loads((micro_model / "mlflow_run.json").read_text())["run_id"]
    assert run.data.tags["sophia.input.teacher"] == base_run == run.data.tags["sophia.input.student"]
    for name in ("kd_loss", "ce_loss", "train_loss", "tokens_per_second"):
        assert client.get_metric_history(record["run_id"], name), name
    assert {"agreement_before.kl", "agreement_after.kl", "agreement_after.top1_agreement"} <= set(run.data.metrics)
    # The student is a LoggedModel named after its variant: evaluations file under it (Models tab).
    model = client.get_logged_model(record["models"]["distill+micro"])
    assert model.name == "distill+micro" and model.source_run_id == record["run_id"]


def test_sequence_kd_trains_on_the_teachers_decoded_answers(micro_model: Path, micro_data: list[Path],
                                                            mlflow_store: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from sophia import lm
    from sophia.distill import stage
    from sophia.finetune.trainer import read_split

    seen: list[list[dict[str, str]]] = []
    tokenize = stage.kd.tokenize
    monkeypatch.setattr(stage.kd, "tokenize", lambda tok, rows, n: seen.append(list(rows)) or tokenize(tok, rows, n))
    s = run_stage(distill_spec("sequence"), micro_model, None, micro_model, alpaca(micro_data), tmp_path / "seq")
    trained = seen[0]  # the first call tokenizes the training rows, the second the held-out ones
    prompts = [r["prompt"] for r in read_split(alpaca(micro_data), ["instruct"], "train")]
    assert [r["prompt"] for r in trained] == prompts and s["method"] == "sequence"
    teacher, tok = lm.load(micro_model, torch.device("cpu"))
    for row in trained[:3]:  # decoded independently: greedy, 8 new tokens
        enc = tok(row["prompt"], return_tensors="pt", add_special_tokens=False)
        out = teacher.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        assert row["completion"] == " " + cut(text)
    saved = [json.loads(line) for line in (tmp_path / "seq" / "teacher_data.jsonl").read_text().splitlines()]
    assert saved == trained


def cut(text: str) -> str:
    from sophia.generate import cut_at_stop

    return cut_at_stop(text)


@pytest.mark.e2e  # a Snakemake dry run
def test_default_plans_the_student_after_its_teacher(tmp_path: Path) -> None:
    from conftest import ROOT
    from test_scaleout import dry_run, jobs

    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text().replace("workflow/resources", f"{ROOT}/workflow/resources"))
    text = dry_run(tmp_path, config, "--cores", "1", "results/distill/micro/distill.json",
                   "results/distill/micro/control/distill.json")
    planned = {j["rule"]: j for j in jobs(text)}
    assert set(planned) == {"base_model", "data", "quantize", "finetune", "distill", "distill_control"}
    assert "results/adapters/tiny_codegen/tiny_summary/alpaca/finetune.json" in text.split("rule distill:")[1]
    assert int(planned["distill"]["resources"]["mem_mb"]) == 8000 + 2000 * 0.05 + 10000 * 0.05  # full fine-tuning


def test_control_trains_the_same_student_on_the_same_rows(token_run: Path, micro_model: Path,
                                                          micro_data: list[Path], mlflow_store: str,
                                                          tmp_path: Path) -> None:
    kd_run = json.loads((token_run / "distill.json").read_text())
    s = run_stage(distill_spec(), micro_model, None, micro_model, alpaca(micro_data), tmp_path / "control",
                  control=True)
    assert s["variant"] == "sft+micro" and s["method"] == "sft" and s["teacher_cache"] is None
    for key in ("train_rows", "global_steps", "train_tokens", "parameters"):
        assert s[key] == kd_run[key], key
    assert not any("kd_loss" in h for h in s["history"])
    assert s["agreement_before"] == kd_run["agreement_before"]  # one initial student for both


def test_resume_after_kill(micro_model: Path, micro_data: list[Path], mlflow_store: str, tmp_path: Path) -> None:
    """As for finetune: kill after the third checkpoint, rerun, end where an uninterrupted run ends."""
    spec = distill_spec(save_steps=1, eval_steps=100)
    spec["phase"]["epochs"] = 4
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sophia.distill", "--spec", json.dumps(spec), "--teacher", str(micro_model),
           "--student", str(micro_model), "--data", str(alpaca(micro_data)), "--out", str(out), "--threads", "1"]
    kill_after_checkpoint(cmd, out)
    assert not (out / "distill.json").exists()

    resumed = run_stage(spec, micro_model, None, micro_model, alpaca(micro_data), out)
    straight = run_stage(spec, micro_model, None, micro_model, alpaca(micro_data), tmp_path / "straight")
    assert resumed["resumed"] and not straight["resumed"] and resumed["global_steps"] == straight["global_steps"] == 8
    assert_resumed_like_straight(out, tmp_path / "straight", "model.safetensors", mlflow_store)


def test_report_compares_control_distilled_and_teacher(tmp_path: Path) -> None:
    from sophia.report import distill as report

    def summary(variant: str, kl_after: float) -> dict[str, Any]:
        return {"variant": variant, "teacher": "gptq+tiny-alpaca", "student": "scratch (hidden 128, 2 layers)",
                "method": "token", "lora": False, "parameters": 920_000, "seconds": 40.0,
                "agreement_before": {"top1_agreement": 0.01, "kl": 5.0},
                "agreement_after": {"top1_agreement": 0.3, "kl": kl_after}}
    out = tmp_path / "micro"
    (out / "control").mkdir(parents=True)
    (out / "distill.json").write_text(json.dumps(summary("distill+micro", 1.5)))
    (out / "control" / "distill.json").write_text(json.dumps(summary("sft+micro", 2.5)))
    group = {"value": 0.25, "ci_low": 0.1, "ci_high": 0.4}
    rows = [{"model": m, "groups": {"coding": group}, "parameters": 4_200_000}
            for m in ("sft+micro", "distill+micro", "gptq+tiny-alpaca")]
    md = report.comparison(rows, {"micro": out})
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| sft+micro | SFT control |") and "5.000 → 2.500" in lines[1]
    assert lines[2].startswith("| distill+micro | distilled |") and "1.0 → 30.0" in lines[2]
    assert lines[3].startswith("| gptq+tiny-alpaca | teacher |") and "4.20 M" in lines[3]
    assert "25.0 [10.0, 40.0]" in lines[2]
    (out / "control" / "distill.json").unlink()
    with pytest.raises(DataError, match=r"control/distill\.json: missing"):
        report.summaries(out)


def test_teacher_cache_finds_a_row_whatever_its_batch_padding() -> None:
    class Teacher(torch.nn.Module):
        calls = 0

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            Teacher.calls += len(input_ids)
            return type("Out", (), {"logits": torch.nn.functional.one_hot(input_ids, 7).float()})

    cache, teacher = kd.TeacherCache(True), Teacher()
    row = ([1, 2, 3], [-100, 3, 4])  # ids, shifted labels of one row

    def batch(width: int, other: list[int]) -> tuple[torch.Tensor, ...]:
        ids = torch.tensor([row[0] + [0] * (width - 3), other + [0] * (width - len(other))])
        mask = (torch.arange(width) < torch.tensor([[3], [len(other)]])).long()
        labels = torch.full((2, width - 1), -100)
        labels[0, :2] = torch.tensor(row[1][1:])
        labels[1, : len(other) - 1] = torch.tensor(other[1:])
        return ids, mask, labels

    first = cache.logits(teacher, *batch(5, [4, 5, 6, 6, 6]))
    again = cache.logits(teacher, *batch(3, [5, 5]))  # the same first row, padded to another width
    assert cache.misses == 3 and cache.hits == 1 and Teacher.calls == 3
    assert torch.equal(first[:2], again[:2])
