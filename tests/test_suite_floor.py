"""benchmarks/suite_floor.py's arithmetic and attribution (its runs are on demand: up to half an hour)."""

from __future__ import annotations

import os

from conftest import benchmark_script


def test_busy_time_counts_user_nice_system_irq_softirq_only() -> None:
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    first = " ".join(str(v * hz) for v in (100, 2, 30, 999, 50, 1, 4, 77, 0, 0))
    stat = f"cpu  {first}\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert benchmark_script("suite_floor").busy_seconds(stat) == 137.0


def test_summary_sets_the_fixed_parts_against_ten_minutes_of_two_cores() -> None:
    sf = benchmark_script("suite_floor")
    part = {"wall_s": 1.0, "busy_share": 1.0, "note": ""}
    parts = {"micro_dag": {**part, "core_s": 600.0}, "real_width": {**part, "core_s": 260.0},
             "slurm": {**part, "core_s": 360.0}, "suite": {**part, "core_s": 2000.0}}
    s = sf.summary(parts)
    assert s == {"budget_core_s": 1200, "fixed_core_s": 1220.0, "fixed_floor_wall_s": 610.0,
                 "fixed_over_budget": True, "rest_core_s": 780.0}
    parts["slurm"]["core_s"] = 320.0
    assert not sf.summary(parts)["fixed_over_budget"]
    assert "rest_core_s" not in sf.summary({k: v for k, v in parts.items() if k != "suite"})
    assert "fixed_core_s" not in sf.summary({"suite": parts["suite"]})  # a part missing: no floor claimed
    md = sf.markdown({"parts": parts, "summary": s})
    assert "share of 1200 core-s (10 min, 2 cores)" in md
    assert "| the three fixed parts | | 1220 | 102% |" in md and "| micro_dag | 1 s | 600 | 50% | 100% |" in md


def test_process_cpu_counts_what_each_process_used_while_sampled_by_kind() -> None:
    sf = benchmark_script("suite_floor")
    cpu = sf.ProcessCpu()
    worker = "/v/bin/python -u -c import sys;exec(eval(sys.stdin.readline()))"
    stage = "/v/bin/python -m sophia.finetune --spec '{\"snakemake\": 1}'"  # the stage, whatever its spec says
    P = sf.Proc
    cpu.add({(1, 10): P(worker, 50.0), (2, 11): P("sshd", 7.0)}, first=True)  # alive before: only what follows
    cpu.add({(1, 10): P(worker, 55.0), (2, 11): P("sshd", 7.0), (3, 20): P(stage, 4.0)}, first=False)
    cpu.add({(1, 10): P(worker, 61.5), (3, 20): P(stage, 9.0), (4, 30): P("/v/bin/python -m snakemake -n", 2.0),
             (3, 99): P("node e2e.mjs", 1.0)}, first=False)  # pid 3 again, a new process: its own entry
    assert cpu.by_kind() == {"pytest (controller and workers)": {"processes": 1, "core_s": 11.5},
                             "stage processes (python -m sophia...)": {"processes": 1, "core_s": 9.0},
                             "Snakemake": {"processes": 1, "core_s": 2.0},
                             "browsers, Node, MLflow servers": {"processes": 1, "core_s": 1.0}}


def test_process_cpu_by_part_follows_each_process_up_to_the_study_it_serves() -> None:
    sf = benchmark_script("suite_floor")
    P, cpu = sf.Proc, sf.ProcessCpu()
    worker = "/v/bin/python -u -c import sys;exec(eval(sys.stdin.readline()))"
    tmp = "/tmp/pytest-of-u/pytest-3"
    cpu.add({
        (1, 5): P(worker, 30.0, ppid=0, cwd="/src"),  # the tests it runs in-process
        (7, 6): P(f"/v/bin/snakemake -s Snakefile --directory {tmp}/family-llama/wf", 3.0, ppid=1, cwd="/src"),
        (8, 7): P("/bin/bash -c set -euo pipefail; python -m sophia.finetune", 4.0, ppid=7, cwd="/src"),
        (9, 8): P("/v/bin/python -m sophia.finetune --spec {}", 6.0, ppid=8, cwd="/src"),  # via its shell
        (10, 9): P("/v/bin/python -m sophia.evaluate_job", 5.0, ppid=1, cwd=f"{tmp}/micro/wf"),
        (11, 9): P("slurmctld -D", 1.5, ppid=1, cwd="/"),
        (12, 9): P(".venv/bin/python benchmarks/likelihoods.py", 2.5, ppid=1, cwd=f"{tmp}/popen-gw0/checkout0"),
        (13, 9): P("/v/bin/python -m sophia.export.litert --work x", 3.5, ppid=1, cwd=f"{tmp}/popen-gw1/wide0"),
        (14, 9): P("bwrap --unshare-all python3 prog.py", 0.5, ppid=10, cwd="/"),  # the micro study's sandbox
        (15, 9): P("chromium --headless", 2.0, ppid=1, cwd=f"{tmp}/popen-gw0/test_app_runs0"),
        (8, 40): P("/v/bin/python -m sophia.data", 1.0, ppid=99, cwd="/src"),  # pid 8 reused, parent gone
        (20, 2): P(f"/v/bin/snakemake --directory {tmp}/family-qwen2/wf", 1.0, ppid=1, cwd="/src"),
        (20, 50): P(f"/v/bin/snakemake --directory {tmp}/family-llama/wf", 2.0, ppid=1, cwd="/src"),
        (21, 60): P("/v/bin/python -m sophia.gguf", 4.0, ppid=20, cwd="/src"),  # the pid 20 it started from
    }, first=False)
    assert cpu.by_part() == {
        "the other tests (the pytest workers and what they start)": {"processes": 2, "core_s": 32.0},
        "the Llama study": {"processes": 5, "core_s": 19.0},
        "the micro study and the runs in its folder": {"processes": 2, "core_s": 5.5},
        "the real-width build's export": {"processes": 1, "core_s": 3.5},
        "README and docs commands (test_readme)": {"processes": 1, "core_s": 2.5},
        "the SLURM study and its cluster": {"processes": 1, "core_s": 1.5},
        "the Qwen2 study": {"processes": 1, "core_s": 1.0},
        "other processes": {"processes": 1, "core_s": 1.0}}


def test_read_proc_sees_this_process() -> None:
    procs = benchmark_script("suite_floor").read_proc()
    (proc,) = [v for (pid, _), v in procs.items() if pid == os.getpid()]
    assert "python" in proc.cmd and proc.cpu > 0 and proc.ppid == os.getppid() and proc.cwd == os.getcwd()


def test_process_cpu_keeps_the_command_a_shell_execs() -> None:
    sf = benchmark_script("suite_floor")
    cpu = sf.ProcessCpu()
    cpu.add({(5, 1): sf.Proc('/bin/sh -c exec "$PY" -m sophia.data > log', 0.5)}, first=False)
    cpu.add({(5, 1): sf.Proc("/v/bin/python -m sophia.data --spec {}", 4.0)}, first=False)  # same process, exec'd
    cpu.add({(5, 1): sf.Proc("", 4.5)}, first=False)  # a zombie's empty command line changes nothing
    assert cpu.by_kind() == {"stage processes (python -m sophia...)": {"processes": 1, "core_s": 4.5}}
