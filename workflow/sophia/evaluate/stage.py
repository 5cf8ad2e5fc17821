"""Stage function: one model variant on one or more benchmarks → `<out>/<benchmark>/` each, with one
MLflow run per benchmark (`evaluate:<variant>:<benchmark>`).

The model loads once for all benchmarks (its start-up, not the scoring, dominated a job per
benchmark); each benchmark still gets its own atomic output folder, run, lineage and LoggedModel
filing, exactly as when it ran alone. With a cache directory, a benchmark whose settings, inputs and
stage code are unchanged is restored from the cache instead of computed (see `cache`). What one
folder holds is described in `results`.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sophia import lm, tracking
from sophia.atomic import atomic_dir
from sophia.config import check_pass_at_k, validate_section
from sophia.errors import ConfigError, EvalError
from sophia.evaluate import (
    backends,
    cache,
    context,
    harness,
    languages,
    multipl_e,
    multipl_e_fixture,
    protocol,
    rerank,
    results,
    sandbox,
    selfdebug,
    toolchain,
    verifier_lm,
    vllm_server,
)
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.results import EXECUTIONS, SAMPLES, SCORES
from sophia.lm import load_variant as load_model

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What one call did: each benchmark's `scores.json` content, and which were cache hits."""

    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    """The variant, loaded once, and what every benchmark run of it shares."""

    model_id: str
    model: Any
    tok: Any
    dev: torch.device
    inputs: dict[str, Path]
    box: sandbox.Sandbox | None
    verifier: Path | None
    _verifier: Any = None
    # evaluate.engine vllm: the variant's served name on the job's vLLM server (model is then None)
    served: Callable[[], backends.Served] | None = None

    def backend(self, espec: dict[str, Any]) -> backends.Backend:
        """The engine one benchmark run scores with (a fresh lm-eval model per benchmark)."""
        if self.served is not None:
            return backends.vllm(self.served(), self.tok, espec["batch_size"], espec["seed"])
        return backends.hf(self.model, self.tok, espec["batch_size"])

    def load_verifier(self) -> Any:
        """The LEVER verifier, loaded on first use (an LM verifier loads a model of its own)."""
        if self._verifier is None and self.verifier is not None:
            self._verifier = verifier_lm.load(self.verifier, self.dev)
        return self._verifier


def make_sandbox(espec: dict[str, Any]) -> sandbox.Sandbox:
    """The code benchmarks' sandbox, self-tested before any generation is spent."""
    sb = espec["sandbox"]
    isolation = sandbox.resolve_isolation(sb["isolation"], sb["allow_unisolated"])
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=sb["timeout_s"], memory_mb=sb["memory_mb"],
                                         max_processes=sb["max_processes"], disk_mb=sb["disk_mb"]), isolation)
    box.self_test()
    return box


def run_stage(spec: dict[str, Any], model_id: str, model_dir: Path, adapter: Path | None,
              benchmarks: Sequence[str], out: Path, verifier: Path | None = None,
              cache_dir: Path | None = None, variant: lm.SharedVariant | None = None,
              served: Callable[[], backends.Served] | None = None) -> Evaluation:
    """Evaluate the variant on `benchmarks` into `out/<benchmark>/`. Every benchmark is attempted:
    one that fails leaves no folder (and no cache entry) while the others finish; the first failure
    is raised at the end, so a rerun only recomputes what failed. `variant`: the model as another
    stage of the same job already loaded it (sophia.evaluate_job), else it is loaded here. `served`
    (evaluate.engine vllm): the variant on the job's vLLM server, started on first call, so a job
    whose benchmarks all come from the cache starts no engine."""
    espec = validate_section(spec["evaluate"], "evaluate", "evaluate")
    names = list(dict.fromkeys(benchmarks))
    if not names:
        raise ConfigError("evaluate: no benchmark given")
    unknown = [b for b in names if b not in espec["benchmarks"]]
    if unknown:
        raise ConfigError(f"evaluate.benchmarks: {', '.join(repr(b) for b in unknown)} "
                          f"{'is' if len(unknown) == 1 else 'are'} not configured (have: "
                          f"{', '.join(espec['benchmarks'])})")
    for b in names:
        if BENCHMARKS[b].code:
            check_pass_at_k(b, espec["benchmarks"][b])  # before any generation
    selfdebug.check(espec["selfdebug"])
    inputs: dict[str, Path] = {"model": model_dir, **({"adapter": adapter} if adapter is not None else {})}
    root = Path(espec["dataset_root"]) if espec["dataset_root"] else None
    done = Evaluation()
    keys: dict[str, str | None] = {}
    dev = lm.device()
    if cache_dir is not None:
        identity = cache.job_identity({**inputs, "verifier": verifier}, root, dev.type)
        if espec["engine"] == "vllm":
            identity["packages"]["vllm"] = vllm_server.installed_release(Path(espec["vllm"]["python"]))
        for b in names:
            keys[b] = cache.key(espec, model_id, b, identity)
            entry = cache.lookup(cache_dir, keys[b]) if keys[b] else None
            if keys[b] is None:
                log.info("%s on %s: not cached (an input has no %s)", model_id, b, tracking.RUN_RECORD)
            elif entry is not None:
                # No new MLflow run: the entry's mlflow_run.json names the run that computed this very
                # result from the same inputs, settings and code; a second run would duplicate its
                # scores under the variant's LoggedModel and make `evaluate:<variant>:<benchmark>`
                # ambiguous in the UI and in lineage lookups.
                done.scores[b] = cache.restore(entry, keys[b], out / b)
                done.cached.append(b)
                log.info("%s on %s: cached (%s, run %s)", model_id, b, entry.name[:12],
                         json.loads((out / b / tracking.RUN_RECORD).read_text())["run_id"])
    todo = [b for b in names if b not in done.scores]
    if not todo:
        return done
    box = make_sandbox(espec) if any(BENCHMARKS[b].code for b in todo) else None
    langs = sorted({BENCHMARKS[b].language for b in todo if BENCHMARKS[b].language})
    if box is not None and langs:  # every toolchain proven in the sandbox before any generation
        languages.check_installed(langs, "evaluate.benchmarks")
        multipl_e.self_test(langs, box, multipl_e_fixture.programs)
    if espec["engine"] == "vllm":
        if served is None:
            raise ConfigError("evaluate.engine: vllm runs through sophia.evaluate_vllm_job (one vLLM server "
                              "per base model), not this stage's CLI")
        model, tok = None, backends.tokenizer(model_dir)
    else:
        variant = variant or lm.SharedVariant(model_dir, adapter, dev, loader=load_model)
        model, tok = variant.get()
        served = None
    job = Loaded(model_id, model, tok, dev, inputs, box, verifier, served=served)
    failed: list[tuple[str, Exception]] = []
    # Everything so far (the imports, the model) lives as long as the job: the full collection after
    # each benchmark then skips it instead of walking it again.
    gc.freeze()
    try:
        for b in todo:
            try:
                done.scores[b] = evaluate_benchmark(espec, job, b, out / b)
            except Exception as exc:  # the others still run: their results reach the cache
                log.error("%s on %s failed: %s", model_id, b, exc)
                failed.append((b, exc))
                continue
            finally:
                gc.collect()  # lm-eval's per-benchmark state, before the next benchmark allocates
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            done.computed.append(b)
            if cache_dir is not None and keys.get(b):
                try:
                    cache.store(cache_dir, keys[b], out / b)
                except OSError as exc:  # the output is complete; only a later rerun loses the shortcut
                    log.warning("%s on %s: not cached (%s)", model_id, b, exc)
    finally:
        gc.unfreeze()  # an in-process caller (tests, notebooks) gets its collector back whole
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise EvalError(f"{model_id}: {len(failed)} benchmarks failed: "
                        + "; ".join(f"{b}: {exc}" for b, exc in failed)) from failed[0][1]
    return done


def evaluate_benchmark(espec: dict[str, Any], job: Loaded, benchmark: str, out: Path) -> dict[str, Any]:
    """One benchmark on the loaded variant: its folder, its MLflow run; returns scores.json's content."""
    model_id, dev, box = job.model_id, job.dev, job.box
    bench = BENCHMARKS[benchmark]
    bspec = espec["benchmarks"][benchmark]
    root = Path(espec["dataset_root"]) if espec["dataset_root"] else None
    box = box if bench.code else None
    verifier = job.verifier if cache.uses_verifier(espec, benchmark) else None
    params = {"model": model_id, "benchmark": benchmark, **cache.benchmark_spec(espec, benchmark)}
    with tracking.stage_run("evaluate", f"{model_id}:{benchmark}", params, inputs=job.inputs) as run, \
            atomic_dir(out) as tmp:
        backend = job.backend(espec)  # engine vllm: starts the server on first use, outside the timing
        start = time.perf_counter()
        lm_obj = backend.lm
        res = harness.evaluate(lm_obj, bench, bspec, root, espec["seed"], confirm_unsafe_code=bench.code)
        seconds = time.perf_counter() - start
        samples = res["samples"]
        n_gen = backend.generated()
        cut = context.truncation(samples, lm_obj)
        log.info("%s on %s: %d of %d requests truncated to fit %d tokens (%.1f %%)", model_id, benchmark,
                 cut["truncated"], cut["requests"], cut["max_length"], 100 * cut["share"])
        results.check_truncation(benchmark, cut, espec["max_truncated_share"])
        limits = (toolchain.describe(bench.language, box.limits) if box and bench.language
                  else vars(box.limits) if box else None)
        scores: dict[str, Any] = {
            "model": model_id, "benchmark": benchmark, "group": bench.group, "primary": bench.metric,
            "device": str(dev), "engine": backend.label, "dataset_root": str(root) if root else None, "settings": bspec,
            "tasks": sorted(samples), "n_shot": res.get("n-shot", {}),
            "lm_eval_results": res["results"], "lm_eval_version": res.get("lm_eval_version"),
            "max_length": cut["max_length"], "truncation": {**cut, "allowed": espec["max_truncated_share"]},
            "truncated_requests": cut["truncated"], "truncated_share": cut["share"],
            "execution_limits": limits,
            "eval_seconds": seconds, "generated_tokens": n_gen,
            "generated_tokens_per_second": n_gen / seconds if n_gen else None,
        }
        result = results.score(bench, bspec, samples, espec["confidence"], box, espec["sandbox"]["workers"])
        records = result.pop("records", None)
        scores.update(result)
        if records is not None and bench.language is None:  # CodeT, LEVER, self-debugging: Python only
            assert box is not None
            eng = backend.engine()
            measured = rerank.attach(scores, tmp, samples, records, eng, box, espec,
                                     job.load_verifier() if verifier is not None else None,
                                     transfer=benchmark != rerank.VERIFIER_BENCHMARK)
            selfdebug.attach(scores, samples, records, measured, benchmark, eng, box, espec)
        if records is not None:
            with open(tmp / EXECUTIONS, "w", encoding="utf-8") as fh:
                for r in records:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        scores["score"] = scores["metrics"][bench.metric]
        scores["protocol"] = protocol.card(bench, bspec, res, scores["score"]["n"], cut,
                                           espec["max_truncated_share"], limits, scores["dataset_root"])
        scores["protocol"].update(protocol.execution_in_the_loop(scores))
        scores["protocol"]["engine"] = backend.label
        results.write_samples(tmp / SAMPLES, samples)
        (tmp / SCORES).write_text(json.dumps(scores, indent=2, default=str) + "\n", encoding="utf-8")
        run.write_record(tmp, "evaluate", f"{model_id}:{benchmark}")
        # Filed under the variant's LoggedModel and the benchmark set: the Models tab's comparison.
        adapter = job.inputs.get("adapter")
        logged_model = tracking.model_id_of(adapter or job.inputs["model"], model_id)
        bench_set = results.benchmark_dataset(benchmark, samples, res.get("configs") or {})
        run.log_datasets([(bench_set, "evaluation")], model_ids=(logged_model,) if logged_model else ())
        metrics = results.mlflow_metrics(scores)
        scored = {k: v for k, v in metrics.items() if k in results.model_metric_names(scores)}
        run.log_metrics({k: v for k, v in metrics.items() if k not in scored})
        run.log_metrics(scored, model_id=logged_model, dataset=bench_set)
        run.log_series(results.selfdebug_series(scores))
        run.log_params({**protocol.params(scores["protocol"]),
                        **{f"execution.{k}": v for k, v in (limits or {}).items()}})
        s = scores["score"]
        interval = (f"{round(100 * espec['confidence'])} % interval {s['ci_low']:.3f}-{s['ci_high']:.3f}, "
                    if s.get("ci_low") is not None else "")
        value = "n/a" if s["value"] is None else f"{s['value']:.3f}"
        run.describe(f"`{model_id}` on {benchmark}: {bench.metric} = {value} ({interval}n = {s['n']}) "
                     f"in {seconds:.0f} s.",
                     {"score": value, "n": s["n"], "truncated_requests": scores["truncated_requests"]})
        run.set_tags({"sophia.model": model_id, "sophia.benchmark": benchmark, "sophia.group": bench.group,
                      **({"sophia.sandbox.isolation": box.isolation} if box else {})})
        tracking.log_output(run, tmp, out, (SCORES, SAMPLES, EXECUTIONS))
    s = scores["score"]
    log.info("%s on %s: %s = %s (n=%d) in %.1f s", model_id, benchmark, bench.metric, s["value"], s["n"], seconds)
    return scores


def main() -> None:
    from sophia.cli import add_variant, load_spec, parse, parser

    p: argparse.ArgumentParser = parser(
        "Evaluate one model variant on one or more benchmarks (stage evaluate): the model loads once, "
        "each benchmark is written to <out>/<benchmark>/ with its own MLflow run.", threads=0)
    add_variant(p)
    p.add_argument("--benchmark", required=True, action="append", choices=sorted(BENCHMARKS),
                   help="a benchmark configured in the spec; repeat for several")
    p.add_argument("--verifier", type=Path, help="the verifier stage's output, for LEVER (code benchmarks)")
    p.add_argument("--cache", type=Path, help="result cache directory: unchanged benchmarks are restored "
                                              "from it instead of computed (default: no cache)")
    args = parse(p)
    run_stage(load_spec(args.spec), args.model_id, args.model, args.adapter, args.benchmark, args.out,
              args.verifier, args.cache)
