"""The two tiers (tests/tiers.py): a test's tier follows from the fixtures it uses, and a fast-tier
test that starts a heavy process or trains anyway fails, naming what it did."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import tiers
import torch


@pytest.mark.parametrize(("args", "reason"), [
    (["snakemake", "-n"], "snakemake"),
    ([".venv/bin/snakemake", "--cores", "2"], "snakemake"),
    ([sys.executable, "-m", "snakemake", "-n"], "python -m snakemake"),
    ([sys.executable, "-m", "sophia.finetune", "--help"], "python -m sophia.finetune"),
    (["bash", "-c", "snakemake --dag | dot -Tpng"], "snakemake"),
    ("mlflow server --port 5000", "mlflow"),
    (["/usr/bin/chromium", "--headless"], "chromium"),
    (["node", "mobile/tests/e2e.mjs"], "node"),
    ([".venv-export/bin/python", "-c", "import tensorflow"],
     ".venv-export/bin/python (the fast tier needs the main environment only)"),
    ([sys.executable, "-c", "print(1)"], None),
    (["bwrap", "--unshare-all", "python3", "-c", "pass"], None),
    (["git", "rev-parse", "HEAD"], None),
])
def test_forbidden_names_what_the_fast_tier_may_not_start(args: list[str] | str, reason: str | None) -> None:
    assert tiers.forbidden(args) == reason


@dataclass
class FakeItem:
    fixturenames: list[str]
    marks: set[str] = field(default_factory=set)

    def add_marker(self, name: str) -> None:
        self.marks.add(name)

    def get_closest_marker(self, name: str) -> str | None:
        return name if name in self.marks else None


def test_the_fixtures_a_test_uses_decide_its_tier() -> None:
    # fixturenames is pytest's closure: a test reading micro_model has micro_dag in it too
    items = {
        "unit": FakeItem(["tmp_path", "mlflow_store"]),
        "micro": FakeItem(["micro_model", "micro_dag", "_micro_dag_start"]),
        "slurm": FakeItem(["slurm_run", "slurm_cluster", "mlflow_server"]),
        "by hand": FakeItem(["tmp_path"], {"browser"}),
        "family": FakeItem(["family_dag", "family", "_family_dags_start"]),
    }
    tiers.mark_by_fixtures(list(items.values()))
    assert items["unit"].marks == set()
    assert items["micro"].marks == {"micro", "e2e"}
    assert items["slurm"].marks == {"slurm", "server", "e2e"}
    assert items["by hand"].marks == {"browser", "e2e"}
    assert items["family"].marks == {"micro", "e2e"}


def test_a_fast_test_that_starts_snakemake_fails_naming_it() -> None:
    with pytest.raises(AssertionError, match="starts `snakemake` but is in the fast tier"):
        subprocess.run(["snakemake", "--version"], capture_output=True)
    assert subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout == "42\n"


def test_a_fast_test_that_trains_fails_naming_it() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([w], lr=0.1)
    (w * w).sum().backward()  # gradients alone are a unit test's business
    with pytest.raises(AssertionError, match="takes an optimizer step"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(2))


@pytest.mark.e2e
def test_an_e2e_test_may_start_anything() -> None:
    assert tiers.forbidden(["snakemake", "--version"]) == "snakemake"
    done = subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip()[0].isdigit()
