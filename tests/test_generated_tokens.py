"""Generated tokens are counted from generate()'s output ids (evaluate's throughput figure), not by
tokenising the decoded, stop-cut answers again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import scratch_model
import torch
from sophia.evaluate import context

EOS = 0


def test_padding_is_not_generated_and_an_eos_is() -> None:
    decode = lambda ids: "".join(chr(97 + i) for i in ids)  # noqa: E731
    # pad == EOS: a row that ended on EOS generated it, a row cut by a stop string did not
    assert context.generated_in_row([3, 4, EOS, EOS, EOS], EOS, EOS, ["z"], decode) == 3
    assert context.generated_in_row([3, 25, EOS, EOS], EOS, EOS, ["z"], decode) == 2  # "dz" holds the stop "z"
    assert context.generated_in_row([3, 4, 5], EOS, EOS, ["z"], decode) == 3  # ran to its budget
    # a pad token of its own: only the padding is dropped
    assert context.generated_in_row([3, EOS, 9, 9], 9, EOS, [], decode) == 2
    assert context.generated_in_row([], EOS, EOS, [], decode) == 0


class FakeLM:
    """An HFLM stand-in: _model_generate returns the prompt plus fixed continuations."""

    def __init__(self, tails: list[list[int]]) -> None:
        self.tails = tails
        self.tokenizer = type("Tok", (), {"pad_token_id": EOS, "eos_token_id": EOS,
                                          "decode": staticmethod(lambda ids: " ".join(map(str, ids)))})()

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **kwargs: Any) -> torch.Tensor:
        return torch.cat([context, torch.tensor(self.tails)], dim=1)


def test_the_counter_reads_every_generate_call_of_the_model() -> None:
    lm = FakeLM([[5, 6, 7, EOS], [5, EOS, EOS, EOS]])
    counter = context.GenerationCounter(lm)
    out = lm._model_generate(torch.ones((2, 3), dtype=torch.long), 7, ["\n\n"])
    assert out.shape == (2, 7) and counter.total == 4 + 2
    lm._model_generate(torch.ones((2, 1), dtype=torch.long), 5, [])
    assert counter.total == 12


def test_counts_what_the_real_model_generates(tmp_path: Path) -> None:
    from lm_eval.api.instance import Instance
    from sophia.evaluate import harness
    from sophia.lm import load

    model, tok = load(scratch_model.build(tmp_path / "m"), torch.device("cpu"))
    lm = harness.hf_lm(model, tok, batch_size=2)
    counter = context.GenerationCounter(lm)
    prompts = ["def f(x):", "Instruct: add two numbers\nOutput:", "return"]
    reqs = [Instance("generate_until", {}, (p, {"until": ["@@@"], "max_gen_toks": 6, "do_sample": False}), i)
            for i, p in enumerate(prompts)]
    answers = lm.generate_until(reqs)
    expected = 0
    for p in prompts:  # each prompt alone, greedy, the same budget: what the model produced
        ids = lm.tok_encode(p)
        gen = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        new = gen[0, len(ids):].tolist()
        expected += new.index(tok.eos_token_id) + 1 if tok.eos_token_id in new else len(new)
    assert counter.total == expected and 0 < expected <= 18
    assert len(answers) == 3
    with pytest.raises(AssertionError):  # re-tokenising the cut answers is a different count here
        assert sum(len(tok(a)["input_ids"]) for a in answers) == expected


class FakeGenerator:
    """generate() returning the prompt plus fixed rows, as a batch padded with the EOS token."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def parameters(self) -> Any:
        return iter([self.weight])

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.cat([input_ids, torch.tensor(self.rows)], dim=1)


def test_reference_answers_count_the_eos_that_ended_them(tmp_path: Path) -> None:
    from sophia import generate
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(scratch_model.build(tmp_path / "m"))
    tok.pad_token = tok.eos_token
    eos, word = tok.eos_token_id, tok("x", add_special_tokens=False)["input_ids"][0]
    stop = tok("\nInstruct:", add_special_tokens=False)["input_ids"]
    rows = [[word, word, eos, eos, eos, eos][:4 + len(stop)],  # ended on EOS: 3 generated
            ([word, *stop] + [eos] * 8)[:4 + len(stop)],       # stopped by "\nInstruct:": no EOS generated
            [word] * (4 + len(stop))]                           # ran to its budget
    rows = [r + [eos] * (4 + len(stop) - len(r)) for r in rows]
    got = generate.answer(FakeGenerator(rows), tok, ["a", "b", "c"], max_new_tokens=4 + len(stop))
    assert [(g["new_tokens"], g["finish"]) for g in got] == [(3, "eos"), (1 + len(stop), "stop"),
                                                           (4 + len(stop), "length")]
