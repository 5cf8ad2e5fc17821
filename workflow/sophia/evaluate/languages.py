"""The curriculum's languages as MultiPL-E builds and runs them: per language the Debian toolchain,
MultiPL-E's own compiler and interpreter command lines, and the limits of each step.

Command lines follow MultiPL-E's evaluation scripts (`eval_cpp.py`, `eval_java.py`, `eval_rust.py`,
`eval_ruby.py`, `eval_sh.py`): `g++ -std=c++17`, `javac -encoding UTF8` with javatuples on the
class path then `java -ea Problem`, `rustc` with no flags (edition 2015, as there), `ruby` and
`bash` on the file. A program passes when its last step exits 0 (MultiPL-E's "OK"); a failed
compile is its "SyntaxError", any other exit status its "Exception". Wall-clock limits per step
are MultiPL-E's: 15 s (its `safe_subprocess` default) for compiles and for C++, Java and Bash
runs, 5 s for Rust and Ruby runs (their scripts' own).

Address-space limits per step keep a margin over what the snapshot's programs need (found by
lowering RLIMIT_AS until they no longer compiled: g++ with `bits/stdc++.h` fails at 200 MiB and
works at 400, rustc with its linker fails at 400 and works at 600). The JVM reserves
its heap, code cache and class space up front (a 32 GiB heap on a 128 GiB host), so an
address-space limit kills it at start; instead of lifting the limit, `JVM` fixes those
reservations (heap 512 MiB, code cache and class space 64 MiB, serial GC, C1 only: also a faster
start) so that javac and java fit in 1.5 GiB like any other program would have to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sophia.errors import ConfigError

JAVATUPLES = "/usr/share/java/javatuples.jar"  # MultiPL-E's Java prompts import org.javatuples.*
JVM = ("-Xmx512m", "-Xss8m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=64m",
       "-XX:CompressedClassSpaceSize=64m", "-XX:MaxMetaspaceSize=256m")
SOURCE = "program"  # the file's stem in the run directory; compiled output is `program` beside it


@dataclass(frozen=True)
class Step:
    name: str  # "compile" or "run"
    argv: tuple[str, ...]
    timeout_s: float
    memory_mb: int | None = None  # None: the sandbox's memory_mb (evaluate.sandbox)
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Language:
    code: str  # MultiPL-E's language code (humaneval-<code>)
    title: str
    extension: str
    steps: tuple[Step, ...]
    tools: dict[str, str]  # executable the steps need -> the Debian package that installs it
    version: tuple[str, ...]  # what prints the toolchain's version (protocol card, cache key)
    max_processes: int = 32  # the JVM alone starts 14 threads
    file_size_mb: int = 16  # rustc's debug binaries are about 12 MiB
    disk_mb: int = 8  # least room on the tmpfs for the compiler's output (rustc: its temporaries and binary)
    binds: tuple[str, ...] = field(default=())  # host paths beyond /usr the toolchain reads

    @property
    def source(self) -> str:
        return f"{SOURCE}.{self.extension}"

    @property
    def timeout_s(self) -> float:
        """The whole program's wall clock: its steps' limits plus the interpreter's start."""
        return sum(s.timeout_s for s in self.steps) + 2.0


def _java_binds() -> tuple[str, ...]:
    """Debian's JDK keeps its configuration (jvm.cfg, security) as links into /etc; the links of
    /usr/bin/java and javac go through /etc/alternatives. Only those directories, read-only."""
    return ("/etc/alternatives", *_etc_targets(Path(os.path.realpath("/usr/bin/java")).parents[1]))


def _etc_targets(home: Path) -> tuple[str, ...]:
    found: set[str] = set()
    if home.is_dir():
        for path in home.rglob("*"):
            if path.is_symlink():
                target = os.path.realpath(path)
                if target.startswith("/etc/"):
                    found.add("/".join(target.split("/")[:3]))
    return tuple(sorted(found))


LANGUAGES: dict[str, Language] = {lang.code: lang for lang in (
    Language("cpp", "C++", "cpp", (
        Step("compile", ("g++", "program.cpp", "-o", "program", "-std=c++17"), 15.0, 1024),
        Step("run", ("./program",), 15.0)),
        {"/usr/bin/g++": "g++"}, ("g++", "--version")),
    Language("java", "Java", "java", (
        Step("compile", ("javac", *(f"-J{o}" for o in JVM), "-encoding", "UTF8", "-d", ".", "program.java"),
             15.0, 1536, (("CLASSPATH", JAVATUPLES),)),
        Step("run", ("java", *JVM, "-ea", "-cp", f".:{JAVATUPLES}", "Problem"), 15.0, 1536,
             (("CLASSPATH", JAVATUPLES),))),
        {"/usr/bin/javac": "default-jdk-headless", "/usr/bin/java": "default-jdk-headless",
         JAVATUPLES: "libjavatuples-java"}, ("javac", "-version"), max_processes=64),
    Language("rs", "Rust", "rs", (
        Step("compile", ("rustc", "program.rs", "-o", "program"), 15.0, 2048),
        Step("run", ("./program",), 5.0)),
        {"/usr/bin/rustc": "rustc", "/usr/bin/cc": "gcc"}, ("rustc", "--version"),
        file_size_mb=32, disk_mb=48, binds=("/etc/alternatives",)),
    Language("rb", "Ruby", "rb", (Step("run", ("ruby", "program.rb"), 5.0),),
             {"/usr/bin/ruby": "ruby"}, ("ruby", "--version")),
    Language("sh", "Bash", "sh", (Step("run", ("bash", "program.sh"), 15.0),),
             {"/usr/bin/bash": "bash"}, ("bash", "--version")),
)}


def language(code: str) -> Language:
    """The language with its binds resolved on this machine (the JDK's /etc links)."""
    lang = LANGUAGES[code]
    if code == "java":
        return Language(**{**lang.__dict__, "binds": _java_binds()})
    return lang


def missing(lang: Language) -> dict[str, str]:
    """Executables (and the javatuples jar) of `lang` absent here -> the Debian package to install."""
    return {path: pkg for path, pkg in lang.tools.items() if not os.access(path, os.R_OK)}


def check_installed(codes: list[str], where: str) -> None:
    """A clear error naming the packages, before any generation is spent."""
    absent = {path: pkg for code in codes for path, pkg in missing(LANGUAGES[code]).items()}
    if absent:
        pkgs = " ".join(sorted(set(absent.values())))
        raise ConfigError(f"{where}: {', '.join(sorted(absent))} missing: install Debian's toolchains "
                          f"(`make system-run` as root, or apt-get install {pkgs})")


def version(lang: Language) -> str | None:
    """First line of the toolchain's version (Debian's, from /usr/bin, never a user's ~/.cargo)."""
    exe = shutil.which(lang.version[0], path="/usr/bin:/bin")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, *lang.version[1:]], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (res.stdout or res.stderr).strip()
    return text.splitlines()[0] if text else None
