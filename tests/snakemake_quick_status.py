"""`python -m snakemake` for the SLURM tests, with the executor plugin's status polling shortened.

snakemake-executor-plugin-slurm 1.4.0 waits 40 s before its first status check and again after
every check that saw a job finish, both hard-coded (it overrides --seconds-between-status-checks,
and never reads --slurm-init-seconds-before-status-checks). On a real cluster that spares slurmdbd;
on the one-node test cluster it was most of the run: a chain of six jobs, 40 s after each. Only the
waiting changes: sbatch, sacct, the job states and the rest of the plugin are what users run."""

from __future__ import annotations

import dataclasses
import sys

import snakemake_executor_plugin_slurm as slurm

SECONDS = 2


def _interval(self: object) -> int:
    return SECONDS


def _ignore(self: object, value: int) -> None:
    """The plugin assigns 40 after a finished job and adds 10 after one that finished nothing."""


# Snakemake's plugin registry reads these attributes when it loads the plugin (already imported here).
slurm.common_settings = dataclasses.replace(slurm.common_settings, init_seconds_before_status_checks=SECONDS)
slurm.Executor.next_seconds_between_status_checks = property(_interval, _ignore)

if __name__ == "__main__":
    from snakemake.cli import main

    sys.exit(main())
