"""The suite's two tiers. `make check` runs the fast tier (`-m "not e2e"`): unit and contract tests
that start no workflow, cluster, server or browser and train no model. `make test` runs everything.

A test's tier follows from what it uses, so nobody has to remember to mark it: one that reads the
micro study, the SLURM cluster or an MLflow server (directly or through another fixture) is marked
`e2e` at collection. A fast-tier test that starts one of those processes, an interpreter of another
environment or an optimizer step anyway fails, naming what it did, instead of slowing the fast tier
down unnoticed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# fixture -> the mark it gives (each also marks the test e2e)
FIXTURE_MARKS = {
    "micro_dag": "micro",  # the micro study: every micro_* output fixture depends on it
    "family_dag": "micro",  # the Llama and Qwen2 micro studies
    "slurm_cluster": "slurm",
    "mlflow_server": "server",
}
# marks that put a test in the e2e tier when a test file sets them by hand
E2E_MARKS = ("micro", "slurm", "server", "browser", "train")

# What a fast-tier test must not start: workflow engines, cluster clients, servers and browsers,
# and the stage CLIs (each is seconds of imports before it does anything).
FORBIDDEN_PROGRAMS = {"snakemake", "sbatch", "srun", "salloc", "scontrol", "sacct", "chromium", "chromium-browser",
                      "chrome", "node", "npm", "mlflow", "sophia"}
FORBIDDEN_MODULES = ("snakemake", "mlflow", "sophia")


def mark_by_fixtures(items: list[pytest.Item]) -> None:
    """Mark every test by the heavy fixtures in its closure, and mark e2e what any heavy mark covers."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in names:
                item.add_marker(mark)
        if any(item.get_closest_marker(m) for m in E2E_MARKS) and not item.get_closest_marker("e2e"):
            item.add_marker("e2e")


def forbidden(args: Any) -> str | None:
    """The reason a fast-tier test may not start `args` (a Popen argument), or None."""
    argv = [str(a) for a in args] if isinstance(args, Sequence) and not isinstance(args, str | bytes) else [str(args)]
    words = argv if len(argv) > 1 else argv[0].split()
    if not words:
        return None
    program = Path(words[0]).name
    if any(part.startswith(".venv-") for part in Path(words[0]).parts):
        return f"{words[0]} (the fast tier needs the main environment only)"
    if program == "bash" and len(words) > 2 and words[1] == "-c":
        return forbidden(words[2])
    if program in FORBIDDEN_PROGRAMS:
        return program
    if program.startswith("python") and "-m" in words[:-1]:
        module = words[words.index("-m") + 1]
        if module.split(".")[0] in FORBIDDEN_MODULES:
            return f"python -m {module}"
    return None


@pytest.fixture(autouse=True)
def fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In a fast-tier test, refuse to start a forbidden process (see FORBIDDEN_PROGRAMS) or to take
    an optimizer step (training belongs to the e2e tier)."""
    if request.node.get_closest_marker("e2e"):
        yield
        return

    def refuse(what: str) -> None:
        raise AssertionError(f"{request.node.nodeid} {what} but is in the fast tier: mark it e2e "
                             "(pytest.mark.e2e), or test the function instead")

    init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        reason = forbidden(args)
        if reason:
            refuse(f"starts `{reason}`")
        init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    handle = None
    if "torch" in sys.modules:  # nothing can train before torch is imported; most test modules import it
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        handle = register_optimizer_step_pre_hook(lambda *_: refuse("takes an optimizer step (trains a model)"))
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
