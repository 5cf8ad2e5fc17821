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
from pathlib import Path

import pytest

TIMEOUT_S = 2400
# What a test reads of the micro DAG, by when it is ready: the fixtures that wait for one output each
# (the base model and data a minute in; GPTQ; the merged and exported model near the end), and those
# that wait for the whole run (every stage, its MLflow store, Snakemake's own records).
EARLY = ("micro_model", "micro_data", "micro_gguf")
LATE = ("micro_gptq", "micro_merged", "micro_export")
WHOLE = ("micro_run", "micro_workflow")
SLURM = ("slurm_run", "slurm_cluster", "mlflow_server")


def order_for_workers(items: list[pytest.Item]) -> bool:
    """Sort the session's tests for two workers (`make test`: pytest-xdist hands out one file at a
    time, in this order); return whether any test reads the micro DAG. The SLURM file goes first: its
    worker mostly waits for the cluster's jobs (run by slurmd) while the other runs the rest. The
    micro DAG starts at the session's first test, and a test that reads one of its outputs waits
    only for that output (MicroDag.output). So a file goes by the latest output it reads: the files
    on the earliest outputs come next (the real-width fixture's minutes then overlap the DAG), then
    the files that read none, then those on GPTQ and the exported model, then those on the whole
    run. Within a file, the same order."""
    def rank(item: pytest.Item) -> int:
        names = set(getattr(item, "fixturenames", ()))
        for i, group in enumerate((SLURM, WHOLE, LATE, EARLY)):
            if names & set(group):
                return (-1, 4, 2, 0)[i]
        return 1

    files: dict[Path, list[int]] = {}
    for item in items:
        files.setdefault(item.path, []).append(rank(item))
    # a file's latest need: its micro outputs, or 1 when it reads none of them
    key = {path: -1 if -1 in ranks else max((r for r in ranks if r != 1), default=1) for path, ranks in files.items()}
    first = {path: i for i, path in enumerate(files)}
    items.sort(key=lambda i: (key[i.path], first[i.path], rank(i)))
    return any(r in (0, 2, 4) for ranks in files.values() for r in ranks)


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
