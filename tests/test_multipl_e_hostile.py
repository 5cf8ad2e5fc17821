"""Attacks in each MultiPL-E language, contained as the Python ones are (tests/test_sandbox_hostile.py):
one program per language reads a planted secret, writes outside its tmpfs, connects to the host's
TCP and pathname sockets, fills its disk and starts processes until refused, printing what each
attempt got; compilers run in the same sandbox. Run as root, the programs run as `nobody` in
their own user namespace."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sophia.evaluate import languages, sandbox, toolchain
from sophia.evaluate.benchmarks import MULTIPL_E_LANGUAGES
from sophia.evaluate.sandbox import PASSED, Limits, Sandbox
from test_sandbox_hostile import ROOT, SANDBOX_FILES, SECRET, Host, _python_for, base, user  # noqa: F401 (fixtures)

LIMITS = Limits(timeout_s=6, memory_mb=512, file_size_mb=4, max_processes=16, disk_mb=8)
# How long an attack may run: bash and Ruby retry a refused fork for seconds before they give up.
STEP_S = 4.0


def attacks(code: str, secret: str, sock: str, port: int) -> str:
    """A program that prints `secret`, `write`, `tcp`, `unix`, `MiB <n>` and `procs <n>` lines."""
    if code == "cpp":
        return f"""#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main() {{
    std::printf("secret %s\\n", open("{secret}", O_RDONLY) >= 0 ? "FOUND" : strerror(errno));
    std::printf("write %s\\n", open("/escape", O_WRONLY | O_CREAT, 0644) >= 0 ? "WRITTEN" : strerror(errno));
    int t = socket(AF_INET, SOCK_STREAM, 0); sockaddr_in a{{}}; a.sin_family = AF_INET;
    a.sin_port = htons({port}); inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    std::printf("tcp %s\\n", connect(t, (sockaddr*)&a, sizeof a) == 0 ? "CONNECTED" : strerror(errno));
    int u = socket(AF_UNIX, SOCK_STREAM, 0); sockaddr_un p{{}}; p.sun_family = AF_UNIX;
    std::strcpy(p.sun_path, "{sock}");
    std::printf("unix %s\\n", connect(u, (sockaddr*)&p, sizeof p) == 0 ? "CONNECTED" : strerror(errno));
    static char mib[1 << 20]; int n = 0;
    for (;; n++) {{ char name[64]; std::snprintf(name, 64, "/tmp/f%d", n);
        FILE* f = std::fopen(name, "wb"); if (!f) break;
        size_t w = std::fwrite(mib, 1, sizeof mib, f); if (std::fclose(f) != 0 || w != sizeof mib) break; }}
    std::printf("MiB %d\\n", n); std::fflush(stdout);
    int k = 0; for (; k < 1000; k++) {{ pid_t c = fork(); if (c < 0) break; if (c == 0) {{ sleep(60); _exit(0); }} }}
    std::printf("procs %d\\n", k); return 3;
}}
"""
    if code == "java":
        return f"""import java.io.*;
import java.net.*;
import java.nio.channels.*;
class Problem {{
    public static void main(String[] args) throws Exception {{
        try {{ new FileInputStream("{secret}"); System.out.println("secret FOUND"); }}
        catch (IOException e) {{ System.out.println("secret " + e); }}
        try {{ new FileOutputStream("/escape"); System.out.println("write WRITTEN"); }}
        catch (IOException e) {{ System.out.println("write " + e); }}
        try {{ new Socket("127.0.0.1", {port}); System.out.println("tcp CONNECTED"); }}
        catch (IOException e) {{ System.out.println("tcp " + e); }}
        try {{ SocketChannel.open(UnixDomainSocketAddress.of("{sock}")); System.out.println("unix CONNECTED"); }}
        catch (IOException e) {{ System.out.println("unix " + e); }}
        int n = 0; byte[] mib = new byte[1 << 20];
        try {{ for (;; n++) try (FileOutputStream f = new FileOutputStream("/tmp/f" + n)) {{ f.write(mib); }} }}
        catch (IOException e) {{ }}
        System.out.println("MiB " + n);
        int k = 0;
        try {{ for (; k < 1000; k++) new ProcessBuilder("sleep", "60").start(); }}
        catch (IOException | Error e) {{ }}
        System.out.println("procs " + k);
        System.exit(3);
    }}
}}
"""
    if code == "rs":
        return f"""use std::io::Write;
fn main() {{
    println!("secret {{:?}}", std::fs::read("{secret}").map(|_| "FOUND"));
    println!("write {{:?}}", std::fs::File::create("/escape").map(|_| "WRITTEN"));
    println!("tcp {{:?}}", std::net::TcpStream::connect("127.0.0.1:{port}").map(|_| "CONNECTED"));
    println!("unix {{:?}}", std::os::unix::net::UnixStream::connect("{sock}").map(|_| "CONNECTED"));
    let mib = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {{
        let ok = std::fs::File::create(format!("/tmp/f{{}}", n)).and_then(|mut f| f.write_all(&mib)).is_ok();
        if !ok {{ break; }}
        n += 1;
    }}
    println!("MiB {{}}", n);
    let mut k = 0;
    while k < 1000 && std::process::Command::new("sleep").arg("60").spawn().is_ok() {{ k += 1; }}
    println!("procs {{}}", k);
    std::process::exit(3);
}}
"""
    if code == "rb":
        return f"""require 'socket'
$stdout.sync = true  # a forked child must not print the parent's buffered lines again
def try_it(label)
  puts "#{{label}} #{{yield}}"
rescue SystemCallError, IOError => e
  puts "#{{label}} #{{e.class}}"
end
try_it("secret") {{ File.read("{secret}"); "FOUND" }}
try_it("write") {{ File.write("/escape", "x"); "WRITTEN" }}
try_it("tcp") {{ TCPSocket.new("127.0.0.1", {port}); "CONNECTED" }}
try_it("unix") {{ UNIXSocket.new("{sock}"); "CONNECTED" }}
n = 0
begin
  loop {{ File.binwrite("/tmp/f#{{n}}", "x" * (1 << 20)); n += 1 }}
rescue SystemCallError
end
puts "MiB #{{n}}"
k = 0
begin  # Ruby retries a refused fork for a while: say each one that succeeded
  1000.times {{ fork {{ sleep 60 }}; k += 1; puts "procs #{{k}}" }}
rescue SystemCallError
end
exit!(3)
"""
    return f"""cat "{secret}" >/dev/null 2>&1 && echo "secret FOUND" || echo "secret refused"
( echo x > /escape ) 2>/dev/null && echo "write WRITTEN" || echo "write refused"
( exec 3<>/dev/tcp/127.0.0.1/{port} ) 2>/dev/null && echo "tcp CONNECTED" || echo "tcp refused"
[ -S "{sock}" ] && echo "unix VISIBLE" || echo "unix missing"
n=0
while head -c 1048576 /dev/zero > /tmp/f$n 2>/dev/null; do n=$((n + 1)); done
echo "MiB $n"
k=0
while [ $k -lt 1000 ]; do sleep 60 & k=$((k + 1)); echo "procs $k"; done
exit 3
"""


def short(code: str) -> languages.Language:
    """The language with its run step cut to STEP_S (compiles keep their limit)."""
    lang = languages.language(code)
    return dataclasses.replace(lang, steps=tuple(
        s if s.name == "compile" else dataclasses.replace(s, timeout_s=STEP_S) for s in lang.steps))


# The child evaluator of the unprivileged half: (language, program) pairs in, outcomes out.
RUNNER = """
import dataclasses, json, sys
from sophia.evaluate import languages, toolchain
from sophia.evaluate.sandbox import Limits, Sandbox
jobs = json.load(sys.stdin)
box = Sandbox(Limits(**jobs["limits"]), "bwrap")
out = []
for code, program in jobs["programs"]:
    lang = languages.language(code)
    lang = dataclasses.replace(lang, steps=tuple(s if s.name == "compile" else dataclasses.replace(
        s, timeout_s=jobs["step_s"]) for s in lang.steps))
    out.append(toolchain.run_many(lang, box, [program], 1)[0].to_dict())
print(json.dumps(out))
"""


def check(code: str, o: dict[str, Any], host: Host) -> None:
    """Every attack refused, and the program not counted as passed."""
    lines = dict(ln.split(" ", 1) for ln in o["stdout"].splitlines() if " " in ln)
    assert o["status"] != PASSED and "compile" not in o["reason"], (code, o["status"], o["reason"], o["stderr"][-800:])
    assert SECRET not in o["stdout"] and "FOUND" not in lines.get("secret", "FOUND"), o["stdout"]
    assert "WRITTEN" not in lines.get("write", "WRITTEN"), o["stdout"]
    assert "CONNECTED" not in lines.get("tcp", "CONNECTED"), o["stdout"]
    assert "CONNECTED" not in lines.get("unix", "CONNECTED") and "VISIBLE" not in lines["unix"], o["stdout"]
    assert host.nothing_connected()
    lim = toolchain.limits(short(code), LIMITS)
    assert int(lines["MiB"]) <= lim.disk_mb, o["stdout"]  # /tmp is one of the two capped tmpfs mounts
    assert 0 < int(o["stdout"].split("procs ")[-1].split()[0]) < lim.max_processes, o["stdout"]


@pytest.mark.parametrize("code", MULTIPL_E_LANGUAGES)
def test_attacks_in_each_language_are_contained(base: Path, code: str) -> None:  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("the root half needs root (the program then runs as nobody in its own user namespace)")
    if not sandbox.bwrap_available():
        pytest.fail("bubblewrap is not usable here: `make setup` installs it (apt-get install bubblewrap)")
    languages.check_installed([code], "test")
    host = Host(base, Path.home(), Path.cwd())
    try:
        program = attacks(code, str(host.secrets[0]), host.sock_path, host.port)
        check(code, toolchain.run_many(short(code), Sandbox(LIMITS, "bwrap"), [program], 1)[0].to_dict(), host)
    finally:
        host.close()


def test_attacks_fail_as_a_normal_user(user: tuple[list[str], int], base: Path) -> None:  # noqa: F811
    """All five languages through an evaluator running as a fresh unprivileged uid, its secrets in
    its own home and working directory."""
    prefix, uid = user
    languages.check_installed(list(MULTIPL_E_LANGUAGES), "test")
    home, cwd = base / "home", base / "work"
    for d in (home, cwd):
        d.mkdir(mode=0o700)
        os.chown(d, uid, uid)
    pkg = base / "lib" / "sophia"
    for name in (*SANDBOX_FILES, "evaluate/languages.py", "evaluate/toolchain.py"):
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "workflow" / "sophia" / name, pkg / name)
    host = Host(base, home, cwd)
    try:
        programs = [(code, attacks(code, str(host.secrets[1]), host.sock_path, host.port))
                    for code in MULTIPL_E_LANGUAGES]
        jobs = json.dumps({"limits": vars(LIMITS), "programs": programs, "step_s": STEP_S})
        res = subprocess.run([*prefix, _python_for(prefix), "-c", RUNNER], input=jobs, capture_output=True,
                             text=True, cwd=cwd, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(base / "lib")})
        assert res.returncode == 0, res.stderr
        for (code, _), o in zip(programs, json.loads(res.stdout), strict=True):
            check(code, o, host)
    finally:
        host.close()
