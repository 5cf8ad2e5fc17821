"""llama.cpp's tools as the gguf stage uses them: its converter (from the llama-cpp-python sdist,
unpacked by `make setup`) in a subprocess, and its quantizer through the `llama_cpp` bindings."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from sophia.errors import ConfigError, ModelError

log = logging.getLogger(__name__)
CACHE_ENV = "SOPHIA_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sophia")


def llama_cpp_version() -> str:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(f"llama-cpp-python is not installed ({exc}); `make setup` builds it (envs/llama_cpp.sh)") \
            from None
    return llama_cpp.__version__


def converter_src(setting: str | None) -> Path:
    """The llama.cpp source tree holding convert_hf_to_gguf.py: `gguf.llama_cpp_src`, or the copy
    `make setup` unpacked from the same llama-cpp-python sdist the bindings were built from."""
    where = "gguf.llama_cpp_src"
    if setting is None:
        src = cache_dir() / f"llama-cpp-python-{llama_cpp_version()}" / "vendor" / "llama.cpp"
        where = f"{where} (default {src})"
    else:
        src = Path(setting)
    missing = [name for name in ("convert_hf_to_gguf.py", "gguf-py", "conversion") if not (src / name).exists()]
    if missing:
        raise ConfigError(f"{where}: {src} lacks {', '.join(missing)}; `make setup` unpacks llama.cpp's converter "
                          "from the llama-cpp-python sdist (envs/llama_cpp.sh)")
    return src


def convert(src: Path, model_dir: Path, out: Path, pre_tokenizer: str | None, log_path: Path) -> float:
    """HF model directory → f16 GGUF; returns seconds. The converter's output goes to `log_path`."""
    cmd = [sys.executable, "-m", "sophia.gguf.convert", "--src", str(src), "--model", str(model_dir),
           "--outfile", str(out), "--outtype", "f16"]
    if pre_tokenizer:
        cmd += ["--pre", pre_tokenizer]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log_path.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        hint = ""
        if "pre-tokenizer was not recognized" in tail:
            hint = ("\n(a retrained byte-level BPE: set gguf.pre_tokenizer to the pre-tokenizer it uses, e.g. gpt-2; "
                    "the stage then checks the tokenization against the HF tokenizer)")
        raise ModelError(f"gguf: llama.cpp's converter failed on {model_dir} (exit {proc.returncode}):\n{tail}{hint}")
    return time.perf_counter() - start


def quantize(source: Path, out: Path, kind: str, threads: int) -> float:
    """llama.cpp's quantizer (`llama_model_quantize`, what the llama-quantize tool calls); returns seconds."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}", None)
    if ftype is None:
        raise ConfigError(f"gguf.types: {kind} is not a llama.cpp quantization type")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    start = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise ModelError(f"gguf: llama.cpp could not quantize {source.name} to {kind} (return code {rc})")
    return time.perf_counter() - start


def vocab_facts(path: Path) -> dict[str, object]:
    """Context length and fill-in-the-middle token texts of a GGUF file (vocabulary only, no weights)."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ModelError(f"gguf: llama.cpp cannot read {path}")
    def meta(key: str) -> str:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
        return buf.value.decode() if n >= 0 else ""

    try:  # a vocabulary-only load leaves the hyper-parameters unread: the context length is metadata
        n_ctx = meta(f"{meta('general.architecture')}.context_length")
        return {"n_ctx_train": int(n_ctx) if n_ctx else 0, "fim": fim_token_texts(model)}
    finally:
        llama_cpp.llama_model_free(model)


def fim_token_texts(model: object) -> tuple[str, str, str] | None:
    """(prefix, suffix, middle) token texts when the vocabulary has fill-in-the-middle tokens."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(model)
    ids = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
           llama_cpp.llama_vocab_fim_mid(vocab))
    if min(ids) < 0:
        return None
    pre, suf, mid = (llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8") for i in ids)
    return pre, suf, mid
