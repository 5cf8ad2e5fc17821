from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, LANGUAGES, runs_of, write_jsonl
from sophia.data import sampling
from sophia.data.stage import build_records, run_stage
from sophia.errors import ConfigError, DataError


def tiny_row(i: int, lang: str = "Rust", **over: Any) -> dict[str, Any]:
    row = {"prompt": f"Write program {i}", "response": f"fn main() {{ {i} }}", "programming_language": lang}
    row.update(over)
    return row


def tiny_spec(path: Path, n_train: int = 2, n_eval: int = 1, **over: Any) -> dict[str, Any]:
    spec = {
        "format": "tiny_codes",
        "path": str(path),
        "languages": ["Rust", "Bash"],
        "tasks": {"codegen": {"n_train": n_train, "n_eval": n_eval}, "summary": {"n_train": n_train, "n_eval": n_eval}},
    }
    spec.update(over)
    return spec


def balanced_file(tmp_path: Path, per_lang: int = 6) -> Path:
    rows = [tiny_row(i, lang) for lang in ("Rust", "Bash", "Python") for i in range(per_lang)]
    return write_jsonl(tmp_path / "tiny.jsonl", rows)


# --- sampling -------------------------------------------------------------------------------


def test_shares_are_equal_with_remainder_first() -> None:
    assert sampling.shares(7450, 5) == [1490] * 5
    assert sampling.shares(7, 3) == [3, 2, 2]


def test_sample_is_disjoint_balanced_and_seeded() -> None:
    pools = {"A": list(range(0, 50)), "B": list(range(100, 150))}
    tasks = {"codegen": {"n_train": 10, "n_eval": 4}, "summary": {"n_train": 10, "n_eval": 4}}
    picked = sampling.sample(pools, tasks, ["A", "B"], seed=3)
    rows = [r for pairs in picked.values() for r, _ in pairs]
    assert len(rows) == len(set(rows)) == 28
    for pairs in picked.values():
        assert Counter(lang for _, lang in pairs) == {"A": len(pairs) // 2, "B": len(pairs) // 2}
    assert sampling.sample(pools, tasks, ["A", "B"], seed=3) == picked
    assert sampling.sample(pools, tasks, ["A", "B"], seed=4) != picked


# --- records --------------------------------------------------------------------------------


def test_tiny_codes_tasks_and_summary_swap(tmp_path: Path) -> None:
    records, summary = build_records("tiny", tiny_spec(balanced_file(tmp_path), seed=0, invalid_rows="error"))
    assert summary["usable_rows"] == {"Rust": 6, "Bash": 6}
    for (task, split), recs in records.items():
        assert len(recs) == (2 if split == "train" else 1)
        for r in recs:
            assert r["prompt"].startswith("Instruct: ") and r["prompt"].endswith("\nOutput:")
            assert r["completion"].startswith(" ")
            assert r["language"] in ("Rust", "Bash")
            if task == "codegen":
                assert r["prompt"].startswith("Instruct: Write program") and "fn main" in r["completion"]
            else:
                assert r["prompt"].startswith("Instruct: fn main") and r["completion"].startswith(" Write program")


def test_code_alpaca_input_is_appended(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Sum a list", "input": "[1, 2]", "output": "3"},
        {"instruction": "Say hi", "input": "", "output": "print('hi')"},
    ])
    spec = {"format": "code_alpaca", "path": str(path), "seed": 0, "invalid_rows": "error",
            "tasks": {"instruct": {"n_train": 2, "n_eval": 0}}}
    records, _ = build_records("a", spec)
    prompts = sorted(r["prompt"] for r in records[("instruct", "train")])
    assert prompts == ["Instruct: Say hi\nOutput:", "Instruct: Sum a list\n[1, 2]\nOutput:"]
    assert all(r["language"] is None for r in records[("instruct", "train")])


# --- the stage, end to end on the micro model -----------------------------------------------


def test_stage_writes_files_stats_and_run(micro_model: Path, mlflow_store: str, tmp_path: Path) -> None:
    out = tmp_path / "data" / "tiny"
    spec = {
        "format": "tiny_codes",
        "path": str(FIXTURES / "tiny_codes_mini.jsonl"),
        "languages": LANGUAGES,
        "tasks": {"codegen": {"n_train": 10, "n_eval": 5}, "summary": {"n_train": 10, "n_eval": 5}},
    }
    run_stage("tiny", spec, micro_model, out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["tasks"]["codegen"]["train"]["languages"] == {lang: 2 for lang in LANGUAGES}
    tokens = stats["tasks"]["summary"]["eval"]["tokens"]["total"]
    assert 0 < tokens["p50"] <= tokens["p95"] <= tokens["max"]
    ids = set()
    for task in ("codegen", "summary"):
        for split, n in (("train", 10), ("eval", 5)):
            lines = (out / task / f"{split}.jsonl").read_text().splitlines()
            assert len(lines) == n
            ids |= {json.loads(line)["source_row"] for line in lines}
    assert len(ids) == 30  # no row reused across tasks or splits
    (run,) = [r for r in runs_of(mlflow_store) if r.info.run_name == "data:tiny"]
    assert run.data.metrics["codegen.train.rows"] == 10
    upstream = json.loads((micro_model / "mlflow_run.json").read_text())["run_id"]
    assert run.data.tags["sophia.input.base_model"] == upstream


def test_same_seed_same_output(micro_model: Path, mlflow_store: str, tmp_path: Path) -> None:
    spec = tiny_spec(balanced_file(tmp_path))
    run_stage("t", spec, micro_model, tmp_path / "a")
    run_stage("t", spec, micro_model, tmp_path / "b")
    for rel in ("codegen/train.jsonl", "summary/eval.jsonl"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


# --- bad data: clear error naming file, row, field; nothing left behind ---------------------


def _bad(tmp_path: Path, rows_or_bytes: Any) -> Path:
    path = tmp_path / "bad.jsonl"
    if isinstance(rows_or_bytes, bytes):
        path.write_bytes(rows_or_bytes)
    else:
        write_jsonl(path, rows_or_bytes)
    return path


GOOD = [tiny_row(i, lang) for lang in ("Rust", "Bash") for i in range(6)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([*GOOD[:3], {"prompt": "p", "programming_language": "Rust"}, *GOOD[3:]], "row 4: missing field 'response'"),
        ([*GOOD, tiny_row(99, response="   ")], "row 13: empty field 'response'"),
        ([*GOOD, tiny_row(99, prompt=5)], "row 13: field 'prompt' is int, expected a string"),
        ([*GOOD, ["not", "an", "object"]], "row 13: expected a JSON object"),
        (b"".join(json.dumps(r).encode() + b"\n" for r in GOOD) + b'{"prompt": "\xff\xfe"}\n',
         "row 13: undecodable bytes (not UTF-8)"),
        (b"".join(json.dumps(r).encode() + b"\n" for r in GOOD[:2]) + b'{"prompt": \n', "row 3: invalid JSON"),
        ([tiny_row(i, "Rust") for i in range(6)] + [tiny_row(i, "Bash") for i in range(1)],
         "language 'Bash' has 1 usable rows, 2 needed"),
        ([tiny_row(i, "Rust") for i in range(6)] + [tiny_row(i, "Go") for i in range(9)],
         "language 'Bash' has 0 usable rows, 2 needed (codegen train 1, summary train 1); languages present: Go"),
    ],
)
def test_bad_data_is_named_and_leaves_nothing(
    content: Any, expected: str, micro_model: Path, mlflow_store: str, tmp_path: Path
) -> None:
    path = _bad(tmp_path, content)
    out = tmp_path / "out" / "tiny"
    with pytest.raises(DataError) as err:
        run_stage("tiny", tiny_spec(path), micro_model, out)
    assert str(path) in str(err.value)
    assert expected in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert [r.info.status for r in runs_of(mlflow_store)] == ["FAILED"]


def test_skip_mode_counts_bad_rows(tmp_path: Path) -> None:
    path = _bad(tmp_path, [*GOOD, tiny_row(1, response=""), tiny_row(2, prompt="")])
    _, summary = build_records("t", tiny_spec(path, seed=0, invalid_rows="skip"))
    assert summary["rows_skipped"] == {"empty field 'response'": 1, "empty field 'prompt'": 1}
    assert summary["rows_read"] == 14


def test_too_few_rows_reports_skips(tmp_path: Path) -> None:
    path = _bad(tmp_path, [tiny_row(i, "Rust", response="") for i in range(6)])
    with pytest.raises(DataError, match=r"skipped rows: \{\"empty field 'response'\": 6\}"):
        build_records("t", tiny_spec(path, seed=0, invalid_rows="skip", languages=["Rust"]))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "no such file"),
        ("rows.csv", "a,b\n", "unsupported file type '.csv'"),
        ("rows.json", '{"a": 1}', "expected a JSON list of rows"),
        ("rows.json", "[1, 2", "invalid JSON at line 1"),
    ],
)
def test_unreadable_sources(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=re.escape(expected)):
        build_records("t", tiny_spec(path, seed=0, invalid_rows="error"))


def test_json_and_parquet_sources_read_like_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [tiny_row(i, lang) for lang in ("Rust", "Bash") for i in range(6)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    write_jsonl(tmp_path / "rows.jsonl", rows)
    outputs = [
        build_records("t", tiny_spec(tmp_path / f"rows.{ext}", seed=0, invalid_rows="error"))[0]
        for ext in ("jsonl", "json", "parquet")
    ]
    assert outputs[0] == outputs[1] == outputs[2]


def test_stage_rejects_bad_spec(micro_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("datasets.t.tasks.codegen.n_train")):
        run_stage("t", tiny_spec(tmp_path / "x.jsonl", n_train=0), micro_model, tmp_path / "o")


def test_hub_source_goes_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path is the same row loop; here `datasets.load_dataset` is replaced by a list."""
    import datasets

    rows = [tiny_row(i, lang) for lang in ("Rust", "Bash") for i in range(6)]
    calls = []

    def fake_load(name: str, split: str, revision: str) -> list[dict[str, Any]]:
        calls.append((name, split, revision))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    spec = {**tiny_spec(Path("unused")), "hub": "someone/tiny-codes", "split": "train", "revision": "abc",
            "seed": 0, "invalid_rows": "error"}
    del spec["path"]
    records, summary = build_records("t", spec)
    assert summary["source"] == "hub:someone/tiny-codes@abc[train]"
    assert calls[0] == ("someone/tiny-codes", "train", "abc")
    assert len(records[("codegen", "train")]) == 2


def test_hub_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*_: Any, **__: Any) -> None:
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    spec = {**tiny_spec(Path("unused")), "hub": "x/y", "split": "train", "revision": "main", "seed": 0,
            "invalid_rows": "error"}
    del spec["path"]
    with pytest.raises(DataError, match=r"hub:x/y@main\[train\]: cannot load dataset: no network"):
        build_records("t", spec)
