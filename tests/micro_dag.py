"""The micro DAG of the test session: started once by whichever pytest-xdist worker asks first,
attached to by the others through its folder, read output by output; and the order the suite's
files go in for two workers. tests/conftest.py holds the fixtures and hooks that use these."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import pytest
from xdist.scheduler import LoadFileScheduling

TIMEOUT_S = 2400


class Rank(IntEnum):
    """When a test file can run, by the latest output of the micro study it reads."""

    SLURM = 0  # first: its worker mostly waits for the cluster's jobs (run by slurmd)
    EARLY = 1  # the base model and data, a minute in (and the GGUF built from them)
    NONE = 2  # reads nothing of the micro study
    LATE = 3  # GPTQ, the merged and the exported model, near the end
    WHOLE = 4  # the whole run: every stage, its MLflow store, Snakemake's own records
    FAMILY = 5  # the Llama and Qwen2 studies, which start once the Phi study has ended (family_studies.py)


# The fixtures that decide a test's rank, latest first.
RANK_FIXTURES = (
    (Rank.SLURM, ("slurm_run", "slurm_cluster", "mlflow_server")),
    (Rank.FAMILY, ("family_dag",)),
    (Rank.WHOLE, ("micro_run",)),
    (Rank.LATE, ("micro_gptq", "micro_merged", "micro_export")),
    (Rank.EARLY, ("micro_model", "micro_data", "micro_gguf")),
)


def rank(item: pytest.Item) -> Rank:
    names = set(getattr(item, "fixturenames", ()))
    return next((r for r, fixtures in RANK_FIXTURES if names & set(fixtures)), Rank.NONE)


def order_for_workers(items: list[pytest.Item]) -> bool:
    """Sort the run's tests for two workers (`make test`: pytest-xdist hands out one file at a
    time, in this order); return whether any test reads the micro study. The micro study starts at
    the run's first test, and a test that reads one of its outputs waits only for that output
    (MicroDag.output), so a file goes by the latest output any of its tests reads (Rank): the tests
    that read early outputs and those that read none then run while the study is still going.
    Within a file, the same order."""
    ranks = {item: rank(item) for item in items}
    by_file: dict[Path, set[Rank]] = {}
    for item, r in ranks.items():
        by_file.setdefault(item.path, set()).add(r)
    files = {path: Rank.SLURM if Rank.SLURM in rs else max(rs - {Rank.NONE}, default=Rank.NONE)
             for path, rs in by_file.items()}
    first = {path: i for i, path in enumerate(files)}
    items.sort(key=lambda i: (files[i.path], first[i.path], ranks[i]))
    return any(r in (Rank.EARLY, Rank.LATE, Rank.WHOLE) for r in ranks.values())


# Files whose tests any free worker may take one by one (their module fixtures are built once per
# worker that takes one): the README's and docs' commands, the longest file, all reading the whole
# micro study, so they would otherwise end the run on one worker while the other idles.
SPREAD = ("tests/test_readme.py",)


class SpreadFileScheduling(LoadFileScheduling):
    """`--dist loadfile` (`make test`): a file's tests go to one worker, so its module fixtures are
    built once; but the tests of the SPREAD files each go to whichever worker is free. (xdist's
    `loadgroup` would say this with marks, but it renames tests by an attribute pytest 9.2 no longer
    reads, so its groups are silently ignored.)"""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return nodeid if path in SPREAD else path


def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of the session sees: under pytest-xdist each worker's basetemp is a
    subfolder of the controller's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@dataclass
class MicroDag:
    """The micro DAG in `root`: state.json (pid, start), snakemake.{out,err}, rc once it has ended,
    and the workflow's folder wf/."""

    root: Path

    @property
    def workdir(self) -> Path:
        return self.root / "wf"

    @classmethod
    def start_once(cls, root: Path, write_config: Callable[[Path], None], cmd: list[str],
                   env: dict[str, str]) -> MicroDag:
        """Start `cmd` (Snakemake on root/wf) unless another worker already has."""
        from filelock import FileLock

        dag = cls(root)
        with FileLock(str(root) + ".lock"):
            if (root / "state.json").is_file():
                return dag
            dag.workdir.mkdir(parents=True)
            write_config(dag.workdir)
            # The exit status goes to a file, for the workers that did not start it.
            script = '"$@" >"$0/snakemake.out" 2>"$0/snakemake.err"; echo $? >"$0/rc.tmp"; mv "$0/rc.tmp" "$0/rc"'
            proc = subprocess.Popen(["bash", "-c", script, str(root), *cmd], env=env, start_new_session=True)
            (root / "state.json").write_text(json.dumps({"pid": proc.pid, "time": time.time()}))
        return dag

    def stop_if_running(self) -> None:
        state = self.root / "state.json"
        if state.is_file() and self._rc() is None:
            try:
                os.killpg(json.loads(state.read_text())["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _rc(self) -> int | None:
        rc = self.root / "rc"
        return int(rc.read_text()) if rc.is_file() else None

    def _until(self, ready: Callable[[], bool]) -> int | None:
        started = json.loads((self.root / "state.json").read_text())
        while not ready() and self._rc() is None:
            if time.time() - started["time"] > TIMEOUT_S:
                os.killpg(started["pid"], signal.SIGKILL)
                pytest.fail(f"the micro workflow ran past {TIMEOUT_S} s:\n{self._log()}")
            time.sleep(0.5)
        return self._rc()

    def _log(self) -> str:
        return (self.root / "snakemake.err").read_text()[-4000:]

    def wait(self) -> subprocess.CompletedProcess[str]:
        rc = self._until(lambda: False)
        out, err = ((self.root / f"snakemake.{x}").read_text() for x in ("out", "err"))
        return subprocess.CompletedProcess(["snakemake"], rc if rc is not None else -1, out, err)

    def output(self, rel: str) -> Path:
        """results/<rel> once its job has ended: Snakemake writes the job's `benchmark:` file after it."""
        done = self.workdir / "results" / "benchmarks" / f"{rel}.tsv"
        self._until(done.is_file)
        if not done.is_file():
            pytest.fail(f"the micro workflow ended (exit {self._rc()}) without results/{rel}:\n{self._log()}")
        return self.workdir / "results" / rel
