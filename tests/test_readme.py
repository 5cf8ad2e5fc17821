"""Every command that README.md and docs/*.md show, typed as shown, in a folder laid out like a
checkout after `make run` (the micro study's results/, links to the environments and the project's
files), with the environment's bin folder NOT on PATH (nothing is activated).

The commands are read from the pages themselves: every line of a ```bash (sh, shell, console)
block (trailing comments dropped), and every inline `code` span that starts like a command
(`make `, `.venv…/bin/`, `sudo `). Each one is run as typed, unless a rule below says otherwise:
- make targets that build environments or run everything (`make run`, `test`, `check`, `setup`,
  `system`, `lock`) run as `make -n` (what they would do): `make test` is CI's command and runs this
  file, `make run` is the embedded default's `snakemake` (the micro study runs the same rules), and
  set-up is what made this checkout;
- Snakemake lines for the GPU and cluster studies (`--configfile configs/…`, `--profile profiles/…`)
  run with `-n` appended: they need GPUs, the hub or SLURM;
- `pytest` lines run with `--collect-only` (the files run in `make test` itself);
- `sudo X` runs X when the test runs as root (CI), and is skipped otherwise;
- servers (`make serve-app`, `make mlflow-ui`, `sophia serve`) start in the background; the test
  waits for their address, runs the commands that talk to them (the `curl` lines), then stops them;
- SKIP names the few commands that cannot run here, each with where it is covered instead.
A command added to a page is run by this test: a command that does not work as typed fails it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, VENV_BIN, MicroRun

DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_BLOCK = re.compile(r"^[ \t]*```(?:bash|sh|shell|console)\n(.*?)^[ \t]*```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`((?:make |\.venv[\w-]*/bin/|sudo )[^`]*)`(?!`)")
COMMENT = re.compile(r"\s+#\s.*$")  # a trailing comment (bash ignores it; the rules below read the command)
EXPORT = re.compile(r"^export (\w+)=(\S+)$")

# Commands that cannot run in this test, and where each is covered instead.
SKIP = {
    "ollama create sophia-gptq-tiny-alpaca:q4_k_m -f results/gguf/gptq+tiny-alpaca/Modelfile":
        "needs Ollama, which the project does not install; tests/test_gguf.py checks the Modelfile",
    'ollama run sophia-gptq-tiny-alpaca:q4_k_m "Write a function that reverses a string."':
        "needs Ollama; `sophia serve` answers the same API in this test and in tests/test_serve.py",
    ".venv/bin/python benchmarks/protocol_lengths.py --tokenizer microsoft/phi-2 --context 2048":
        "needs the model hub; the offline form on the same page runs here",
    ".venv/bin/mlflow server --backend-store-uri postgresql://mlflow:PASSWORD@db.example.org/mlflow "
    "--artifacts-destination s3://my-bucket/mlflow --host 0.0.0.0 --port 5000":
        "needs PostgreSQL and S3; an `mlflow server` with a local store runs in tests/test_slurm.py",
    ".venv/bin/python benchmarks/real_width.py":
        "the workflow twice at real widths (hours): its plan (`-n`) runs here, its arithmetic in test_real_width.py",
    ".venv/bin/python benchmarks/rerank_cost.py --synthetic-only --out benchmarks/results/rerank_cost_synthetic.json":
        "the same batch is the first step of the full rerank_cost.py line (docs/reranking.md), which runs here",
    "scripts/slurm-cluster.sh start": "starts SLURM's daemons as root: tests/test_slurm.py (slurm_cluster)",
    "scripts/slurm-cluster.sh stop": "stops SLURM's daemons: tests/test_slurm.py (slurm_cluster)",
    ".venv/bin/mlflow server --backend-store-uri sqlite:///results/mlflow-server.db --artifacts-destination "
    "results/mlflow-server-artifacts --host 127.0.0.1 --port 5000 &":
        "the cluster's tracking server: tests/test_slurm.py starts the same server (mlflow_server)",
}
DRY_MAKE = re.compile(r"^make (run|test|check|setup|system|lock)$")
STUDY = re.compile(r"\.venv/bin/snakemake .*(--configfile configs/|--profile profiles/)")
SERVE_PORT = "http://127.0.0.1:11434"


@dataclass(frozen=True)
class Server:
    url: str  # polled until it answers
    clients: str = ""  # a pattern of the commands that talk to this server


SERVERS = {
    "make serve-app": Server("http://127.0.0.1:8321/"),
    "make mlflow-ui": Server("http://127.0.0.1:5000/health"),
    ".venv/bin/sophia serve --model results/gguf/gptq+tiny-alpaca": Server(f"{SERVE_PORT}/api/tags", SERVE_PORT),
}


@dataclass(frozen=True)
class Step:
    command: str  # as the page shows it
    kind: str  # run, server, client, skip
    line: str = ""  # what runs
    why: str = ""
    env: tuple[tuple[str, str], ...] = ()


def plan(command: str, env: tuple[tuple[str, str], ...] = ()) -> Step:
    """How the test runs one command of the pages (module docstring)."""
    if command in SKIP:
        return Step(command, "skip", why=SKIP[command])
    if command.startswith("sudo "):
        if os.geteuid() != 0:
            return Step(command, "skip", why="needs root: CI runs it as root")
        inner = plan(command.removeprefix("sudo ").removeprefix("-E "), env)
        return Step(command, inner.kind, inner.line, inner.why, env)
    if command in SERVERS:
        return Step(command, "server", command, env=env)
    if any(s.clients and s.clients in command for s in SERVERS.values()):
        return Step(command, "client", command, env=env)
    if m := DRY_MAKE.match(command):
        return Step(command, "run", f"make -n {m[1]}", "builds environments or runs everything", env)
    if " -m pytest " in command:
        return Step(command, "run", command + " --collect-only -q", "the file runs in make test", env)
    if STUDY.search(command) and " -n" not in command:
        return Step(command, "run", command + " -n", "needs GPUs, the hub or SLURM", env)
    return Step(command, "run", command, env=env)


def blocks(page: Path, seen: set[tuple[str, tuple[tuple[str, str], ...]]]) -> list[list[Step]]:
    """The page's commands, block by block in order (a block's `export X=Y` lines set X for the
    commands after them); an inline command is a block of its own. A command shown before (with the
    same environment) runs once, where it is first shown."""
    text = page.read_text(encoding="utf-8")
    found: list[list[Step]] = []
    for block in SHELL_BLOCK.findall(text):
        steps: list[Step] = []
        env: tuple[tuple[str, str], ...] = ()
        for line in block.replace("\\\n", " ").splitlines():
            line = COMMENT.sub("", re.sub(r"\s+", " ", line)).strip()
            if not line or line.startswith("#"):
                continue
            if m := EXPORT.match(line):
                env = (*env, (m[1], m[2]))
            elif (line, env) not in seen:
                seen.add((line, env))
                steps.append(plan(line, env))
        found.append(steps)
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.M | re.S)
    for command in INLINE.findall(prose):
        if (command, ()) not in seen:
            seen.add((command, ()))
            found.append([plan(command)])
    return [b for b in found if b]


def _all_blocks() -> list[tuple[str, int, list[Step]]]:
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    # README first: a command it shares with a page runs as the README shows it
    return [(page.relative_to(ROOT).as_posix(), i, steps)
            for page in DOCS for i, steps in enumerate(blocks(page, seen))]


BLOCKS = _all_blocks()
ALL_STEPS = [s for _, _, steps in BLOCKS for s in steps]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SOPHIA_")) and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p).resolve() != VENV_BIN.resolve())
    return env


def sh(checkout: Path, step: Step, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """One command, through bash, in the checkout."""
    return subprocess.run(["bash", "-c", step.line], cwd=checkout, env={**_env(), **dict(step.env)},
                          capture_output=True, text=True, timeout=timeout)


# --- what some commands need first, and what their results must show ---------------------------------
def _dataset_spec(checkout: Path) -> None:
    spec = yaml.safe_load((checkout / "config.yaml").read_text())["datasets"]["alpaca"]
    (checkout / "my_dataset.yaml").write_text(yaml.safe_dump(spec))


def _eval_spec(checkout: Path) -> None:
    evaluate = yaml.safe_load((checkout / "config.yaml").read_text())["evaluate"]
    (checkout / "my_eval.yaml").write_text(yaml.safe_dump({"evaluate": evaluate}))


PREPARE: dict[str, Callable[[Path], None]] = {
    "--spec my_dataset.yaml": _dataset_spec,
    "--spec my_eval.yaml": _eval_spec,
    "--file my_code.py": lambda c: (c / "my_code.py").write_text("def square(x):\n    return x * x\n"),
}


def _stage_times_match_snakemake(checkout: Path, out: str) -> None:
    """The record holds every job of the run with the wall time of Snakemake's own benchmark file,
    and every stage the run's rules ran, each with its jobs' time summed."""
    record = json.loads((checkout / "benchmarks" / "results" / "stage_times.json").read_text())
    bench = checkout / "results" / "benchmarks"
    tsvs = {}
    for tsv in bench.rglob("*.tsv"):
        with tsv.open(newline="") as fh:
            tsvs[str(checkout / "results" / tsv.relative_to(bench).with_suffix(""))] = float(
                list(csv.DictReader(fh, delimiter="\t"))[-1]["s"])
    jobs = {(checkout / j["output"]).resolve().as_posix(): j for j in record["jobs"]}
    assert sorted(jobs) == sorted(Path(p).resolve().as_posix() for p in tsvs)
    for output, seconds in tsvs.items():
        assert jobs[Path(output).resolve().as_posix()]["metrics"]["job.seconds"] == pytest.approx(seconds)
    ran = set(re.findall(r"^(\w+)\s+\d+$", (checkout / "snakemake.log").read_text(), re.M)) - {"all", "total"}
    assert ran, "no job stats in the run's log"
    stages = record["stages"]
    assert all(s["seconds"] > 0 and s["jobs"] >= 1 for s in stages.values()), stages
    by_stage: dict[str, float] = {}
    for j in record["jobs"]:
        by_stage[j["stage"]] = by_stage.get(j["stage"], 0.0) + j["metrics"]["job.seconds"]
    assert {k: pytest.approx(v) for k, v in by_stage.items()} == {k: s["seconds"] for k, s in stages.items()}
    assert record["job_seconds"] == pytest.approx(sum(tsvs.values()))
    assert set(stages) == ran, (sorted(ran), sorted(stages))  # every rule the run ran, and nothing else
    assert "job time" in out


def _png(path: str) -> Callable[[Path, str], None]:
    def check(checkout: Path, out: str) -> None:
        assert (checkout / path).read_bytes()[:4] == b"\x89PNG"
    return check


def _file(path: str) -> Callable[[Path, str], None]:
    def check(checkout: Path, out: str) -> None:
        assert (checkout / path).is_file() and (checkout / path).stat().st_size > 0, path
    return check


def _piqa(checkout: Path, out: str) -> None:
    assert json.loads((checkout / "my_eval" / "piqa" / "scores.json").read_text())["benchmark"] == "piqa"
    assert [p.name for p in (checkout / "my_eval").iterdir()] == ["piqa"]


def _planned_depths(checkout: Path, out: str) -> None:
    for depth in ("4L", "3L"):
        log = (checkout / "results-phi2-shape" / depth / "snakemake.log").read_text()
        assert "export" in log and "gguf" in log and "This was a dry-run" in log, log[-2000:]


def _says(*words: str) -> Callable[[Path, str], None]:
    def check(checkout: Path, out: str) -> None:
        assert any(w in out for w in words), f"none of {words} in:\n{out[-2000:]}"
    return check


# a pattern of the command that runs -> what its output (stdout + stderr) or files must show
CHECKS: dict[str, Callable[[Path, str], None]] = {
    r"^\.venv/bin/snakemake -n$": _says("Nothing to be done"),
    r"sophia run ": _says("tok/s"),
    r"-m sophia\.data ": _file("my_alpaca/instruct/train.jsonl"),
    r"-m sophia\.evaluate ": _piqa,
    r"--dag \| dot -Tpng > dag\.png": _png("dag.png"),
    r"--report results/report\.html": _file("results/report.html"),
    r"benchmarks/real_width\.py -n": _planned_depths,
    r"benchmarks/stage_times\.py$": _stage_times_match_snakemake,
    r"(configs/|profiles/).* -n$": _says("evaluate", "Nothing to be done"),
}
LINKED = (".venv", ".venv-export", ".venv-litert", "Makefile", "Snakefile", "workflow", "mobile", "configs",
          "profiles", "envs", "pyproject.toml", "scripts", "tests", ".test", "docs")
# The default config's exported model is gptq+tiny-alpaca; the micro study's is gptq+alpaca.
ALIASED = ("export", "gguf", "merged")


@pytest.fixture(scope="module")
def checkout(micro_run: MicroRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the micro run's folder, completed into a checkout. A copy, not the run's own folder:
    the commands write into it, other tests read the run meanwhile, and each worker that takes some
    of the commands (they spread over the workers) gets its own. The copy keeps every timestamp, so
    Snakemake finds the study up to date in it."""
    assert micro_run.result.returncode == 0, micro_run.result.stderr[-3000:]
    workdir = tmp_path_factory.mktemp("checkout")
    shutil.copytree(micro_run.workdir, workdir, symlinks=True, dirs_exist_ok=True)
    (workdir / "snakemake.log").write_text(micro_run.result.stdout + micro_run.result.stderr)
    for name in LINKED:
        if (ROOT / name).exists():
            (workdir / name).symlink_to(ROOT / name)
    for folder in ALIASED:
        if (workdir / "results" / folder / "gptq+alpaca").is_dir():
            (workdir / "results" / folder / "gptq+tiny-alpaca").symlink_to(workdir / "results" / folder / "gptq+alpaca")
    bench = workdir / "benchmarks"  # its scripts write benchmarks/results/ here, not into the repository
    bench.mkdir()
    for script in (ROOT / "benchmarks").glob("*.py"):
        (bench / script.name).symlink_to(script)
    return workdir


def _check(checkout: Path, step: Step, result: subprocess.CompletedProcess[str]) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"{step.line}\n{out[-3000:]}"
    for pattern, check in CHECKS.items():
        if re.search(pattern, step.line):
            check(checkout, out)


def _serves(url: str, timeout: float = 180) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5).read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _serve(checkout: Path, step: Step) -> None:
    """Start a server command, wait for its address, run its clients, stop it."""
    server = SERVERS[step.line]
    proc = subprocess.Popen(["bash", "-c", step.line], cwd=checkout, env={**_env(), **dict(step.env)},
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = _serves(server.url)
        if step.line == "make serve-app":
            assert body == (checkout / "results" / "mobile" / "index.html").read_bytes()
        for client in (s for s in ALL_STEPS if s.kind == "client" and server.clients and server.clients in s.line):
            result = sh(checkout, client, timeout=120)
            _check(checkout, client, result)
            assert "sophia-gptq-tiny-alpaca:q4_k_m" in result.stdout and '"error"' not in result.stdout, result.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    if step.line == "make mlflow-ui":
        assert "/#/experiments/" in out and "runs?workflowType=machine_learning" in out, out[-2000:]


def test_the_pages_show_commands_and_every_skip_is_still_shown() -> None:
    """The reader of this file sees the commands it runs; a skip names a command that is still there."""
    shown = {s.command for s in ALL_STEPS}
    assert {"make run", "make test", "make check"} <= shown
    assert set(SKIP) <= shown, set(SKIP) - shown
    assert not [s for s in ALL_STEPS if s.kind == "client" and not any(s.line and srv.clients in s.line
                                                                        for srv in SERVERS.values() if srv.clients)]
    assert any(s.kind == "server" and SERVERS[s.line].clients for s in ALL_STEPS), "no server runs the curl lines"


def test_links_and_pictures_resolve() -> None:
    """Every relative link and picture of the pages names a file of the checkout."""
    missing = []
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|src=\"([^\"]+)\"", page.read_text(encoding="utf-8")):
            path = next(t for t in target if t)
            if not re.match(r"\w+://", path) and not (page.parent / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, missing


@pytest.mark.parametrize(("page", "index", "steps"), BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_commands_work_as_typed(checkout: Path, page: str, index: int, steps: list[Step]) -> None:
    for step in steps:
        if step.kind in ("skip", "client"):  # clients run inside their server's block
            continue
        for pattern, prepare in PREPARE.items():
            if pattern in step.line:
                prepare(checkout)
        if step.kind == "server":
            _serve(checkout, step)
            continue
        start = time.monotonic()
        result = sh(checkout, step)
        print(f"{time.monotonic() - start:6.1f} s  {step.line}")
        _check(checkout, step, result)
