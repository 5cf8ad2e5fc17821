"""Every command the README shows, typed as shown, in a folder laid out like a checkout after
`make run` (the micro study's results/, links to the environments and the project's files), with
the environment's bin folder NOT on PATH (nothing is activated).

Not run here, and where they are covered instead: `make setup`/`make test`/`make lock` build
environments (`make test` is CI's command, .ci/run); `make run` is `snakemake --cores 2` on
config.yaml (the micro DAG of the session fixture runs the same rules); the GPU/cluster studies and
the team server need GPUs, hubs, SLURM or PostgreSQL, so their commands run as dry runs (`-n`
appended), the real SLURM path is tests/test_scaleout.py's; `node --test mobile/tests/unit/` runs in
tests/test_mobile.py (it needs the Python reference tokens the test writes); `mlflow ui` runs in
tests/test_mlflow_ui.py (on a free port: 5000 may be taken on a shared machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.e2e
LINKED = (".venv", ".venv-export", "Makefile", "Snakefile", "workflow", "mobile", "configs", "profiles")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SOPHIA_")) and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p).resolve() != VENV_BIN.resolve())
    return env


def sh(checkout: Path, command: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """One README line, through bash, in the checkout."""
    return subprocess.run(["bash", "-c", command], cwd=checkout, env={**_env(), **env}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkout(micro_workflow: tuple[Path, Any]) -> Iterator[Path]:
    """The micro run's folder, completed into a checkout. The micro config exports `gptq+alpaca`;
    the README's runner lines name the default config's `gptq+tiny-alpaca`, so that name links to it."""
    workdir, result = micro_workflow
    assert result.returncode == 0, result.stderr[-3000:]
    made = [workdir / name for name in LINKED]
    for link in made:
        link.symlink_to(ROOT / link.name)
    bench = workdir / "benchmarks"  # its scripts write benchmarks/results/ here, not into the repository
    bench.mkdir()
    for script in (ROOT / "benchmarks").glob("*.py"):
        (bench / script.name).symlink_to(script)
    alias = workdir / "results" / "export" / "gptq+tiny-alpaca"
    alias.symlink_to(workdir / "results" / "export" / "gptq+alpaca")
    (workdir / "my_code.py").write_text("def square(x):\n    return x * x\n")
    try:
        yield workdir
    finally:
        for link in [*made, alias]:
            link.unlink()
        for extra in ("my_code.py", "my_dataset.yaml", "dag.png"):
            (workdir / extra).unlink(missing_ok=True)
        shutil.rmtree(bench)


def test_on_device_runner_lines(checkout: Path) -> None:
    generate = sh(checkout, '.venv-export/bin/sophia run --bundle results/export/gptq+tiny-alpaca/bundle '
                            '--prompt "Write a function that reverses a string."')
    assert generate.returncode == 0, generate.stderr[-2000:]
    assert "tok/s" in generate.stdout + generate.stderr
    summarise = sh(checkout, ".venv-export/bin/sophia run --bundle results/export/gptq+tiny-alpaca/bundle "
                             "--file my_code.py")
    assert summarise.returncode == 0, summarise.stderr[-2000:]
    assert "tok/s" in summarise.stdout + summarise.stderr


def test_stage_alone_and_snakemake_lines(checkout: Path) -> None:
    spec = yaml.safe_load((checkout / "config.yaml").read_text())["datasets"]["alpaca"]
    (checkout / "my_dataset.yaml").write_text(yaml.safe_dump(spec))
    alone = sh(checkout, ".venv/bin/python -m sophia.data --name alpaca --spec my_dataset.yaml "
                         "--tokenizer results/models/base --out my_alpaca")
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert (checkout / "my_alpaca" / "instruct" / "train.jsonl").is_file()
    shutil.rmtree(checkout / "my_alpaca")
    evaluate = yaml.safe_load((checkout / "config.yaml").read_text())["evaluate"]
    (checkout / "my_eval.yaml").write_text(yaml.safe_dump({"evaluate": evaluate}))
    one = sh(checkout, ".venv/bin/python -m sophia.evaluate --spec my_eval.yaml --model-id base "
                       "--model results/models/base --benchmark piqa --out my_eval")
    assert one.returncode == 0, one.stderr[-2000:]
    assert json.loads((checkout / "my_eval" / "piqa" / "scores.json").read_text())["benchmark"] == "piqa"
    assert [p.name for p in (checkout / "my_eval").iterdir()] == ["piqa"]
    shutil.rmtree(checkout / "my_eval")
    nothing = sh(checkout, ".venv/bin/snakemake -n")
    assert nothing.returncode == 0 and "Nothing to be done" in nothing.stdout + nothing.stderr, nothing.stderr[-2000:]
    dag = sh(checkout, ".venv/bin/snakemake --dag | dot -Tpng > dag.png")
    assert dag.returncode == 0, dag.stderr[-2000:]
    assert (checkout / "dag.png").read_bytes()[:4] == b"\x89PNG"


def test_study_lines_plan_as_dry_runs(checkout: Path) -> None:
    for line, env in (
        (".venv/bin/snakemake --configfile configs/paper.yaml --profile profiles/workstation", {}),
        (".venv/bin/snakemake --configfile configs/paper.yaml --profile profiles/slurm",
         {"MLFLOW_TRACKING_URI": "http://mlflow.example.org:5000"}),
        (".venv/bin/snakemake --configfile configs/deepseek-coder.yaml --profile profiles/workstation", {}),
        (".venv/bin/snakemake --configfile configs/gpu-smoke.yaml --profile profiles/workstation", {}),
    ):
        result = sh(checkout, line + " -n", **env)
        assert result.returncode == 0, f"{line}:\n{result.stderr[-2000:]}"
        assert "evaluate" in result.stdout + result.stderr, line
    rehearsal = sh(checkout, ".venv/bin/python benchmarks/real_width.py -n")  # both depths planned, nothing run
    assert rehearsal.returncode == 0, rehearsal.stderr[-2000:]
    for depth in ("4L", "3L"):
        plan = (checkout / "results-phi2-shape" / depth / "snakemake.log").read_text()
        assert "export" in plan and "gguf" in plan and "This was a dry-run" in plan, plan[-2000:]
    shutil.rmtree(checkout / "results-phi2-shape")


def test_stage_times_benchmark(checkout: Path) -> None:
    result = sh(checkout, ".venv/bin/python benchmarks/stage_times.py")
    assert result.returncode == 0, result.stderr[-2000:]
    times = json.loads((checkout / "benchmarks" / "results" / "stage_times.json").read_text())
    assert times


def _serves(url: str, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5).read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.parametrize(("line", "url", "expect"), [
    ("make serve-app", "http://127.0.0.1:8321/", "results/mobile/index.html"),
    # `make mlflow-ui` first runs `setup` (a no-op after `make run`); -o setup skips re-checking it here
    ("make -o setup mlflow-ui", "http://127.0.0.1:5000/health", None),
])
def test_make_servers(checkout: Path, line: str, url: str, expect: str | None) -> None:
    proc = subprocess.Popen(["bash", "-c", line], cwd=checkout, env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = _serves(url, timeout=180)
        if expect:
            assert body == (checkout / expect).read_bytes()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    if "mlflow-ui" in line:
        assert "/#/experiments/" in out and "runs?workflowType=machine_learning" in out, out[-2000:]
