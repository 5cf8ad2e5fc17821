"""What distillation feeds its student: token-level KD only between tokenizers with one token -> id
map (not merely one size), sequence-level KD prompts encoded with the tokenizer's special tokens,
and the teacher's answers by beam search when asked. Scratch tokenizers and models built here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import scratch_model
import torch
from conftest import config_error
from sophia import references
from sophia.distill import data, trainer
from sophia.distill.stage import run_stage
from sophia.errors import ConfigError


@pytest.fixture(scope="module")
def two_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two model folders whose tokenizers have the same size but give tokens other ids."""
    root = tmp_path_factory.mktemp("tok")
    a = scratch_model.build(root / "a", vocab_size=300)
    b = scratch_model.build(root / "b", vocab_size=300, hidden_size=16, corpus_seed=1)
    return a, b


def test_token_kd_refuses_a_tokenizer_of_the_same_size_with_other_ids(two_tokenizers: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    a, b = two_tokenizers
    map_a, map_b = references.token_map_of(a), references.token_map_of(b)
    assert len(map_a) == len(map_b) and map_a != map_b
    assert references.vocab_of(a) == references.vocab_of(b)  # the size check alone lets it through

    def add(cfg: dict[str, Any], method: str = "token") -> None:
        cfg["distill"] = {"x": {"teacher": {"path": str(a)}, "student": {"path": str(b)}, "phase": "alpaca",
                                "method": method, "lora": None}}
    msg = config_error(add)
    assert "distill.x.method: token-level KD needs one vocabulary (the same token -> id map)" in msg
    assert f"teacher path:{a} ({len(map_a)} tokens) and student path:{b}" in msg and "use method: sequence" in msg
    from sophia.config import validate

    cfg = __import__("conftest").micro_config()
    add(cfg, "sequence")
    validate(cfg)  # sequence-level KD needs no shared vocabulary
    # the stage checks again, before any weights load or data is read
    spec = {"name": "x", "distill": {"teacher": {"path": str(a)}, "student": {"path": str(b)}, "phase": "alpaca",
                                     "method": "token", "lora": None, "training": {}},
            "phase": {"dataset": "alpaca", "tasks": ["instruct"], "epochs": 1, "max_length": 64}}
    with pytest.raises(ConfigError, match=r"distill\.x\.method: token-level KD needs one vocabulary"):
        run_stage(spec, a, None, b, tmp_path / "no-data", tmp_path / "out")
    references.check_token_maps(map_a, dict(map_a), "distill.x", {"path": str(a)}, {"path": str(a)})


class Recorder:
    """A stand-in teacher: records what generate() receives, answers with fixed tokens."""

    def __init__(self, answer: list[int]) -> None:
        self.answer, self.calls = answer, []
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def parameters(self) -> Any:
        return iter([self.weight])

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls.append({"input_ids": input_ids, **kwargs})
        tail = torch.tensor([self.answer] * input_ids.shape[0])
        return torch.cat([input_ids, tail], dim=1)


def test_teacher_prompts_carry_the_tokenizers_bos_and_beams_reach_generate(two_tokenizers: tuple[Path, Path]) -> None:
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(two_tokenizers[0])
    bos = tok.convert_tokens_to_ids(tok.eos_token)
    # a tokenizer that adds a BOS itself, as DeepSeek-Coder's does
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{tok.eos_token} $A",
                                                              special_tokens=[(tok.eos_token, bos)])
    answer = tok(" x + 1", add_special_tokens=False)["input_ids"]
    teacher = Recorder(answer)
    rows = [{"prompt": "Instruct: add one\nOutput:", "completion": " y"}, {"prompt": "Instruct: hi\nOutput:",
                                                                            "completion": " z"}]
    out = data.teacher_answers(teacher, tok, rows, 8, batch_size=2, num_beams=4)
    call = teacher.calls[0]
    assert call["num_beams"] == 4 and call["do_sample"] is False
    mask = call["attention_mask"]
    starts = [int(ids[m.bool()][0]) for ids, m in zip(call["input_ids"], mask, strict=True)]
    assert starts == [bos, bos]
    assert [r["completion"] for r in out] == [" x + 1", " x + 1"]
    # the student trains on the same encoding: BOS first, labels only on the answer
    rows_ids = trainer.tokenize(tok, rows, 64)
    assert rows_ids[0]["input_ids"][0] == bos and rows_ids[0]["labels"][0] == -100
    assert data.teacher_answers(Recorder(answer), tok, rows[:1], 8, 1)[0]["completion"] == " x + 1"
