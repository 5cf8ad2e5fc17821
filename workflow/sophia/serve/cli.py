"""`sophia serve`: run a GGUF file (a gguf stage output) behind the Ollama and OpenAI APIs."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from sophia.errors import SophiaError

log = logging.getLogger("sophia.serve")
DEFAULT_PORT = 11434  # Ollama's: editors configured for a local Ollama find this server unchanged
API_KEY_ENV = "SOPHIA_API_KEY"
# Requests still running when SIGTERM comes get this long, then are cut (the answer to a client
# that is going away anyway); the process is gone well within 5 s.
GRACE_S = 2


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve a GGUF model over the Ollama and OpenAI APIs (llama.cpp)",
                       description=__doc__)
    p.add_argument("--model", required=True, type=Path,
                   help="a .gguf file, or a gguf stage folder (results/gguf/<model>) with --type")
    p.add_argument("--type", default="Q4_K_M", help="which GGUF of a stage folder (default Q4_K_M)")
    p.add_argument("--name", help="model name clients use (default sophia-<model>:<type>, as the Modelfile's)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--ctx", type=int, help="context length (default: the model's training context, at most 4096)")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: llama.cpp's choice)")
    p.add_argument("--gpu-layers", type=int,
                   help="layers offloaded to the GPU (default: all where llama.cpp has a GPU backend; 0: CPU)")
    p.add_argument("--origins", action="append", default=[], metavar="ORIGIN[,ORIGIN...]",
                   help="web origins allowed to call the server (e.g. http://localhost:3000; * wildcards); "
                        "default none: editors and command-line clients send no Origin and need none")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"require 'Authorization: Bearer <key>' (default ${API_KEY_ENV}); "
                        "meant for a bind beyond loopback")
    p.add_argument("--max-queue", type=int, default=16, help="requests that may wait; more get 503 + Retry-After")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds a request may take, queue included (default 600); the answer is cut there")
    p.add_argument("--max-body", type=int, default=8 << 20, help="request body bytes (default 8 MiB); more: 413")
    p.add_argument("--max-prompt-chars", type=int, default=0,
                   help="prompt characters checked before tokenizing (default 32 per context token)")
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


def bind_is_loopback(host: str, api_key: str | None) -> bool:
    """Whether the Host allowlist applies; a wider bind without a key is allowed, with a warning."""
    from sophia.serve.guard import is_loopback

    loopback = is_loopback(host)
    if not loopback and not api_key:
        log.warning("listening on %s without --api-key: anyone who can reach this address can use the model", host)
    return loopback


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
    from sophia.serve.shared import Limits

    origins = [o.strip() for arg in args.origins for o in arg.split(",") if o.strip()]
    for value, flag in ((args.ctx, "--ctx"), (args.max_queue, "--max-queue"), (args.max_body, "--max-body")):
        if value is not None and value < 1:
            raise SophiaError(f"{flag} must be at least 1, got {value}")
    path = gguf_file(args.model, args.type)
    if args.timeout <= 0:
        raise SophiaError(f"--timeout must be positive, got {args.timeout:g}")
    loopback = bind_is_loopback(args.host, args.api_key)
    served = load(path, args.name or default_name(path), args.ctx, args.threads, args.gpu_layers, args.max_queue,
                  args.timeout, Limits(args.max_body, args.max_prompt_chars))
    log.info("serving %s as '%s' on http://%s:%d (Ollama /api/*, OpenAI /v1/*): context %d, %s GPU layers",
             path, served.name, args.host, args.port, served.engine.n_ctx,
             "all" if served.engine.model.gpu_layers < 0 else served.engine.model.gpu_layers)
    try:
        uvicorn.run(create_app(served, loopback=loopback, origins=origins, api_key=args.api_key), host=args.host,
                    port=args.port, log_level="info", timeout_graceful_shutdown=GRACE_S)
    finally:
        served.engine.close()
