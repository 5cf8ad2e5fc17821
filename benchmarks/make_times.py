"""What the README's commands cost from a fresh clone: the wall time of each make target, run one
after another in a new clone of this checkout's commit, so each set-up step builds only what the
previous ones did not.

    .venv/bin/python benchmarks/make_times.py                       # every step, in order
    .venv/bin/python benchmarks/make_times.py --steps setup-check check
    .venv/bin/python benchmarks/make_times.py --cold                # also empty pip and wheel caches

Steps: setup-check (what `make check` builds: .venv), check (the fast tier), setup-run (what
`make run` adds), setup (what `make test` adds), test (the whole suite). The clone has no
environments; pip's download cache and the llama-cpp-python wheel cache are the user's, warm unless
--cold gives the clone empty ones (then every package is downloaded again and llama.cpp compiles).
Debian packages already installed stay installed: the record lists which were missing before.
Writes benchmarks/results/make_times.{json,md} and logs an MLflow run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import ROOT, save

STEPS = ("setup-check", "check", "setup-run", "setup", "test")
COMMANDS = ("bwrap", "dot", "chromium", "slurmctld", "sbatch", "munged", "slurmdbd", "mariadbd")


def missing_commands() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [c for c in COMMANDS if shutil.which(c, path=path) is None]


def tests_summary(output: str) -> str | None:
    """pytest's closing line ('N passed, M deselected in S s'), if the step ran tests."""
    lines = [x.strip("= ") for x in output.splitlines() if re.search(r"\d+ (passed|failed)", x)]
    return lines[-1] if lines else None


def run_step(clone: Path, step: str, env: dict[str, str], log: Path) -> dict[str, object]:
    start = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run(["make", step], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
    return {"step": step, "seconds": round(seconds, 1), "rc": rc, "tests": tests_summary(log.read_text())}


def table(rows: list[dict[str, object]]) -> str:
    body = "| step | wall time | exit | tests |\n|---|---|---|---|\n"
    for r in rows:
        minutes, seconds = divmod(round(float(r["seconds"])), 60)  # type: ignore[arg-type]
        body += f"| make {r['step']} | {minutes} min {seconds} s | {r['rc']} | {r['tests'] or ''} |\n"
    return body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--cold", action="store_true", help="empty pip and wheel caches for the clone")
    p.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "make_times.json")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sophia-make-times-"))
    clone = work / "sophia"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and not k.startswith(("MLFLOW_", "PYTEST"))}
    if args.cold:
        env["PIP_CACHE_DIR"] = str(work / "pip-cache")
        env["SOPHIA_CACHE"] = str(work / "sophia-cache")
    missing = missing_commands()
    rows = []
    try:
        for step in args.steps:
            row = run_step(clone, step, env, work / f"{step}.log")
            rows.append(row)
            print(f"make {step}: {row['seconds']} s, exit {row['rc']} {row['tests'] or ''}", flush=True)
            if row["rc"] != 0:
                print((work / f"{step}.log").read_text()[-3000:], file=sys.stderr)
                break
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"clone kept in {clone}")
    result = {"steps": rows, "cold_caches": args.cold, "commands_missing_before": missing,
              "note": "each step in the same clone, after the ones before it"}
    save(args.out, result, name="make_times", params={"steps": " ".join(args.steps), "cold": args.cold},
         metrics={f"{r['step']}_s": float(r["seconds"]) for r in rows},  # type: ignore[arg-type]
         markdown_body=table(rows) + f"\nDebian commands missing before the run: {', '.join(missing) or 'none'}; "
                                     f"caches {'emptied (--cold)' if args.cold else 'warm'}.\n")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
