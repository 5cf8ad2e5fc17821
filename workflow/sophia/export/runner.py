"""The on-device runner: load a bundle (checked against its sha256 manifest), tokenize a request
with the bundle's own tokenizer.json, and generate greedily with the LiteRT interpreter,
streaming tokens. Reports the paper's app figures: load time, time to first token, tokens/s.

Runs where ai-edge-litert and tokenizers are installed (the export environment, or a phone-class
Linux board): `.venv-export/bin/sophia run --bundle results/export/<model>/bundle --prompt "..."`.
No torch, no transformers.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sophia.errors import ModelError
from sophia.export.decode import KVModel, Timing, greedy, load


def verify(bundle: Path) -> dict[str, Any]:
    """The manifest must list every file with its size and sha256; a mismatch is refused."""
    path = bundle / "manifest.json"
    if not path.is_file():
        raise ModelError(f"{bundle}: no manifest.json, not an export bundle")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        f = bundle / name
        if not f.is_file():
            raise ModelError(f"{f}: listed in the manifest but missing")
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if f.stat().st_size != entry["bytes"] or h.hexdigest() != entry["sha256"]:
            raise ModelError(f"{f}: corrupt (size or sha256 differs from manifest.json); re-export or re-copy it")
    return manifest


class Assistant:
    """`graph` kv: the prompt through the window graph in one call when it is a prefill graph
    (`prefill=False`: one decode step per prompt token instead), then one decode step per token;
    window: the fixed window re-run for every token."""

    def __init__(self, bundle: Path, graph: str = "auto", threads: int = 2, prefill: bool = True) -> None:
        from tokenizers import Tokenizer

        start = time.perf_counter()
        verify(bundle)
        self.settings = json.loads((bundle / "generation.json").read_text(encoding="utf-8"))
        self.template = json.loads((bundle / "prompt.json").read_text(encoding="utf-8"))["template"]
        models = self.settings["models"]
        graph = ("kv" if "kv" in models else "window") if graph == "auto" else graph
        if graph not in models:
            raise ModelError(f"{bundle}: no {graph} graph in this bundle (has: {', '.join(models)})")
        self.graph = graph
        self.model = load({g: bundle / name for g, name in models.items()}, graph, threads,
                          self.settings.get("signatures"), prefill)
        self.prefill = isinstance(self.model, KVModel) and self.model.prefill is not None
        self.tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
        self.load_s = time.perf_counter() - start

    def encode(self, request: str) -> list[int]:
        return self.tokenizer.encode(self.template.format(instruction=request.strip())).ids

    def generate(self, request: str, max_new_tokens: int | None = None,
                 on_text: Callable[[str], None] | None = None, stop: bool = True) -> dict[str, Any]:
        """Greedy answer; `on_text` receives each new piece of text as it is decoded. `stop=False`
        turns EOS and the stop strings off, so the answer runs to the cap (parity checks, timing)."""
        ids = self.encode(request)
        cap = max_new_tokens or self.settings["max_new_tokens"]
        stops = self.settings["stop_strings"] if stop else []
        timing = Timing()
        tokens: list[int] = []
        shown = ""

        def stopped(new: list[int]) -> bool:
            return any(s in self.tokenizer.decode(new) for s in stops)

        eos = {self.settings["eos_token_id"]} if stop else set()
        for token in greedy(self.model, ids, cap, eos, stopped if stop else None, timing):
            tokens.append(token)
            text = _cut(self.tokenizer.decode(tokens), stops)
            if on_text is not None and len(text) > len(shown):
                on_text(text[len(shown):])
            shown = text
        finish = timing.finish
        return {"prompt_tokens": len(ids), "tokens": tokens, "text": _cut(self.tokenizer.decode(tokens), stops).strip(),
                "finish": finish, "graph": self.graph, "prefill": self.prefill,
                "load_s": self.load_s, "first_token_s": timing.first_token_s,
                "total_s": timing.total_s, "new_tokens": timing.new_tokens, "tokens_per_s": timing.tokens_per_s}


def _cut(text: str, stops: list[str]) -> str:
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(ends)] if ends else text


def run(args: Any) -> None:
    assistant = Assistant(Path(args.bundle), args.graph, args.threads, prefill=not args.no_prefill)
    stream = None if args.json else (lambda piece: print(piece, end="", flush=True))
    result = assistant.generate(args.prompt, args.max_new_tokens, stream, stop=not args.no_stop)
    if args.json:
        print(json.dumps(result))
        return
    print(file=sys.stderr)
    graph = result["graph"] + (" + prefill" if result["prefill"] else "")
    print(f"[{graph}] load {result['load_s']:.2f} s, first token {result['first_token_s'] * 1000:.1f} ms, "
          f"{result['new_tokens']} tokens at {result['tokens_per_s']:.1f} tok/s ({result['finish']})", file=sys.stderr)
