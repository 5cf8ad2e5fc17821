"""The bubblewrap command line that confines one generated program (docs/sandbox.md).

What the program sees is built up from nothing, not hidden from a copy of the host: read-only
`/usr` (with the merged-/usr `/bin`, `/lib*` links), the interpreter's prefixes, four files of
`/etc` that the dynamic loader and `time` read, a private `/proc` and `/dev`. The only writable
places are two size-capped tmpfs mounts, `/tmp` (holding the run directory) and `/dev/shm`; the
rest of the tree, `/dev` included, is remounted read-only so nothing else can take host RAM. No
home, `/run`, `/var`, `/srv`, `/mnt`, checkout or `results/` exists in there, so neither their
files nor a pathname socket in them can be reached.

Processes are bounded through a user namespace: on Linux >= 5.14 RLIMIT_NPROC counts the tasks of
one uid *within one user namespace* (ucounts), so each sandbox gets its own budget and the user's
other processes do not count. The kernel ignores the limit for processes whose real uid is host
root, so a root evaluator runs the program as `nobody`: it starts bwrap as `nobody` when `nobody`
can reach the interpreter, else (an interpreter under root's home) the mounts are made by a
privileged bwrap and a second, unprivileged one only adds the user namespace. `--disable-userns` stops
the program from making one of its own (where it could mount a tmpfs without a size cap).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

NOBODY = 65534
RUNDIR = "/tmp/sandbox"
PROGRAM = "program.py"
ENV = {"PATH": "/usr/bin:/bin", "HOME": RUNDIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
# What the dynamic loader and `time.localtime` read; nothing that names users, hosts or services.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime")
TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_NS = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
_USERNS = ["--unshare-user", "--disable-userns"]
_DROP = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def bwrap_exe() -> str | None:
    return shutil.which("bwrap")


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, cwd="/").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def bwrap_works() -> bool:
    """bubblewrap exists *and* can create the namespaces it is given here (not a given in
    containers). An unprivileged caller needs a user namespace for any of them."""
    exe = bwrap_exe()
    if not exe:
        return False
    userns = _USERNS if os.geteuid() != 0 else []
    return _probe([exe, *userns, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--", "true"])


@functools.cache
def unprivileged_userns() -> bool:
    """Whether `nobody` may create a user namespace (off where kernel.unprivileged_userns_clone=0,
    user.max_user_namespaces=0 or AppArmor restricts it). Only asked when running as root."""
    exe = bwrap_exe()
    return bool(exe) and _probe([*_DROP, exe, *_USERNS, "--ro-bind", "/", "/", "--", "true"])


def visible_to_nobody(paths: list[str]) -> bool:
    """Whether every path and its target can be reached by others (each directory on the way
    searchable), so bwrap started as `nobody` can bind them."""
    for path in paths:
        for p in {Path(path), Path(os.path.realpath(path))}:
            for d in (p, *p.parents):
                try:
                    if not d.stat().st_mode & 0o001:
                        return False
                except OSError:
                    return False
    return True


def interpreter_paths() -> list[str]:
    """The interpreter's prefixes (a venv and the Python it was made from), minus what /usr has."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    keep = sorted(p for p in paths if p and p != "/" and os.path.isdir(p))
    return [p for p in keep if not Path(p).is_relative_to("/usr")
            and not any(q != p and Path(p).is_relative_to(q) for q in keep)]


def _tree() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in TOP_LEVEL:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def command(python: list[str], program_fd: int, disk_mb: int, as_root: bool, userns: bool,
            direct: bool = False, name: str = PROGRAM, binds: Sequence[str] = ()) -> list[str]:
    """bwrap argv running `python` in `RUNDIR`, with the program copied from `program_fd` (a memfd:
    nothing lands on the host disk) to `name`. `as_root`: drop to `nobody`, in a user namespace if
    `userns`, before bwrap if `direct` (`nobody` can reach the interpreter), else inside it.
    `binds`: host paths a toolchain reads beyond /usr (the JDK's /etc links), read-only."""
    size = str(disk_mb << 20)
    unprivileged = not as_root or (userns and direct)
    # Parents first, searchable: bwrap would make a missing /etc root-only before a bind below it.
    parents = sorted({str(p) for path in binds for p in Path(path).parents if str(p) != "/"})
    cmd = [bwrap_exe() or "bwrap", *(_USERNS if unprivileged else []), *_NS,
           *(arg for d in parents for arg in ("--perms", "0755", "--dir", d)), *_tree(),
           *(arg for path in binds for arg in ("--ro-bind-try", path, path)),
           "--dev", "/dev", "--proc", "/proc",
           "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
           "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    # After the /tmp mount, so an interpreter installed under /tmp (a CI checkout) stays visible.
    made = {"/", "/tmp", "/dev", "/usr"}
    for path in interpreter_paths():
        # bwrap would make the missing parents 0700 (root-only), hiding the interpreter from `nobody`.
        for parent in reversed(Path(path).parents):
            if str(parent) not in made:
                made.add(str(parent))
                cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", path, path]
    cmd += ["--perms", "0777", "--dir", RUNDIR,
            "--perms", "0444", "--file", str(program_fd), f"{RUNDIR}/{name}",
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", RUNDIR,
            "--die-with-parent", "--new-session", "--clearenv"]
    for key, value in ENV.items():
        cmd += ["--setenv", key, value]
    if not as_root:
        return [*cmd, "--", *python]
    if unprivileged:
        return [*_DROP, *cmd, "--", *python]
    if not userns:  # RLIMIT_NPROC then counts every `nobody` process on the host
        return [*cmd, "--", *_DROP, *python]
    # Its own PID namespace too, so the program's parent is an init it cannot kill, not a `nobody`
    # process of the outer namespace that it could.
    inner = [bwrap_exe() or "bwrap", *_USERNS, "--unshare-pid", "--dev-bind", "/", "/", "--chdir", RUNDIR,
             "--die-with-parent"]
    return [*cmd, "--", *_DROP, *inner, "--", *python]
