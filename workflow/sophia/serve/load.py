"""Load a GGUF file into an Engine and describe it the way the listing endpoints need."""

from __future__ import annotations

from pathlib import Path

from sophia.gguf.modelfile import modelfile, template
from sophia.gguf.tools import fim_token_texts
from sophia.provenance import sha256_file
from sophia.serve.app import Served
from sophia.serve.engine import Engine


def ftype_name(value: int) -> str:
    """llama.cpp's file-type number → its quantization name (15 → Q4_K_M)."""
    import llama_cpp

    for name in dir(llama_cpp):
        if name.startswith("LLAMA_FTYPE_") and getattr(llama_cpp, name) == value and name != "LLAMA_FTYPE_GUESSED":
            return name.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
    return str(value)


def parameter_size(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def load(path: Path, name: str, n_ctx: int = 0, threads: int | None = None) -> Served:
    import llama_cpp

    engine = Engine(path, n_ctx, threads)
    fim = fim_token_texts(engine.llm.model)
    family = engine.metadata.get("general.architecture", "unknown")
    return Served(engine=engine, name=name, digest=sha256_file(path), size=path.stat().st_size, family=family,
                  parameter_size=parameter_size(llama_cpp.llama_model_n_params(engine.llm.model)),
                  quantization=ftype_name(int(engine.metadata.get("general.file_type", -1))),
                  template=template(fim), modelfile=modelfile(path.name, engine.n_ctx, fim, title=name))
