"""Benchmark: the floor under `make test`'s time on this machine.

Three parts of the suite cost the same whatever the rest of the suite does:
- micro_dag: the session fixture, the whole workflow on the micro config (tests/conftest.py);
- real_width: one Phi-2-wide layer through GPTQ, a LoRA step, merge and the TFLite export
  (tests/test_real_width.py `build`);
- slurm: tests/test_slurm.py, the workflow through a real one-node SLURM cluster.

This runs each alone, one after the other, then the whole suite as `make test` runs it (set-up
and lint excluded), and records each one's wall time and the machine's busy core-seconds
(/proc/stat: every process counts, Snakemake's jobs, slurmd's, the browsers). Two cores give 1200
core-seconds in ten minutes, so the three parts' sum against 1200 says whether `make test` can
reach ten minutes with them in it. With --by-process it also says where each part's CPU went: by
kind of process, and for the suite by the study or test each process served (its own or an
ancestor's folder or command line: the micro study's, each family study's, the SLURM study's...).

    .venv/bin/python benchmarks/suite_floor.py                               # all four (half an hour)
    .venv/bin/python benchmarks/suite_floor.py --parts micro_dag real_width  # some parts only
    .venv/bin/python benchmarks/suite_floor.py --parts suite --by-process    # the suite's CPU by kind and by study

Run it with nothing else on the machine. real_width reads the micro DAG's base model and data from
--workdir (run micro_dag first, in this or an earlier call). Writes benchmarks/results/suite_floor.json
and .md, and logs both to an MLflow run (experiment sophia-benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from record import save

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PARTS = ("micro_dag", "real_width", "slurm", "suite")
FIXED = ("micro_dag", "real_width", "slurm")
CORES = 2
BUDGET_S = 600  # the target: `make test` in ten minutes


def busy_seconds(stat: str) -> float:
    """Busy CPU time of all cores since boot from /proc/stat's first line: user, nice, system, irq,
    softirq (idle, iowait and steal are not this machine's work)."""
    fields = stat.splitlines()[0].split()
    assert fields[0] == "cpu", stat[:80]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# What kind of process a command line is; the first match wins (a stage's JSON spec may name anything).
KINDS = (("pytest (controller and workers)", re.compile(r"exec\(eval\(sys\.stdin\.readline\(\)\)\)|-m pytest")),
         ("stage processes (python -m sophia...)", re.compile(r"python\S* -m sophia")),
         ("Snakemake", re.compile(r"snakemake")),
         ("browsers, Node, MLflow servers", re.compile(r"chrom|(^|/)node |mlflow (server|ui)|-m mlflow")),
         ("other Python", re.compile(r"python")))


def kind(cmd: str) -> str:
    head = cmd[:300]
    return next((name for name, pattern in KINDS if pattern.search(head)), "other (shells, sandboxes, kernel threads)")


# The part of the suite a process serves: the first pattern that its folder or command line, or the
# nearest ancestor's, matches (a job runs in its study's folder; a study's Snakemake names it).
SUITE_PARTS = (("the micro study and the runs in its folder", re.compile(r"/micro/wf\b")),
               ("the Llama study", re.compile(r"/family-llama/")),
               ("the Qwen2 study", re.compile(r"/family-qwen2/")),
               ("the SLURM study and its cluster", re.compile(r"/slurm_wf\d|/slurm\d|slurmctld|slurmd|slurmdbd|"
                                                             r"munged|mariadbd")),
               ("the real-width build's export", re.compile(r"/wide\d")),
               ("README and docs commands (test_readme)", re.compile(r"/checkout\d")))
WORKER = re.compile(r"exec\(eval\(sys\.stdin\.readline\(\)\)\)")


@dataclass
class Proc:
    cmd: str
    cpu: float  # CPU seconds so far
    ppid: int = 0
    cwd: str = ""


def read_proc() -> dict[tuple[int, int], Proc]:
    """(pid, start time) -> command line, CPU seconds so far, parent and folder of every process now."""
    hz, out = os.sysconf("SC_CLK_TCK"), {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        try:
            cwd = os.readlink(Path(entry.path, "cwd"))
        except OSError:  # another user's process, or it ended: its command line still places it
            cwd = ""
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        out[(int(entry.name), int(fields[19]))] = Proc(cmd, (int(fields[11]) + int(fields[12])) / hz,
                                                       int(fields[1]), cwd)
    return out


class ProcessCpu:
    """Each process's CPU time, from samples of /proc. A process alive at the first sample counts
    only what it used after it; one that ends loses what it used after its last sample, and one
    shorter than the interval may be missed: compare the total with the busy time."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], list[Any]] = {}  # key -> [Proc, CPU at first sight, CPU at last]

    def add(self, sample: dict[tuple[int, int], Proc], first: bool) -> None:
        for key, proc in sample.items():
            if key in self.seen:
                self.seen[key][0].cmd = proc.cmd or self.seen[key][0].cmd  # `bash -c` execs its command
                self.seen[key][2] = proc.cpu
            else:
                self.seen[key] = [proc, proc.cpu if first else 0.0, proc.cpu]

    def _total(self, label: Callable[[tuple[int, int]], str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for key, (_, start, end) in self.seen.items():
            if end - start > 0:
                k = out.setdefault(label(key), {"processes": 0, "core_s": 0.0})
                k["processes"] += 1
                k["core_s"] = round(k["core_s"] + end - start, 2)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["core_s"]))

    def by_kind(self) -> dict[str, dict[str, float]]:
        return self._total(lambda key: kind(self.seen[key][0].cmd))

    def by_part(self) -> dict[str, dict[str, float]]:
        """CPU by the part of the suite each process served (SUITE_PARTS); the rest of a pytest worker's
        tree is the other tests (a worker's own CPU: the tests it ran in-process)."""
        started: dict[int, list[int]] = {}
        for pid, start in self.seen:
            started.setdefault(pid, []).append(start)

        def part(key: tuple[int, int]) -> str:
            seen = set()
            while key in self.seen and key not in seen:
                seen.add(key)
                proc = self.seen[key][0]
                if WORKER.search(proc.cmd):
                    return "the other tests (the pytest workers and what they start)"
                text = f"{proc.cwd} {proc.cmd[:400]}"
                if name := next((n for n, pattern in SUITE_PARTS if pattern.search(text)), None):
                    return name
                # the parent: the latest process of that pid that started no later than this one
                earlier = [s for s in started.get(proc.ppid, []) if s <= key[1]]
                key = (proc.ppid, max(earlier)) if earlier else (0, 0)
            return "other processes"

        return self._total(part)


def measured(run: Callable[[], str], by_process: bool = False, interval: float = 0.3) -> dict[str, Any]:
    """Wall time and busy core-seconds of the machine while `run` runs, its note (e.g. test counts),
    and with `by_process` the CPU of every process that ran, by kind (ProcessCpu)."""
    stat = Path("/proc/stat")
    sampler, stop = ProcessCpu(), threading.Event()

    def sample() -> None:
        sampler.add(read_proc(), first=True)
        while not stop.wait(interval):
            sampler.add(read_proc(), first=False)
        sampler.add(read_proc(), first=False)

    thread = threading.Thread(target=sample, daemon=True)
    busy0, t0 = busy_seconds(stat.read_text()), time.perf_counter()
    if by_process:
        thread.start()
    try:
        note = run()
    finally:
        stop.set()
        if by_process:
            thread.join()
    wall, busy = time.perf_counter() - t0, busy_seconds(stat.read_text()) - busy0
    out = {"wall_s": round(wall, 1), "core_s": round(busy, 1), "busy_share": round(busy / (CORES * wall), 3),
           "note": note}
    if by_process:
        out["by_kind"] = sampler.by_kind()
        out["by_part"] = sampler.by_part()
    return out


def job_env() -> dict[str, str]:
    """What the Makefile exports to `make test`: the environment's bin first, one thread per process."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_WORKERS": "1"}


def check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[-1] if lines else ""


def micro_dag(workdir: Path) -> str:
    sys.path.insert(0, str(TESTS))
    from conftest import micro_config, snakemake_command, write_config

    wf = workdir / "micro" / "wf"
    shutil.rmtree(wf, ignore_errors=True)
    wf.mkdir(parents=True)
    write_config(wf, micro_config())
    cmd, env = snakemake_command(wf, env={"SOPHIA_SYSTEM_METRICS_INTERVAL": "1"})  # as the session fixture
    check(subprocess.run(cmd, env=env, capture_output=True, text=True), "the micro DAG")
    return f"{len(list((wf / 'results' / 'benchmarks').rglob('*.tsv')))} jobs"


def real_width(workdir: Path) -> str:
    results = workdir / "micro" / "wf" / "results"
    if not (results / "models" / "base").is_dir():
        raise SystemExit(f"{results}: no micro DAG outputs; run --parts micro_dag first")
    out = workdir / "wide"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); from test_real_width import build; "
            "build(Path(sys.argv[2]), [Path(sys.argv[3]), Path(sys.argv[4])], Path(sys.argv[5]))")
    args = [str(TESTS), str(results / "models" / "base"), str(results / "data" / "alpaca"),
            str(results / "data" / "tiny"), str(out)]
    check(subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=job_env(), capture_output=True,
                         text=True), "the real-width build")
    return "GPTQ, LoRA step, merge, export"


def slurm(_: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_slurm.py", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=job_env(), capture_output=True, text=True)
    summary = check(proc, "tests/test_slurm.py")
    if "skipped" in summary:
        raise SystemExit(f"tests/test_slurm.py skipped tests ({summary}): the SLURM test cluster needs root")
    return summary.strip("= ")


def suite(_: Path) -> str:
    # the Makefile's own test line; its set-up and lint are not test time
    proc = subprocess.run(["make", "-o", "setup", "-o", "lint", "test"], cwd=ROOT, capture_output=True, text=True)
    return check(proc, "make test").strip("= ")


RUNNERS: dict[str, Callable[[Path], str]] = {"micro_dag": micro_dag, "real_width": real_width, "slurm": slurm,
                                             "suite": suite}


def summary(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fixed parts' core-seconds against the budget; with the suite, what the rest of it costs."""
    out: dict[str, Any] = {"budget_core_s": CORES * BUDGET_S}
    if all(p in parts for p in FIXED):
        fixed = sum(parts[p]["core_s"] for p in FIXED)
        out.update(fixed_core_s=round(fixed, 1), fixed_floor_wall_s=round(fixed / CORES, 1),
                   fixed_over_budget=fixed > CORES * BUDGET_S)
        if "suite" in parts:
            out["rest_core_s"] = round(parts["suite"]["core_s"] - fixed, 1)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [f"| part | wall | busy core-s | share of {CORES * BUDGET_S} core-s ({BUDGET_S // 60} min, {CORES} cores) "
             "| both cores busy | note |",
             "|---|---|---|---|---|---|"]
    budget = result["summary"]["budget_core_s"]
    for name, p in result["parts"].items():
        lines.append(f"| {name} | {p['wall_s']:.0f} s | {p['core_s']:.0f} | {p['core_s'] / budget:.0%} "
                     f"| {p['busy_share']:.0%} | {p['note']} |")
    s = result["summary"]
    if "fixed_core_s" in s:
        lines.append(f"| the three fixed parts | | {s['fixed_core_s']:.0f} | {s['fixed_core_s'] / budget:.0%} | | "
                     f"{s['fixed_floor_wall_s']:.0f} s of wall time on both cores at best |")
    if "rest_core_s" in s:
        lines.append(f"| the rest of the suite (suite minus the fixed parts) | | {s['rest_core_s']:.0f} | | | |")
    for name, p in result["parts"].items():
        for table, what in (("by_kind", "kind of process"), ("by_part", "part of the suite")):
            if table in p:
                seen = sum(k["core_s"] for k in p[table].values())
                title = f"{name}, by {what} ({seen:.0f} of its {p['core_s']:.0f} busy core-s seen in the samples):"
                lines += ["", title, "", f"| {what} | processes | core-s |", "|---|---|---|"]
                lines += [f"| {k} | {v['processes']:.0f} | {v['core_s']:.1f} |" for k, v in p[table].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--by-process", action="store_true",
                   help="also sample /proc every 0.3 s: each part's CPU by kind of process (stage, Snakemake, ...) "
                        "and by the study or test each process served")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sophia-suite-floor"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "suite_floor.json")
    args = p.parse_args()

    parts: dict[str, dict[str, Any]] = {}
    for name in PARTS:
        if name in args.parts:
            print(f"[{name}] running", flush=True)
            parts[name] = measured(lambda name=name: RUNNERS[name](args.workdir), args.by_process)
            print(f"[{name}] {json.dumps(parts[name])}", flush=True)
    result = {"parts": parts, "summary": summary(parts)}
    md = markdown(result)
    print(md)
    save(args.out, result, name="suite_floor", params={"parts": sorted(parts)}, markdown_body=md,
         metrics={f"{name}.{key}": p[key] for name, p in parts.items() for key in ("wall_s", "core_s")})


if __name__ == "__main__":
    main()
