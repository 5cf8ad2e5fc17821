"""Load a GGUF file into an Engine and describe it the way the listing endpoints need."""

from __future__ import annotations

import logging
from pathlib import Path

from sophia.gguf.modelfile import modelfile, template
from sophia.gguf.tools import fim_token_texts, vocab_facts
from sophia.provenance import sha256_file
from sophia.serve.engine import Engine
from sophia.serve.model import LlamaModel, default_ctx, default_gpu_layers
from sophia.serve.shared import Limits, Served


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


def load(path: Path, name: str, n_ctx: int | None = None, threads: int | None = None, gpu_layers: int | None = None,
         max_queue: int = 16, timeout_s: float = 600.0, limits: Limits | None = None) -> Served:
    """`n_ctx` None: min(training context, 4096); `gpu_layers` None: all where llama.cpp has a GPU backend."""
    import llama_cpp

    # llama-cpp-python's log (every metadata key of the file) shows only errors, as with Llama(verbose=False)
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    if n_ctx is None:
        n_ctx = default_ctx(int(vocab_facts(path)["n_ctx_train"]))
    model = LlamaModel(path, n_ctx, threads, default_gpu_layers() if gpu_layers is None else gpu_layers)
    engine = Engine(model, max_queue=max_queue, timeout_s=timeout_s)
    fim = fim_token_texts(model.llm.model)
    family = model.metadata.get("general.architecture", "unknown")
    return Served(engine=engine, name=name, digest=sha256_file(path), size=path.stat().st_size, family=family,
                  parameter_size=parameter_size(llama_cpp.llama_model_n_params(model.llm.model)),
                  quantization=ftype_name(int(model.metadata.get("general.file_type", -1))),
                  template=template(fim), modelfile=modelfile(path.name, engine.n_ctx, fim, title=name),
                  metadata=model.metadata, limits=limits or Limits())
