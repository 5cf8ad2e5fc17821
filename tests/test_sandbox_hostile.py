"""Attacks by generated programs, as root and as an unprivileged user: none may read, reach or exhaust
the host.

The root half runs the sandbox in this process. The non-root half runs it in a child evaluator
under a free uid (no passwd entry, so no system change), with a home and working directory of
its own, all its programs in one batch, and checks that no process of that uid is left.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sophia.evaluate.sandbox import ERROR, PASSED, Limits, Sandbox

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout_s=6, memory_mb=512, file_size_mb=4, max_processes=16, disk_mb=8)
SECRET = "sophia-secret-8e1f"
SANDBOX_FILES = ("__init__.py", "errors.py", "evaluate/__init__.py", "evaluate/sandbox.py", "evaluate/confine.py")
# The child evaluator: programs in (JSON on stdin), outcomes out.
RUNNER = """
import json, sys
from sophia.evaluate.sandbox import Limits, Sandbox
jobs = json.load(sys.stdin)
box = Sandbox(Limits(**jobs["limits"]), "bwrap")
print(json.dumps({"direct": box.direct, "outcomes": [box.run(p).to_dict() for p in jobs["programs"]]}))
"""


def read_secrets(paths: list[str]) -> str:
    return (f"import sys\nfor p in {paths!r}:\n    try:\n        print(open(p).read())\n"
            "    except OSError as e:\n        print(type(e).__name__, p)\nsys.exit(3)\n")


def connect(path: str, abstract: str, port: int) -> str:
    return ("import socket, sys\n"
            f"for family, addr in ((socket.AF_UNIX, {path!r}), (socket.AF_UNIX, {abstract!r}), "
            f"(socket.AF_INET, ('127.0.0.1', {port}))):\n"
            "    s = socket.socket(family)\n    s.settimeout(1)\n    try:\n        s.connect(addr)\n"
            "        s.sendall(b'stolen')\n        print('CONNECTED', addr)\n"
            "    except OSError as e:\n        print(type(e).__name__, addr)\nsys.exit(3)\n")


def fill(directory: str) -> str:
    """Files below the per-file limit until the disk says no; how many MiB made it."""
    return ("import os\nn = 0\ntry:\n    while True:\n"
            f"        with open(os.path.join({directory!r}, f'f{{n}}'), 'wb') as fh:\n"
            "            fh.write(b'x' * (1 << 20))\n        n += 1\nfinally:\n    print('MiB', n)\n")


FORK_BOMB = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
finally:
    print('children', n)
"""
THREAD_BOMB = """
import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        n += 1
finally:
    print('threads', n)
"""
# Fails if RLIMIT_NPROC counted the user's processes outside the sandbox (the test starts more).
FORKS_FINE = """
import os
pids = [os.fork() or os._exit(0) for _ in range(4)]
assert all(os.waitpid(p, 0)[1] == 0 for p in pids)
"""


class Host:
    """What the test plants on the host: secret files, a socket on every route, a home to hide."""

    def __init__(self, base: Path, home: Path, cwd: Path) -> None:
        self.secrets = [d / f".sophia-sbx-secret-{os.getpid()}" for d in (home, cwd)]
        for path in self.secrets:
            path.write_text(SECRET)
        self.sock_path = str(base / "host.sock")
        self.servers = []
        for family, addr in ((socket.AF_UNIX, self.sock_path), (socket.AF_UNIX, f"\0sophia-sbx-{os.getpid()}"),
                             (socket.AF_INET, ("127.0.0.1", 0))):
            srv = socket.socket(family)
            srv.bind(addr)
            srv.listen()
            srv.setblocking(False)
            self.servers.append(srv)
        os.chmod(self.sock_path, 0o777)  # world-writable: anyone on the host may connect
        self.port = self.servers[2].getsockname()[1]

    def programs(self) -> dict[str, str]:
        return {"read": read_secrets([str(p) for p in self.secrets]),
                "connect": connect(self.sock_path, f"\0sophia-sbx-{os.getpid()}", self.port),
                "fill rundir": fill("."), "fill tmp": fill("/tmp"), "fill shm": fill("/dev/shm"),
                "write elsewhere": "open('/escape', 'w')\n",
                "fork bomb": FORK_BOMB, "thread bomb": THREAD_BOMB, "forks fine": FORKS_FINE}

    def nothing_connected(self) -> bool:
        for srv in self.servers:
            try:
                srv.accept()
                return False
            except BlockingIOError:
                pass
        return True

    def close(self) -> None:
        for srv in self.servers:
            srv.close()
        for path in self.secrets:
            path.unlink(missing_ok=True)


def check(outcomes: dict[str, dict[str, Any]], host: Host) -> None:
    """Every attack refused, each in the way that proves it was the sandbox."""
    read = outcomes["read"]
    assert SECRET not in read["stdout"] and read["stdout"].count("FileNotFoundError") == 2, read
    conn = outcomes["connect"]["stdout"]
    assert "CONNECTED" not in conn and "FileNotFoundError" in conn, conn
    assert host.nothing_connected()
    for name in ("fill rundir", "fill tmp", "fill shm"):
        o = outcomes[name]
        assert o["status"] == ERROR and "No space left on device" in o["reason"], (name, o)
        assert int(o["stdout"].split()[-1]) <= LIMITS.disk_mb, (name, o)
    assert "Read-only file system" in outcomes["write elsewhere"]["reason"], outcomes["write elsewhere"]
    for name in ("fork bomb", "thread bomb"):
        o = outcomes[name]
        count = int(o["stdout"].split()[-1])
        # Stopped by the process limit (EAGAIN), well before the wall clock would have.
        assert o["status"] == ERROR and 0 < count < LIMITS.max_processes, (name, o)
        assert o["seconds"] < LIMITS.timeout_s / 2, (name, o)
    assert outcomes["forks fine"]["status"] == PASSED, outcomes["forks fine"]


@pytest.fixture()
def base() -> Iterator[Path]:
    """A directory on the host disk (not under /tmp, which any sandbox hides), readable by all."""
    path = Path("/var/tmp") / f"sophia-sbx-{os.getpid()}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_child(prefix: list[str], python: str, base: Path, home: Path, cwd: Path,
              programs: dict[str, str]) -> tuple[dict[str, dict[str, Any]], bool]:
    """The programs through an evaluator of their own: outcomes by name, and whether bwrap was
    started as `nobody` directly."""
    pkg = base / "lib" / "sophia"
    for name in SANDBOX_FILES:
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "workflow" / "sophia" / name, pkg / name)
    jobs = json.dumps({"limits": vars(LIMITS), "programs": list(programs.values())})
    res = subprocess.run([*prefix, python, "-c", RUNNER], input=jobs, capture_output=True, text=True, cwd=cwd,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(base / "lib")},
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    return dict(zip(programs, out["outcomes"], strict=True)), out["direct"]


# This interpreter (here under root's home: a privileged bwrap, then one as nobody), and the
# system's (reachable by nobody: one bwrap started as nobody).
@pytest.mark.parametrize("python", ["this interpreter", "/usr/bin/python3"])
def test_attacks_fail_as_root(base: Path, python: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root half needs root (the non-root half runs as this user)")
    if python != "this interpreter" and not Path(python).exists():
        pytest.skip(f"no {python} here")
    host = Host(base, Path.home(), Path.cwd())
    try:
        if python == "this interpreter":
            box = Sandbox(LIMITS, "bwrap")
            assert box.userns, "as root the program must run as nobody in its own user namespace"
            outcomes = {name: box.run(p).to_dict() for name, p in host.programs().items()}
        else:
            outcomes, direct = run_child([], python, base, Path.home(), ROOT, host.programs())
            assert direct
        check(outcomes, host)
    finally:
        host.close()


@pytest.fixture()
def user() -> Iterator[tuple[list[str], int]]:
    """The command prefix that runs as a fresh unprivileged uid (or as this user when not root)."""
    if os.geteuid() != 0:
        yield [], os.geteuid()
        return
    uid = next(u for u in range(61000, 62000) if not _has_passwd(u) and not _processes(u))
    yield ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"], uid
    for pid in _processes(uid):  # only after a failure: the uid was unused before the test
        os.kill(int(pid), 9)


def test_attacks_fail_as_a_normal_user(user: tuple[list[str], int], base: Path) -> None:
    prefix, uid = user
    bwrap = shutil.which("bwrap") or "bwrap"
    probe = subprocess.run([*prefix, bwrap, "--unshare-user", "--ro-bind", "/", "/", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged user namespaces are disabled here (kernel.unprivileged_userns_clone, "
                    f"user.max_user_namespaces or AppArmor), so bwrap cannot run as uid {uid}: {probe.stderr!r}")
    home, cwd = base / "home", base / "work"
    for d in (home, cwd):
        d.mkdir(mode=0o700)
        os.chown(d, uid, uid)
    python = _python_for(prefix)
    # More processes of this uid outside the sandbox than its limit: per-namespace counting ignores them.
    sleepers = [subprocess.Popen([*prefix, "sleep", "60"]) for _ in range(LIMITS.max_processes + 4)]
    host = Host(base, home, cwd)
    try:
        check(run_child(prefix, python, base, home, cwd, host.programs())[0], host)
    finally:
        host.close()
        for p in sleepers:
            p.kill()
            p.wait()
    if prefix:  # nothing of the test user survives its sandboxes
        deadline = time.monotonic() + 2
        while _processes(uid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes(uid) == []


def _has_passwd(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _processes(uid: int) -> list[str]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue
        real = next((ln.split()[1] for ln in lines if ln.startswith("Uid:")), None)
        if real == str(uid):
            found.append(status.parent.name)
    return found


def _python_for(prefix: list[str]) -> str:
    """An interpreter that uid can run: the system's, else this one (which may live in root's home)."""
    for python in ("/usr/bin/python3", sys.executable):
        if subprocess.run([*prefix, python, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                          capture_output=True, cwd="/").returncode == 0:
            return python
    pytest.fail(f"no Python >= 3.10 that the test user can run ({sys.executable}, /usr/bin/python3)")
