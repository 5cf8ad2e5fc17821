"""prompt, provenance, atomic: the small shared helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sophia import provenance
from sophia.atomic import atomic_dir, write_text_atomic
from sophia.prompt import build_completion, build_prompt


def test_prompt_template() -> None:
    assert build_prompt("  Reverse a string ") == "Instruct: Reverse a string\nOutput:"
    assert build_prompt("x") + build_completion("def f(): pass\n") == "Instruct: x\nOutput: def f(): pass"


def test_digest_ignores_key_order() -> None:
    assert provenance.digest({"a": 1, "b": [1, 2]}) == provenance.digest({"b": [1, 2], "a": 1})
    assert provenance.digest({"a": 1}) != provenance.digest({"a": 2})


def test_source_digest_follows_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "a.py").write_text("x = 1\n")
    (tmp_path / "helper.py").write_text("y = 1\n")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)
    before = provenance.source_digest("stage", "helper")
    assert provenance.source_digest("helper", "stage") == before
    (tmp_path / "stage" / "a.py").write_text("x = 2\n")
    assert provenance.source_digest("stage", "helper") != before
    with pytest.raises(FileNotFoundError):
        provenance.source_digest("missing")


def test_real_stage_sources_have_digests() -> None:
    assert provenance.source_digest("base_model") != provenance.source_digest("data", "prompt")


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


def test_write_text_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.json"
    write_text_atomic(path, "{}")
    assert path.read_text() == "{}"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
