"""The evaluate job of `evaluate.engine: vllm`: every variant of one base model (the base itself and
each LoRA adapter on it) through one vLLM server, started once, on first need.

Each variant still runs as `sophia.evaluate_job` runs it (its verifier, its benchmarks into
`<out>/<benchmark>/` with their own MLflow runs and cache entries, its forgetting losses): only the
generation and scoring go to the server, under the variant's served name. A job whose benchmarks
all come from the cache starts no engine.

    python -m sophia.evaluate_vllm_job --spec EVAL_SPEC --model DIR --variants JSON --benchmark B [...]
        [--verifier-spec SPEC] [--cache DIR] --engine-log FILE --out EVAL_ROOT

JSON: a list of {"model_id", "adapter" (or null), "out" (default EVAL_ROOT/<model_id>), "verifier"
(or null), "forgetting" (or null: {"spec", "steps", "data", "out"} as sophia.evaluate_job takes it)}.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sophia import evaluate_job
from sophia.config import validate_section
from sophia.errors import ConfigError, EvalError
from sophia.evaluate import vllm_server
from sophia.evaluate.backends import Served

log = logging.getLogger(__name__)


class EngineOnDemand:
    """One vLLM server for a base model and its adapters, started by the first variant that needs it."""

    def __init__(self, model_dir: Path, adapters: dict[str, Path], settings: dict[str, Any], seed: int,
                 log_path: Path) -> None:
        self.model_dir, self.adapters, self.settings, self.seed = model_dir, adapters, settings, seed
        self.log_path = log_path
        self.server: vllm_server.Server | None = None

    def max_length(self) -> int:
        if self.settings["max_model_len"]:
            return int(self.settings["max_model_len"])
        cfg = json.loads((self.model_dir / "config.json").read_text())
        return int(cfg.get("max_position_embeddings", 2048))

    def served(self, model_id: str) -> Callable[[], Served]:
        name = model_id if model_id in self.adapters else vllm_server.BASE_NAME

        def get() -> Served:
            if self.server is None:
                self.server = vllm_server.start(self.model_dir, self.adapters, self.settings, self.seed,
                                                self.log_path)
            return Served(self.server.url, name, self.server.version, self.model_dir, self.max_length())
        return get

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def __enter__(self) -> EngineOnDemand:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_jobs(spec: dict[str, Any], verifier_spec: dict[str, Any] | None, model_dir: Path,
             variants: Sequence[dict[str, Any]], benchmarks: Sequence[str], out_root: Path,
             cache_root: Path | None, engine_log: Path, engine: EngineOnDemand | None = None) -> dict[str, Any]:
    """Each variant's job (sophia.evaluate_job.run_job) on one server, into `out_root/<model_id>/`
    unless the variant names its "out"; every variant is attempted, the first failure is raised at
    the end. Returns each variant's Evaluation. `engine`: a server the caller keeps (and closes)."""
    espec = validate_section(spec["evaluate"], "evaluate", "evaluate")
    if espec["engine"] != "vllm":
        raise ConfigError(f"evaluate.engine: {espec['engine']!r}; this job serves engine vllm "
                          "(sophia.evaluate_job evaluates with hf)")
    adapters = {v["model_id"]: Path(v["adapter"]) for v in variants if v.get("adapter")}
    done: dict[str, Any] = {}
    failed: list[tuple[str, Exception]] = []
    own = engine is None
    engine = engine or EngineOnDemand(model_dir, adapters, espec["vllm"], espec["seed"], engine_log)
    try:
        for v in variants:
            mid = v["model_id"]
            try:
                out = Path(v.get("out") or out_root / mid)
                verifier = Path(v["verifier"]) if v.get("verifier") else None
                done[mid] = evaluate_job.run_job(spec, verifier_spec, mid, model_dir, adapters.get(mid), benchmarks,
                                                 out, verifier, cache_root, v.get("forgetting"),
                                                 served=engine.served(mid))
            except Exception as exc:  # the other variants still run
                log.error("%s failed: %s", mid, exc)
                failed.append((mid, exc))
    finally:
        if own:
            engine.close()
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise EvalError(f"{len(failed)} variants failed: " + "; ".join(f"{m}: {e}" for m, e in failed)
                        ) from failed[0][1]
    return done


def _variants(text: str) -> list[dict[str, Any]]:
    items = json.loads(text)
    if not isinstance(items, list) or not items:
        raise ConfigError("--variants: a non-empty JSON list of variants")
    for i, v in enumerate(items):
        if not isinstance(v, dict) or "model_id" not in v:
            raise ConfigError(f"--variants[{i}]: a mapping with at least model_id")
        f = v.get("forgetting")
        if f:
            f["steps"] = {k: Path(p) for k, p in f["steps"].items()}
            f["data"] = {k: Path(p) for k, p in f["data"].items()}
            f["out"] = Path(f["out"])
    return items


def main() -> None:
    from sophia.cli import load_spec, parse, parser

    p: argparse.ArgumentParser = parser(
        "Every variant of one base model through one vLLM server (evaluate.engine vllm): each variant's "
        "verifier, benchmarks and forgetting losses, as sophia.evaluate_job does them.", threads=0)
    p.add_argument("--model", required=True, type=Path, help="the base (or GPTQ) model directory the server loads")
    p.add_argument("--variants", required=True, help="JSON list of the variants (see the module's help)")
    p.add_argument("--verifier-spec", help="the verifier stage's settings: each variant's verifier is trained first")
    p.add_argument("--benchmark", required=True, action="append", help="a benchmark of the spec; repeat for several")
    p.add_argument("--cache", type=Path, help="result cache root (as sophia.evaluate_job)")
    p.add_argument("--engine-log", required=True, type=Path, help="where the vLLM server's output goes")
    args = parse(p)
    run_jobs(load_spec(args.spec), load_spec(args.verifier_spec) if args.verifier_spec else None, args.model,
             _variants(args.variants), args.benchmark, args.out, args.cache, args.engine_log)


if __name__ == "__main__":  # vLLM's server is a child process: nothing may run on import
    from sophia.cli import main as cli_main

    cli_main(main)
