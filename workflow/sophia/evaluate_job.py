"""The job of rule `evaluate`: one model variant's LEVER verifier (stage verifier), then its evaluation
(stage evaluate), in one process that loads the model at most once.

Why one job for two stages: as a job of its own, the verifier would spend most of its time importing
torch, transformers, peft, gptqmodel and MLflow and loading the model that the variant's evaluate
job then imports and loads again. Each stage keeps its own output folder, MLflow run and result
cache entry, keyed by its own code's digest and settings: the rule reruns the job when either
stage's code or settings change, and the caches restore every output whose own inputs did not, so
an evaluate-only change retrains no verifier, and a verifier change recomputes only the code
benchmarks that rerank with it.

    python -m sophia.evaluate_job --spec EVAL_SPEC [--verifier-spec VERIFIER_SPEC] --verifier DIR \\
        --model-id ID --model DIR [--adapter DIR] --benchmark B [...] [--cache DIR] --out DIR
        [--forgetting-spec SPEC --forgetting-out DIR --forgetting-data DATASET=DIR ... --forgetting-step LABEL=DIR ...]

Without `--verifier-spec`, `--verifier` is read (a verifier made elsewhere), as `sophia.evaluate` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sophia import lm
from sophia.evaluate import stage as evaluate_stage
from sophia.evaluate.backends import Served
from sophia.forgetting import stage as forgetting_stage
from sophia.verifier import stage as verifier_stage


def run_job(spec: dict[str, Any], verifier_spec: dict[str, Any] | None, model_id: str, model_dir: Path,
            adapter: Path | None, benchmarks: Sequence[str], out: Path, verifier: Path | None,
            cache_root: Path | None = None, forgetting: dict[str, Any] | None = None,
            served: Callable[[], Served] | None = None) -> evaluate_stage.Evaluation:
    """Train (or restore) the verifier into `verifier` when `verifier_spec` is given, then evaluate
    `benchmarks` into `out/<benchmark>/`, then (with `forgetting`: `{"spec", "steps", "data", "out"}`)
    the held-out losses of the forgetting matrix. Caches: `cache_root/{verifier,evaluate,forgetting}/`.
    `served` (evaluate.engine vllm): the variant on the vLLM server of its base model's job
    (sophia.evaluate_vllm_job)."""
    variant = lm.SharedVariant(model_dir, adapter, lm.device(), loader=evaluate_stage.load_model)
    cache = {part: cache_root / part if cache_root is not None else None
             for part in ("verifier", "evaluate", "forgetting")}
    if verifier_spec is not None:
        if verifier is None:
            raise ValueError("a verifier spec needs the verifier's output folder")
        verifier_stage.run_stage(verifier_spec, model_id, model_dir, adapter, verifier, cache["verifier"], variant)
    done = evaluate_stage.run_stage(spec, model_id, model_dir, adapter, benchmarks, out, verifier, cache["evaluate"],
                                    variant, served)
    if forgetting is not None:
        forgetting_stage.run_stage(forgetting["spec"], model_id, model_dir, adapter, forgetting["steps"],
                                   forgetting["data"], forgetting["out"], cache["forgetting"], variant)
    return done


def main() -> None:
    from sophia.cli import add_variant, load_spec, parse, parser

    p: argparse.ArgumentParser = parser(
        "One model variant's job (rule evaluate): its LEVER verifier, then each benchmark into "
        "<out>/<benchmark>/, the model loaded once.", threads=0)
    p.add_argument("--verifier-spec", help="the verifier stage's settings (inline JSON or a YAML file): "
                                           "train it into --verifier first")
    p.add_argument("--verifier", type=Path, help="the variant's verifier folder: written with --verifier-spec, "
                                                 "else read (LEVER)")
    add_variant(p)
    p.add_argument("--benchmark", required=True, action="append", help="a benchmark of the spec; repeat for several")
    p.add_argument("--cache", type=Path, help="result cache root (verifier/ and evaluate/ under it): unchanged "
                                              "outputs are restored instead of computed (default: no cache)")
    p.add_argument("--forgetting-spec", help="the forgetting matrix's settings (sophia.forgetting): measure the "
                                             "held-out losses into --forgetting-out")
    p.add_argument("--forgetting-out", type=Path, help="the variant's forgetting folder (results/forgetting/<model>)")
    forgetting_stage.add_arguments(p, "forgetting-")
    args = parse(p)
    if args.forgetting_spec and args.forgetting_out is None:
        p.error("--forgetting-spec needs --forgetting-out (the folder to write)")
    if args.verifier_spec and args.verifier is None:
        p.error("--verifier-spec needs --verifier (the folder to write)")
    forgetting = None
    if args.forgetting_spec:
        steps, data = forgetting_stage.parse_pairs(args, "forgetting-")
        forgetting = {"spec": load_spec(args.forgetting_spec), "steps": steps, "data": data, "out": args.forgetting_out}
    run_job(load_spec(args.spec), load_spec(args.verifier_spec) if args.verifier_spec else None, args.model_id,
            args.model, args.adapter, args.benchmark, args.out, args.verifier, args.cache, forgetting)


if __name__ == "__main__":
    from sophia.cli import main as cli_main

    cli_main(main)
