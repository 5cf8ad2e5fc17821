"""MultiPL-E's languages in the sandbox: every fixture problem's correct completion passes and its
wrong one fails in each language (so each Debian toolchain works there), programs are built as
MultiPL-E builds them, and the committed snapshot is what the project's own fixture writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sophia.errors import ConfigError, EvalError
from sophia.evaluate import languages, multipl_e, sandbox, toolchain
from sophia.evaluate import multipl_e_fixture as fixture
from sophia.evaluate.benchmarks import BENCHMARKS, MULTIPL_E_LANGUAGES
from sophia.evaluate.sandbox import ERROR, FAILED, PASSED, TIMEOUT, Limits, Sandbox

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "workflow" / "resources" / "eval" / "hub"


@pytest.fixture(scope="module")
def box() -> Sandbox:
    if not sandbox.bwrap_available():
        pytest.fail("bubblewrap is not usable here: `make setup` installs it (apt-get install bubblewrap)")
    return Sandbox(Limits(), "bwrap")


@pytest.mark.parametrize("code", MULTIPL_E_LANGUAGES)
def test_correct_solutions_pass_and_wrong_ones_fail(box: Sandbox, code: str) -> None:
    languages.check_installed([code], "test")
    cases = fixture.programs(code)
    outcomes = toolchain.run_many(languages.language(code), box, [p for _, p, _ in cases], workers=2)
    for (name, _, correct), o in zip(cases, outcomes, strict=True):
        if correct:
            assert o.status == PASSED, (code, name, o.reason, o.stderr[-500:])
        else:  # it compiled and ran: the tests, not the toolchain, rejected it
            assert o.status == FAILED and "run exited with status" in o.reason, (code, name, o.status, o.reason)


def test_a_compile_error_and_a_hung_step_are_told_apart(box: Sandbox) -> None:
    lang = languages.language("sh")
    quick = dataclasses.replace(lang, steps=(dataclasses.replace(lang.steps[0], timeout_s=1.0),))
    hung, = toolchain.run_many(quick, box, ["while true; do :; done\n"], workers=1)
    assert hung.status == TIMEOUT and "timed out after 1 s" in hung.reason, hung
    rs = languages.language("rs")
    broken, = toolchain.run_many(rs, box, ["fn main() { let x: u8 = \"no\"; }\n"], workers=1)
    assert broken.status == ERROR and broken.reason.startswith("compile error: error[E0308]"), broken


def test_exit_0_without_the_launcher_finishing_is_no_pass() -> None:
    o = toolchain.outcome(0, False, False, 0.1, "", "", Limits())
    assert o.status == ERROR and "before the tests finished" in o.reason


def test_the_committed_snapshot_is_the_fixtures_output() -> None:
    folder = HUB / fixture.HUB_ID
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written == set(fixture.files())
    for rel, text in fixture.files().items():
        assert (folder / rel).read_text(encoding="utf-8") == text, (
            f"{rel} differs from sophia.evaluate.multipl_e_fixture: rerun "
            "`.venv/bin/python -m sophia.evaluate.multipl_e_fixture workflow/resources/eval/hub`")


@pytest.mark.parametrize("code", MULTIPL_E_LANGUAGES)
def test_completions_end_before_the_stop_sequence_as_a_model_would(code: str) -> None:
    for p in fixture.PROBLEMS:
        row = next(r for r in fixture.rows(p.suite, code) if r["name"] == p.row_name)
        assert set(row) == {"name", "language", "prompt", "doctests", "original", "prompt_terminology", "tests",
                            "stop_tokens"}
        for completion in fixture.COMPLETIONS[p.name][code]:
            assert multipl_e.cut(completion, row["stop_tokens"]) == completion, (code, p.name)
            assert multipl_e.program(row, completion) == row["prompt"] + completion + "\n" + row["tests"]


def test_a_completion_is_cut_at_its_rows_first_stop_sequence() -> None:
    row = fixture.rows("humaneval", "rb")[0]
    text = "  numbers.sum { |x| x * x }\nend\n\ndef extra\n  1\nend"
    assert multipl_e.cut(text, row["stop_tokens"]) == "  numbers.sum { |x| x * x }\nend"


def test_stop_tokens_come_from_the_data_and_must_agree(tmp_path: Path) -> None:
    path = str(HUB / fixture.HUB_ID)
    assert multipl_e.stop_tokens(path, "humaneval-java") == ("\n    }\n",)
    # a folder name of its own: `datasets` caches a local folder under its name, whatever its content
    folder = fixture.write(tmp_path).rename(tmp_path / "mismatched-stop-tokens")
    rows = [json.loads(ln) for ln in (folder / "mbpp-cpp" / "test.jsonl").read_text().splitlines()]
    rows[1]["stop_tokens"] = ["\n};"]
    (folder / "mbpp-cpp" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(Exception, match="2 different stop_tokens lists"):
        multipl_e.stop_tokens(str(folder), "mbpp-cpp")
    assert multipl_e.stop_tokens(path, "mbpp-cpp") == ("\n}",)


def test_rows_of_another_language_are_refused() -> None:
    row = fixture.rows("humaneval", "java")[0]
    with pytest.raises(EvalError, match="in language 'java', not 'cpp'"):
        multipl_e.check_rows("humaneval-cpp", {"t": [{"doc": row}]}, "cpp")


def test_every_language_is_a_benchmark_pair_in_its_group() -> None:
    for code in MULTIPL_E_LANGUAGES:
        for suite in fixture.SUITES:
            b = BENCHMARKS[f"{suite}-{code}"]
            assert (b.group, b.language, b.code, b.metric) == ("coding_langs", code, True, "pass@1")


def test_a_missing_toolchain_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(languages.LANGUAGES, "rs", dataclasses.replace(
        languages.LANGUAGES["rs"], tools={"/nonexistent/rustc": "rustc"}))
    with pytest.raises(ConfigError, match=r"/nonexistent/rustc missing.*apt-get install rustc"):
        languages.check_installed(["cpp", "rs"], "evaluate.benchmarks")


def test_self_test_fails_loudly_when_a_toolchain_cannot_run(box: Sandbox) -> None:
    def broken(code: str) -> list[tuple[str, str, bool]]:
        return [("x", "exit 3\n", True)]
    with pytest.raises(sandbox.SandboxError, match="sh toolchain self-test failed"):
        multipl_e.self_test(["sh"], box, broken)
    multipl_e.self_test(["sh"], box, fixture.programs)


def test_the_toolchain_is_debians_not_a_users() -> None:
    version = languages.version(languages.LANGUAGES["rs"])
    assert version and version.startswith("rustc "), version
    assert all(path.startswith("/usr/") for lang in languages.LANGUAGES.values() for path in lang.tools)


def test_without_bubblewrap_the_launcher_still_decides(tmp_path: Path) -> None:
    """`evaluate.sandbox.allow_unisolated`: the same launcher and pass signal, in a run directory on disk."""
    bare = Sandbox(Limits(), "process", workdir=tmp_path)
    cases = fixture.programs("sh")[:2]
    outcomes = toolchain.run_many(languages.language("sh"), bare, [p for _, p, _ in cases], workers=1)
    assert [o.status for o in outcomes] == [PASSED, FAILED]
    assert list(tmp_path.iterdir()) == []  # run directories removed
