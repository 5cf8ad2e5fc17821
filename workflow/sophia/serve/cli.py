"""`sophia serve`: run a GGUF file (a gguf stage output) behind the Ollama and OpenAI APIs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from sophia.errors import SophiaError

log = logging.getLogger("sophia.serve")
DEFAULT_PORT = 11434  # Ollama's: editors configured for a local Ollama find this server unchanged


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve a GGUF model over the Ollama and OpenAI APIs (llama.cpp)",
                       description=__doc__)
    p.add_argument("--model", required=True, type=Path,
                   help="a .gguf file, or a gguf stage folder (results/gguf/<model>) with --type")
    p.add_argument("--type", default="Q4_K_M", help="which GGUF of a stage folder (default Q4_K_M)")
    p.add_argument("--name", help="model name clients use (default sophia-<model>:<type>, as the Modelfile's)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--ctx", type=int, default=0, help="context length (default: the model's)")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: llama.cpp's choice)")
    p.add_argument("--bench", action="store_true",
                   help="instead of serving: tokens/s and first-token latency of every GGUF in the stage folder "
                        "vs PyTorch generate on the float model (--float-model), logged to MLflow")
    p.add_argument("--float-model", type=Path, help="with --bench: the merged float model (results/merged/<model>)")
    p.add_argument("--new-tokens", type=int, default=32, help="with --bench: tokens per answer")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gguf_serve.json"), help="with --bench")


def gguf_file(model: Path, kind: str) -> Path:
    if model.is_file():
        return model
    if model.is_dir():
        path = model / f"model-{kind}.gguf"
        if path.is_file():
            return path
        found = ", ".join(sorted(p.name for p in model.glob("*.gguf"))) or "none"
        raise SophiaError(f"--model {model}: no model-{kind}.gguf (GGUF files there: {found})")
    raise SophiaError(f"--model {model}: no such file or folder")


def default_name(path: Path) -> str:
    from sophia.gguf.modelfile import ollama_name

    kind = path.stem.removeprefix("model-")
    return ollama_name(path.parent.name, kind)


def run(args: argparse.Namespace) -> None:
    if args.bench:
        from sophia.serve import bench

        if args.float_model is None or not args.model.is_dir():
            raise SophiaError("--bench needs --model <gguf stage folder> and --float-model <merged float model>")
        bench.run(args.model, args.float_model, args.new_tokens, args.threads, args.out)
        return
    import uvicorn
    from sophia.serve.app import create_app
    from sophia.serve.load import load

    path = gguf_file(args.model, args.type)
    served = load(path, args.name or default_name(path), args.ctx, args.threads)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this address can use the model", args.host)
    log.info("serving %s as '%s' on http://%s:%d (Ollama /api/*, OpenAI /v1/*)", path, served.name, args.host,
             args.port)
    uvicorn.run(create_app(served), host=args.host, port=args.port, log_level="info")
