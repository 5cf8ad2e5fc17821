"""A stand-in model for testing `sophia serve`'s HTTP layer fast: a character tokenizer and a scripted
answer, with knobs for slowness and failure. Everything above the model (guard, routes, engine
queue, streams) is the real code, served by uvicorn on a loopback port in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sophia.gguf.modelfile import template
from sophia.serve.app import create_app
from sophia.serve.engine import Engine, Sampling
from sophia.serve.shared import Limits, Served

BOS, EOS, PRE, SUF, MID = 1, 2, 3, 4, 5
SPECIAL = {"<s>": BOS, "<|endoftext|>": EOS, "<|fim_prefix|>": PRE, "<|fim_suffix|>": SUF, "<|fim_middle|>": MID}
OFFSET = 16  # character c is token OFFSET + ord(c)
NAME = "fake:latest"


@dataclass
class FakeModel:
    n_ctx: int = 256
    answer: str = "hello world. "  # repeated until max tokens, or EOS after `eos_after` tokens
    eos_after: int | None = None
    delay_s: float = 0.0  # per generated token
    tokenize_delay_s: float = 0.0
    fail_after: int | None = None  # raise after this many tokens
    fim: bool = False
    gpu_layers: int = 0
    seen: list[tuple[list[int], Sampling]] = field(default_factory=list)  # every generate() call

    def tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        if self.tokenize_delay_s:
            time.sleep(self.tokenize_delay_s)
        out = [BOS] if add_bos else []
        i = 0
        while i < len(text):
            hit = next((s for s in SPECIAL if special and text.startswith(s, i)), None)
            if hit:
                out.append(SPECIAL[hit])
                i += len(hit)
            else:
                out.append(OFFSET + ord(text[i]))
                i += 1
        return out

    def text(self, tokens: Sequence[int]) -> str:
        names = {v: k for k, v in SPECIAL.items()}
        return "".join(names.get(t) or chr(t - OFFSET) for t in tokens)

    def piece(self, token: int) -> bytes:
        return b"" if token < OFFSET else chr(token - OFFSET).encode()

    def fim_ids(self) -> tuple[int, int, int] | None:
        return (PRE, SUF, MID) if self.fim else None

    def is_eog(self, token: int) -> bool:
        return token == EOS

    def generate(self, tokens: Sequence[int], sampling: Sampling) -> Iterator[int]:
        self.seen.append((list(tokens), sampling))
        i = 0
        while True:
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("the fake model failed")
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.eos_after is not None and i >= self.eos_after:
                yield EOS
                return
            yield OFFSET + ord(self.answer[i % len(self.answer)])
            i += 1

    def close(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    url: str
    port: int
    model: FakeModel
    engine: Engine


@contextmanager
def serving(model: FakeModel | None = None, *, max_queue: int = 16, timeout_s: float = 600.0,
            limits: Limits | None = None, **guard: Any) -> Iterator[Running]:
    """The real app over `model` on a free loopback port, for the duration of the block."""
    model = model or FakeModel()
    engine = Engine(model, max_queue=max_queue, timeout_s=timeout_s)
    fim = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>") if model.fim else None
    served = Served(engine=engine, name=NAME, digest="0" * 64, size=1, family="fake", parameter_size="1",
                    quantization="F32", template=template(fim), modelfile="FROM ./fake.gguf\n",
                    limits=limits or Limits())
    port = free_port()
    config = uvicorn.Config(create_app(served, **guard), host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Running(f"http://127.0.0.1:{port}", port, model, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
