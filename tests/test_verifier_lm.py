"""LEVER's LM verifier on a tiny model: LoRA + head learn a label the execution result carries,
the folder round-trips through `verifier_lm.load`, and cut inputs are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sophia.evaluate import engine, lever, verifier_lm
from sophia.evaluate.verifier_features import Verifier
from sophia.verifier import lm as lm_train

LSPEC = {"epochs": 12, "learning_rate": 0.01, "lora_r": 4, "batch_size": 8, "max_length": 96}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer Phi with a byte-level BPE tokenizer, saved as a model directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([text(i, i % 2 == 0) for i in range(20)], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    model = PhiForCausalLM(PhiConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, max_position_embeddings=128))
    folder = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def text(i: int, right: bool) -> str:
    execution = lever.execution_text([f"assert f({i}) == {i + 1}"], None, "", "P" if right else "F",
                                     [f"returned {i + 1 if right else i}"])
    return lever.verifier_text("Add one to x.", f"def f(x):\n    return x + {1 if right else 0}", execution)


@pytest.mark.e2e  # trains the LoRA verifier (a few seconds on a two-layer model)
def test_lm_verifier_learns_from_the_execution_result_and_round_trips(tiny_lm: Path, tmp_path: Path) -> None:
    texts = [text(i, i % 2 == 0) for i in range(16)]
    labels = [i % 2 == 0 for i in range(16)]
    cuts = engine.Cuts(128)
    clf, stats = lm_train.train(tiny_lm, texts, labels, LSPEC, seed=0, dev=torch.device("cpu"), cuts=cuts)
    assert stats["last_loss"] < stats["first_loss"] and stats["positives"] == 8
    p = clf.predict_texts(texts)
    assert min(p[i] for i in range(0, 16, 2)) > max(p[i] for i in range(1, 16, 2))  # AUC 1 on its training set
    assert cuts.seen == {"verifier": [16, 0]}
    clf.save(tmp_path, {"note": "test"}, tiny_lm)
    info = json.loads((tmp_path / "verifier.json").read_text())
    assert info["verifier_model"] == "lm" and info["base_model"] == str(tiny_lm)
    loaded = verifier_lm.load(tmp_path, torch.device("cpu"))
    assert isinstance(loaded, verifier_lm.LMVerifier)
    assert loaded.predict_texts(texts) == pytest.approx(p, abs=1e-5)
    short = verifier_lm.LMVerifier(loaded.clf, loaded.tok, 16, 4)
    counted = engine.Cuts(16)
    short.predict_texts(texts[:3], counted)
    assert counted.seen == {"verifier": [3, 3]}  # every text is longer than 16 tokens: cut and counted


def test_feature_folders_still_load_through_the_same_entry(tmp_path: Path) -> None:
    Verifier("constant", base_rate=0.25).save(tmp_path, {})
    assert isinstance(verifier_lm.load(tmp_path), Verifier)
    with pytest.raises(Exception, match="missing"):
        verifier_lm.load(tmp_path / "nowhere")
