"""prompt, provenance, atomic, parity gates, generate timing, the CLI helpers: the small shared modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from sophia import provenance
from sophia.atomic import atomic_dir, atomic_files
from sophia.prompt import build_completion, build_prompt


def test_prompt_template() -> None:
    assert build_prompt("  Reverse a string ") == "Instruct: Reverse a string\nOutput:"
    assert build_prompt("x") + build_completion("def f(): pass\n") == "Instruct: x\nOutput: def f(): pass"


def test_digest_ignores_key_order() -> None:
    assert provenance.digest({"a": 1, "b": [1, 2]}) == provenance.digest({"b": [1, 2], "a": 1})
    assert provenance.digest({"a": 1}) != provenance.digest({"a": 2})


def test_flatten() -> None:
    assert provenance.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1], "f": {}}) == {
        "a.b": 1, "a.c.d": 2, "e": [1], "f": {}
    }


def test_atomic_dir_publishes_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "f.txt").write_text("done")
        assert not target.exists()
    assert (target / "f.txt").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_leaves_nothing_and_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("previous result")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("boom")
    assert (target / "old.txt").read_text() == "previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_files_marker_last_and_children_kept(tmp_path: Path) -> None:
    """Adapter folders also hold the folders of longer chains; those must survive."""
    target = tmp_path / "alpaca"
    (target / "tiny_mixed").mkdir(parents=True)
    (target / "tiny_mixed" / "done.json").write_text("child")
    (target / "done.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_files(target, "done.json") as tmp:
        (tmp / "weights.bin").write_text("half")
        raise RuntimeError("killed")
    assert not (target / "done.json").exists()  # the old marker no longer vouches for the folder
    assert not (target / "weights.bin").exists()
    with atomic_files(target, "done.json") as tmp:
        (tmp / "weights.bin").write_text("w")
        (tmp / "done.json").write_text("new")
    assert (target / "done.json").read_text() == "new" and (target / "weights.bin").read_text() == "w"
    assert (target / "tiny_mixed" / "done.json").read_text() == "child"
    assert sorted(p.name for p in target.iterdir()) == ["done.json", "tiny_mixed", "weights.bin"]
    with pytest.raises(FileNotFoundError, match=r"done\.json was not written"), atomic_files(target, "done.json"):
        pass


def test_parity_gates_name_the_measure_and_the_config_key() -> None:
    from sophia import parity_gates as gates

    assert gates.max_abs("kv_int8.tflite", 0.5, 0.1, "export.parity.gates.int8", " after prefill") == (
        "kv_int8.tflite: max |logit diff| after prefill 0.5 > export.parity.gates.int8.max_abs=0.1")
    assert gates.max_abs("m", 0.5, None, "w") is None and gates.max_abs("m", 0.1, 0.1, "w") is None
    assert gates.argmax_agreement("m", 0.9, 0.95, "w") == "m: argmax agreement 0.900 < w.argmax_agreement=0.95"
    assert gates.argmax_agreement("m", 0.95, 0.95, "w") is None
    greedy = [{"equal": True, "first_difference": None}, {"equal": False, "first_difference": 3}]
    assert gates.greedy_equal("m", greedy, True, "w").endswith("first differing token): [(1, 3)] (w.greedy_equal=true)")
    assert gates.greedy_equal("m", greedy, False, "w") is None
    assert gates.greedy_equal("m", greedy[:1], True, "w") is None


def test_generate_timing_counts_the_tokens_it_made() -> None:
    from types import SimpleNamespace

    import torch
    from sophia.generate_timing import Timed, time_generate
    from transformers import PhiConfig, PhiForCausalLM

    assert Timed(0.5, 2.5, 5).tokens_per_s() == 2.0 and Timed(0.5, 2.5, 5).tokens_per_s(after_first=True) == 2.0
    assert Timed(0.5, 0.5, 1).tokens_per_s(after_first=True) == 0.0
    torch.manual_seed(0)
    model = PhiForCausalLM(PhiConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=64)).eval()
    tok = type("Tok", (), {"eos_token_id": 0, "__call__": lambda self, text: SimpleNamespace(input_ids=[5, 6, 7])})()
    t = time_generate(model, tok, "Reverse a string.", 6, exact=True)
    assert t.new_tokens == 6 and 0 < t.first_token_s and 0 < t.total_s


def test_cli_threads_and_variant_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from sophia import cli

    p = cli.parser("x", threads=0)
    cli.add_variant(p)
    monkeypatch.setattr("sys.argv", ["x", "--spec", "{}", "--out", "o", "--model-id", "gptq", "--model", "m",
                                     "--threads", "1"])
    before = torch.get_num_threads()
    try:
        args = cli.parse(p)
        assert (args.model_id, args.model, args.adapter, torch.get_num_threads()) == ("gptq", Path("m"), None, 1)
    finally:
        torch.set_num_threads(before)
    assert not any(a.dest == "threads" for a in cli.parser("y")._actions)
