"""The micro studies of the Llama and Qwen2 families (.test/llama.yaml, .test/qwen2.yaml): each the real
Snakemake DAG once per test run, like the Phi micro study (tests/micro_dag.py), in its own folder.

They start with the run (conftest's session fixture) but wait for the Phi micro study to end first
when that one runs too: most of the suite reads the Phi study's outputs, so it gets the two cores;
the family studies then run side by side (one core each) while the later tests run, and the tests
that read them go last (Rank.FAMILY)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from micro_dag import MicroDag

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("llama", "qwen2")


def family_config(family: str) -> dict[str, Any]:
    """.test/<family>.yaml with its project-relative paths made absolute."""
    cfg = yaml.safe_load((ROOT / ".test" / f"{family}.yaml").read_text())
    for dataset in cfg["datasets"].values():
        dataset["path"] = str(ROOT / dataset["path"])
    cfg["evaluate"]["dataset_root"] = str(ROOT / cfg["evaluate"]["dataset_root"])
    return cfg


def families_read(items: list[pytest.Item]) -> list[str]:
    """The families whose study a selected test reads (the `family_dag` fixture, parametrized)."""
    found = {item.callspec.params["family"] for item in items
             if "family_dag" in getattr(item, "fixturenames", ()) and hasattr(item, "callspec")}
    return [f for f in FAMILIES if f in found]


def start_families(base: Path, families: list[str], after: MicroDag | None, command: Any) -> dict[str, MicroDag]:
    """Start each family's study (once per run, whichever worker asks first), each after `after` ends.
    `command(workdir, cores)` gives the Snakemake command line and environment."""
    cores = str(max(1, 2 // max(1, len(families))))
    dags = {}
    for family in families:
        root = base / f"family-{family}"
        cmd, env = command(root / "wf", cores)
        if after is not None:  # wait for the Phi study's exit status file, then run
            cmd = ["bash", "-c", 'while [ ! -f "$0" ]; do sleep 1; done; exec "$@"', str(after.root / "rc"), *cmd]

        def write(wf: Path, family: str = family) -> None:
            (wf / "config.yaml").write_text(yaml.safe_dump(family_config(family)))

        dags[family] = MicroDag.start_once(root, write, cmd, env)
    return dags
