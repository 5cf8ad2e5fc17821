"""prompt, provenance, atomic: the small shared helpers."""

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
