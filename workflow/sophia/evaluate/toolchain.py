"""Compile and run a program of another language in the same sandbox as the Python programs.

Inside the sandbox a trusted launcher (a fresh `python -I`, like the Python harness) sets the
process, file and open-file limits, then runs the language's steps (`languages.Step`: compile,
run) one after the other, each in a session of its own under its own address-space and CPU
limits and wall clock. The program's text arrives read-only as `program.<ext>` in the run
directory; compilers write beside it, on the size-capped tmpfs. The pass signal is the same as
for Python: the launcher writes the one-time token to its report pipe only after the last step
exited 0. The token and the pipe are never passed to a step (Popen closes every other
descriptor), so a compiled program cannot reach them; one that kills the launcher just fails.

Outcomes follow MultiPL-E: a compile that fails is an `error` ("compile error", its
"SyntaxError"), a run with a non-zero exit a `failed` program (its "Exception": a failed assert
aborts, panics or exits 1), a step past its own wall clock a `timeout`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from sophia.evaluate import sandbox as sb
from sophia.evaluate.languages import Language

COMPILE_FAILED, RUN_FAILED, STEP_TIMEOUT, NOT_STARTED = 10, 11, 12, 13
MARK = "sophia-launcher:"  # the launcher's own stderr lines (a program could print one: reasons only)

_LAUNCHER = r"""
def _launch():
    import json, os, resource, signal, subprocess, sys
    fd, plan = int(sys.argv[1]), json.loads(sys.argv[2])
    for res, value in ((resource.RLIMIT_FSIZE, plan["fsize"]), (resource.RLIMIT_NOFILE, plan["nofile"]),
                       (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, plan["nproc"])):
        if value >= 0:
            resource.setrlimit(res, (value, value))
    held = os.dup(0)
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)
    codes = plan["codes"]
    for step in plan["steps"]:
        def limit(mem=step["memory"], cpu=int(step["timeout"]) + 1):
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        env = dict(os.environ, **step["env"])
        try:
            proc = subprocess.Popen(step["argv"], stdin=subprocess.DEVNULL, env=env, preexec_fn=limit,
                                    start_new_session=True)
        except OSError as exc:
            sys.stderr.write("\n%s %s could not start: %s\n" % (plan["mark"], step["name"], exc))
            sys.exit(codes["not_started"])
        try:
            rc = proc.wait(step["timeout"])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            sys.stderr.write("\n%s %s timed out after %g s\n" % (plan["mark"], step["name"], step["timeout"]))
            sys.exit(codes["timeout"])
        if rc != 0:
            sys.stderr.write("\n%s %s exited with status %d\n" % (plan["mark"], step["name"], rc))
            sys.exit(codes["compile"] if step["name"] == "compile" else codes["run"])
    os.write(fd, os.read(held, 64).strip())
_launch()
"""


def limits(lang: Language, box: sb.Limits) -> sb.Limits:
    """The program's own limits: the language's wall clock (the sum of its steps'), and at least the
    processes, file size and tmpfs room its toolchain needs; memory stays the sandbox's (the steps
    carry their own)."""
    return dataclasses.replace(box, timeout_s=lang.timeout_s, max_processes=max(box.max_processes, lang.max_processes),
                               file_size_mb=max(box.file_size_mb, lang.file_size_mb),
                               disk_mb=max(box.disk_mb, lang.disk_mb))


def plan(lang: Language, lim: sb.Limits, isolation: str) -> dict:
    """What the launcher runs: each step with its limits (bytes, seconds)."""
    steps = [{"name": s.name, "argv": list(s.argv), "timeout": s.timeout_s,
              "memory": (s.memory_mb or lim.memory_mb) << 20, "env": dict(s.env)} for s in lang.steps]
    # RLIMIT_NPROC counts per user namespace only under bwrap (see sandbox._command)
    return {"steps": steps, "fsize": lim.file_size_mb << 20, "nofile": lim.max_open_files,
            "nproc": lim.max_processes if isolation == "bwrap" else -1, "mark": MARK,
            "codes": {"compile": COMPILE_FAILED, "run": RUN_FAILED, "timeout": STEP_TIMEOUT,
                      "not_started": NOT_STARTED}}


def launch(lang: Language, box: sb.Sandbox) -> sb.Launch:
    lim = limits(lang, box.limits)
    return sb.Launch(code=_LAUNCHER, args=(json.dumps(plan(lang, lim, box.isolation)),), name=lang.source,
                     binds=lang.binds, outcome=outcome, limits=lim)


def outcome(rc: int | None, timed_out: bool, reported: bool, seconds: float, out: str, err: str,
            lim: sb.Limits) -> sb.Outcome:
    if timed_out:
        return sb.Outcome(sb.TIMEOUT, f"killed after {lim.timeout_s:g} s wall clock", rc, seconds, out, err)
    if rc == 0 and reported:
        return sb.Outcome(sb.PASSED, "", rc, seconds, out, err)
    said = _said(err)
    if rc == COMPILE_FAILED:
        return sb.Outcome(sb.ERROR, f"compile error: {_detail(err) or said}", rc, seconds, out, err)
    if rc == RUN_FAILED:
        return sb.Outcome(sb.FAILED, said + (f" ({_detail(err)})" if _detail(err) else ""), rc, seconds, out, err)
    if rc == STEP_TIMEOUT:
        return sb.Outcome(sb.TIMEOUT, said, rc, seconds, out, err)
    if rc == 0:
        return sb.Outcome(sb.ERROR, "exited with status 0 before the tests finished", rc, seconds, out, err)
    return sb.Outcome(sb.ERROR, said or f"launcher exit status {rc}", rc, seconds, out, err)


def _said(err: str) -> str:
    lines = [ln[len(MARK):].strip() for ln in err.splitlines() if ln.startswith(MARK)]
    return lines[-1] if lines else ""


def _detail(err: str) -> str:
    """The first diagnostic line a compiler or runtime printed (the error, not the context lines)."""
    for ln in err.splitlines():
        text = ln.strip()
        if text and not text.startswith(MARK) and ("error" in text.lower() or "assert" in text.lower()
                                                   or "panicked" in text or "Exception" in text):
            return text[:300]
    return ""


def describe(code: str, box: sb.Limits) -> dict:
    """The execution limits of one language's programs, as the protocol card and scores show them."""
    from sophia.evaluate.languages import language

    lang = language(code)
    lim = limits(lang, box)
    steps = [{"step": s.name, "command": " ".join(s.argv), "timeout_s": s.timeout_s,
              "memory_mb": s.memory_mb or lim.memory_mb} for s in lang.steps]
    return {**vars(lim), "language": lang.title, "steps": steps}


def run_many(lang: Language, box: sb.Sandbox, programs: Sequence[str], workers: int) -> list[sb.Outcome]:
    """Each program in its own sandbox, `workers` at a time, results in input order."""
    return box.run_many(programs, workers, launch=launch(lang, box))
