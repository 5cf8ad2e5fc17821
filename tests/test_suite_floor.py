"""benchmarks/suite_floor.py's arithmetic (its runs are on demand: about 17 minutes)."""

from __future__ import annotations

import os

from conftest import benchmark_script


def test_busy_time_counts_user_nice_system_irq_softirq_only() -> None:
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    first = " ".join(str(v * hz) for v in (100, 2, 30, 999, 50, 1, 4, 77, 0, 0))
    stat = f"cpu  {first}\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert benchmark_script("suite_floor").busy_seconds(stat) == 137.0


def test_summary_sets_the_fixed_parts_against_five_minutes_of_two_cores() -> None:
    sf = benchmark_script("suite_floor")
    part = {"wall_s": 1.0, "busy_share": 1.0, "note": ""}
    parts = {"micro_dag": {**part, "core_s": 300.0}, "real_width": {**part, "core_s": 130.0},
             "slurm": {**part, "core_s": 180.0}, "suite": {**part, "core_s": 1000.0}}
    s = sf.summary(parts)
    assert s == {"budget_core_s": 600, "fixed_core_s": 610.0, "fixed_floor_wall_s": 305.0, "fixed_over_budget": True,
                 "rest_core_s": 390.0}
    parts["slurm"]["core_s"] = 160.0
    assert not sf.summary(parts)["fixed_over_budget"]
    assert "rest_core_s" not in sf.summary({k: v for k, v in parts.items() if k != "suite"})
    assert "fixed_core_s" not in sf.summary({"suite": parts["suite"]})  # a part missing: no floor claimed
    md = sf.markdown({"parts": parts, "summary": s})
    assert "| the three fixed parts | | 610 | 102% |" in md and "| micro_dag | 1 s | 300 | 50% | 100% |" in md


def test_process_cpu_counts_what_each_process_used_while_sampled_by_kind() -> None:
    sf = benchmark_script("suite_floor")
    cpu = sf.ProcessCpu()
    worker = "/v/bin/python -u -c import sys;exec(eval(sys.stdin.readline()))"
    stage = "/v/bin/python -m sophia.finetune --spec '{\"snakemake\": 1}'"  # the stage, whatever its spec says
    cpu.add({(1, 10): (worker, 50.0), (2, 11): ("sshd", 7.0)}, first=True)  # alive before: only what follows
    cpu.add({(1, 10): (worker, 55.0), (2, 11): ("sshd", 7.0), (3, 20): (stage, 4.0)}, first=False)
    cpu.add({(1, 10): (worker, 61.5), (3, 20): (stage, 9.0), (4, 30): ("/v/bin/python -m snakemake -n", 2.0),
             (3, 99): ("node e2e.mjs", 1.0)}, first=False)  # pid 3 again, a new process: its own entry
    assert cpu.by_kind() == {"pytest (controller and workers)": {"processes": 1, "core_s": 11.5},
                             "stage processes (python -m sophia...)": {"processes": 1, "core_s": 9.0},
                             "Snakemake": {"processes": 1, "core_s": 2.0},
                             "browsers, Node, MLflow servers": {"processes": 1, "core_s": 1.0}}


def test_read_proc_sees_this_process() -> None:
    procs = benchmark_script("suite_floor").read_proc()
    (cmd, cpu), = [v for (pid, _), v in procs.items() if pid == os.getpid()]
    assert "python" in cmd and cpu > 0
