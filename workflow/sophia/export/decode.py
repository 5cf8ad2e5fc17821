"""Greedy decoding of the exported graphs with the LiteRT interpreter (export environment: numpy
and ai-edge-litert only, no torch). Shared by the parity check and the on-device runner, so what
the gate checks is exactly what the runner does."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def interpreter(path: str | Path, threads: int = 2) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    return interp


class Graph:
    """Call a .tflite through a signature, by the graph's input and output names. onnx2tf's files
    have one (`serving_default`); litert_torch's one file holds two, `prefill` and `decode`, over one
    copy of the weights, and `interp` lets both graphs share the file's interpreter."""

    def __init__(self, path: str | Path, outputs: list[str], threads: int = 2, signature: str | None = None,
                 interp: Any = None) -> None:
        self.interp = interp if interp is not None else interpreter(path, threads)
        signatures = self.interp.get_signature_list()
        if not signatures:
            raise ValueError(f"{path}: no signature to call it by; export it again (snakemake --forcerun export)")
        if signature is None and len(signatures) > 1:
            raise ValueError(f"{path}: several signatures ({', '.join(signatures)}); name the one to call")
        if signature is not None and signature not in signatures:
            raise ValueError(f"{path}: no signature '{signature}' (has: {', '.join(signatures)})")
        self.runner = self.interp.get_signature_runner(signature)
        self.inputs = dict(self.runner.get_input_details())
        missing = set(outputs) - set(self.runner.get_output_details())
        if missing:
            raise ValueError(f"{path}: its signature lacks the outputs {', '.join(sorted(missing))}")

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner(**feeds)


class WindowModel:
    """The window graph [1, T]. Run alone, the prompt sits at the start and the rest is padding;
    causal attention means the padding never changes the logits at the last real position. When it
    also takes `pos` and a KV cache (export.kv_cache set), it is the prefill graph: `chunk` runs
    tokens from any position into a cache that the decode graph (KVModel) carries on."""

    def __init__(self, path: str | Path, threads: int = 2, signature: str | None = None, interp: Any = None) -> None:
        self.path = Path(path)
        self.runner = Graph(path, ["logits"], threads, signature, interp)
        inputs = self.runner.inputs
        if "input_ids" not in inputs:
            raise ValueError(f"{path}: no input_ids input (has {', '.join(inputs)})")
        self.window = int(inputs["input_ids"]["shape"][1])
        self.cache_shape = tuple(int(x) for x in inputs["k_cache"]["shape"]) if "k_cache" in inputs else None

    @property
    def prefill(self) -> bool:
        return self.cache_shape is not None

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """[1, T] int32 → [1, T, V], from position 0 with an empty cache."""
        feeds = {"input_ids": ids.astype(np.int32)}
        if self.cache_shape is not None:
            empty = np.zeros(self.cache_shape, dtype=np.float32)
            feeds.update(pos=np.zeros(1, dtype=np.int32), k_cache=empty, v_cache=empty.copy())
        return self.runner(**feeds)["logits"].reshape(1, self.window, -1)

    def next_logits(self, tokens: list[int]) -> np.ndarray:
        if len(tokens) > self.window:
            raise ValueError(f"{len(tokens)} tokens do not fit the {self.window}-token window")
        ids = np.zeros((1, self.window), dtype=np.int32)
        ids[0, : len(tokens)] = tokens
        return self.logits(ids)[0, len(tokens) - 1]

    def chunk(self, tokens: list[int], pos: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        """Up to T tokens at positions pos.. (padded to T) → (logits of the last one, k, v)."""
        ids = np.zeros((1, self.window), dtype=np.int32)
        ids[0, : len(tokens)] = tokens
        out = self.runner(input_ids=ids, pos=np.array([pos], dtype=np.int32), k_cache=k, v_cache=v)
        logits = out["logits"].reshape(self.window, -1)[len(tokens) - 1]
        return logits, out["k_cache_out"].reshape(k.shape), out["v_cache_out"].reshape(v.shape)


class KVModel:
    """The decode graph: one token per call against a static cache carried between calls. With a
    prefill graph, `feed` sends runs of several tokens (the prompt) through it, T per call."""

    def __init__(self, path: str | Path, threads: int = 2, prefill: WindowModel | None = None,
                 signature: str | None = None, interp: Any = None) -> None:
        self.runner = Graph(path, ["logits", "k_cache_out", "v_cache_out"], threads, signature, interp)
        details = self.runner.inputs
        self.cache_shape = tuple(int(x) for x in details["k_cache"]["shape"])
        self.max_len = self.cache_shape[3]
        if prefill is not None and prefill.cache_shape != self.cache_shape:
            raise ValueError(f"{prefill.path}: its cache {prefill.cache_shape} is not the decode graph's "
                             f"{self.cache_shape} ({path}); export both graphs together")
        self.prefill = prefill if prefill is not None and prefill.prefill else None
        self.reset()

    def reset(self) -> None:
        self.k = np.zeros(self.cache_shape, dtype=np.float32)
        self.v = np.zeros(self.cache_shape, dtype=np.float32)
        self.pos = 0

    def step(self, token: int) -> np.ndarray:
        if self.pos >= self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions")
        out = self.runner(input_ids=np.array([[token]], dtype=np.int32), pos=np.array([self.pos], dtype=np.int32),
                          k_cache=self.k, v_cache=self.v)
        # onnx2tf may move a size-1 axis of the cache outputs; the memory layout is the same.
        self.k = out["k_cache_out"].reshape(self.cache_shape)
        self.v = out["v_cache_out"].reshape(self.cache_shape)
        self.pos += 1
        return out["logits"].reshape(-1)

    def feed(self, tokens: list[int]) -> np.ndarray:
        """The logits after `tokens`, fed from the current position: runs of two or more tokens go
        through the prefill graph when there is one, single tokens through the decode graph."""
        if self.pos + len(tokens) > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions")
        logits = np.zeros(0, dtype=np.float32)
        at = 0
        while at < len(tokens):
            n = min(len(tokens) - at, self.prefill.window) if self.prefill is not None else 1
            if n == 1:
                logits = self.step(tokens[at])
            else:
                logits, self.k, self.v = self.prefill.chunk(tokens[at: at + n], self.pos, self.k, self.v)
                self.pos += n
            at += n
        return logits

    def teacher_forced(self, ids: list[int]) -> np.ndarray:
        self.reset()
        return np.stack([self.step(t) for t in ids])


# litert_torch writes both graphs into one file, as signatures with the LiteRT LLM exports' names
SIGNATURES = {"window": "prefill", "kv": "decode"}


def load(files: dict[str, Path], graph: str, threads: int = 2, signatures: dict[str, str] | None = None,
         prefill: bool = True) -> WindowModel | KVModel:
    """The `graph` (window or kv) of a set of exported files ({graph: path}; two graphs may be one
    file's two signatures, opened once). kv takes the window graph as its prefill when that is one
    and `prefill` is true."""
    signatures = signatures or {}
    opened: dict[Path, Any] = {}

    def interp(path: Path) -> Any:
        if path not in opened:
            opened[path] = interpreter(path, threads)
        return opened[path]

    def window() -> WindowModel:
        return WindowModel(files["window"], threads, signatures.get("window"), interp(files["window"]))

    if graph == "window":
        return window()
    companion = window() if prefill and "window" in files else None
    return KVModel(files["kv"], threads, companion, signatures.get("kv"), interp(files["kv"]))


@dataclass
class Timing:
    first_token_s: float = 0.0
    total_s: float = 0.0
    new_tokens: int = 0
    finish: str = ""  # eos, stop, length (the cap) or context (window/cache full)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.total_s if self.total_s > 0 else 0.0


def greedy(model: WindowModel | KVModel, prompt: list[int], max_new_tokens: int, stop_ids: set[int] = frozenset(),
           should_stop: Callable[[list[int]], bool] | None = None, timing: Timing | None = None) -> Iterator[int]:
    """Yield greedy tokens one by one (streaming); stop at a stop id, `should_stop`, the length cap
    or the end of the window/cache. A KV model takes the prompt in one `feed` (its prefill graph
    when it has one), then one token per step."""
    start = time.perf_counter()
    timing = timing if timing is not None else Timing()
    kv = isinstance(model, KVModel)
    if kv:
        model.reset()
    tokens = list(prompt)
    pending = list(prompt)  # not yet in the cache (KV)
    new: list[int] = []

    def room() -> bool:
        return model.pos + len(pending) <= model.max_len if kv else len(tokens) <= model.window

    timing.finish = "length"
    while len(new) < max_new_tokens:
        if not room():
            timing.finish = "context"
            return
        logits = model.feed(pending) if kv else model.next_logits(tokens)
        token = int(np.argmax(logits))
        if not new:
            timing.first_token_s = time.perf_counter() - start
        tokens.append(token)
        pending = [token]
        new.append(token)
        timing.new_tokens = len(new)
        timing.total_s = time.perf_counter() - start
        if token in stop_ids:
            timing.finish = "eos"
            return
        yield token
        if should_stop is not None and should_stop(new):
            timing.finish = "stop"
            return
