"""Reruns never miss a code change: each rule's source digest covers every module its entry point
can run (found from the imports), and nothing else but the listed no-output-effect modules."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from sophia import provenance

RULES = ROOT / "workflow" / "rules"


def fake_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_closure_follows_every_import_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = fake_package(tmp_path / "sophia", {
        "__init__.py": "",
        "stage/__init__.py": "",
        "stage/__main__.py": "from sophia.stage.run import main\nfrom sophia import tracking\n",
        "stage/run.py": "from . import helper\nfrom .sub import deep\nimport sophia.flat\n"
                        "def later():\n    from sophia.lazy import x\n"
                        "CMD = ['python', '-m', 'sophia.other_env']\n",
        "stage/helper.py": "", "stage/sub/__init__.py": "", "stage/sub/deep.py": "import os\n",
        "flat.py": "", "lazy.py": "x = 1\n", "other_env.py": "", "unused.py": "",
        "tracking.py": "import sophia.unused\n",
    })
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg)
    got = {m.removeprefix("sophia.") for m in provenance.import_closure("sophia.stage")}
    assert got == {"sophia", "stage", "stage.__main__", "stage.run", "stage.helper", "stage.sub", "stage.sub.deep",
                   "flat", "lazy", "other_env"}  # not tracking (no output effect), nor what only it imports
    before = provenance.stage_digest("sophia.stage")
    (pkg / "unused.py").write_text("changed = True\n")
    (pkg / "tracking.py").write_text("import sophia.unused\nchanged = True\n")
    assert provenance.stage_digest("sophia.stage") == before
    (pkg / "stage" / "sub" / "deep.py").write_text("import os  # changed\n")
    assert provenance.stage_digest("sophia.stage") != before
    with pytest.raises(FileNotFoundError, match=r"sophia\.missing"):
        provenance.stage_digest("sophia.missing")


def rule_blocks() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for smk in sorted(RULES.glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        blocks.update({name: body.split("\n\n\n")[0] for name, body in zip(parts[1::2], parts[2::2], strict=True)})
    return blocks


def test_every_rule_that_runs_sophia_digests_exactly_its_entry_point() -> None:
    checked = 0
    for name, body in rule_blocks().items():
        entries = set(re.findall(r'PYTHON \+ " -m (sophia[\w.]*)', body))
        if not entries:
            continue
        assert len(entries) == 1, (name, entries)
        assert f'src=stage_digest("{entries.pop()}")' in body, f"rule {name}: params src must digest its entry point"
        checked += 1
    assert checked >= 8  # base_model, data, quantize, finetune, evaluate, report, merge, export


@pytest.mark.parametrize(("changed", "entry"), [("checkpoint.py", "sophia.report"), ("lm.py", "sophia.evaluate"),
                                                ("export/convert.py", "sophia.export"), ("prompt.py", "sophia.data")])
def test_a_shared_module_change_reruns_the_stages_that_run_it(changed: str, entry: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "sophia"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    before = provenance.stage_digest(entry)
    with open(copy / changed, "a") as fh:
        fh.write("\n# an edit\n")
    assert provenance.stage_digest(entry) != before


def test_an_import_added_in_the_same_process_joins_the_closure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parse of each file is cached on its source text, never on its path alone: an edit is seen."""
    copy = tmp_path / "sophia"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    assert "sophia.prompt" not in provenance.import_closure("sophia.report")
    with open(copy / "report" / "table.py", "a") as fh:
        fh.write("\nfrom sophia import prompt  # an edit\n")
    assert "sophia.prompt" in provenance.import_closure("sophia.report")


def test_no_output_effect_modules_exist_and_say_why() -> None:
    for module, why in provenance.NO_OUTPUT_EFFECT.items():
        assert provenance.module_file(module) is not None and len(why) > 20


def stage_packages() -> list[str]:
    return sorted(p.parent.name for p in provenance.PACKAGE_DIR.glob("*/stage.py"))


def test_no_stage_runs_another_stages_entry_module() -> None:
    """Stages meet through files: sharing a library module is fine, but importing another stage's
    `stage` module would put it in this stage's digest, so editing that stage reruns this one."""
    for name in stage_packages():
        closure = provenance.import_closure(f"sophia.{name}")
        foreign = sorted(m for m in closure if m.endswith(".stage") and m != f"sophia.{name}.stage")
        assert not foreign, f"sophia.{name} imports {foreign}"


def test_an_evaluate_only_change_reruns_no_upstream_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "sophia"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    upstream = ["sophia.base_model", "sophia.data", "sophia.quantize", "sophia.finetune", "sophia.distill"]
    before = {entry: provenance.stage_digest(entry) for entry in upstream}
    with open(copy / "evaluate" / "stage.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert {entry: provenance.stage_digest(entry) for entry in upstream} == before
