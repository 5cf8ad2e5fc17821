"""Stage function: the LEVER verifier of one model variant → results/verifier/{model}/ + one MLflow run.

The model samples `n_samples` programs for every MBPP *train* problem (lm-eval's MBPP prompt,
the split redirected; the test split is never read), writes tests for them exactly as in
evaluation, and each program is run on them and labelled by the problem's gold tests in the
sandbox. `verifier.model` picks what reads a candidate: `lm` (LEVER's own design: a LoRA-adapted
copy of the variant's base model with a classification head reads problem, program and execution
result; sophia.verifier.lm) or `features` (scikit-learn on `lever.features`). Problems are split
into train and held-out parts: the held-out AUC, reranked pass@1 and calibration curve measure
the verifier, which is then refit on all candidates. With `lm`, the feature model is measured on
the same split beside it (AUC, reranked pass@1, seconds).

Output: `verifier.json` (model, kind, held-out measures, counts), the model (`verifier.joblib`, or
`adapter/` + `head.pt`; neither for the constant verifier), `calibration.png`, `candidates.jsonl`
(features, label and LM input per candidate), `mlflow_run.json`.
"""

from __future__ import annotations

import argparse
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
from sophia.config import validate_section
from sophia.errors import ConfigError
from sophia.evaluate import cache, code, context, engine, execbatch, harness, lever, rerank, results, sandbox
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.engine import Cuts
from sophia.evaluate.execcache import Cache
from sophia.evaluate.verifier_features import Verifier

log = logging.getLogger(__name__)
SPLIT = "train"  # LEVER's verifier never sees the split that is evaluated
STAGE = "sophia.verifier"


def train_candidates(lm_obj: Any, espec: dict[str, Any],
                     vspec: dict[str, Any]) -> tuple[list[rerank.Problem], dict[str, Any]]:
    """The model's sampled MBPP programs on the train split (prompt and few-shot as lm-eval's task),
    and how many of lm-eval's prompts were cut to fit the window."""
    from lm_eval.tasks import TaskManager

    bench = BENCHMARKS["mbpp"]
    root = Path(espec["dataset_root"]) if espec["dataset_root"] else None
    dataset: dict[str, Any] = {"test_split": SPLIT}
    if root is not None:
        dataset["dataset_path"] = harness.local_dataset(code.builtin_config("mbpp")["dataset_path"], root)
    sampling = {"do_sample": True, "temperature": vspec["temperature"], "top_p": vspec["top_p"]}
    if vspec["max_gen_toks"]:
        sampling["max_gen_toks"] = vspec["max_gen_toks"]
    task = code.task_config(bench, "sampled", vspec["n_samples"], sampling, dataset)
    tm = TaskManager(include_defaults=False, include_path=[str(harness.tasks_root() / bench.task_dir)])
    seed = vspec["seed"]
    res = harness.simple_evaluate(model=lm_obj, tasks=[task], task_manager=tm, limit=vspec["limit"],
                                  log_samples=True, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                  fewshot_random_seed=seed, confirm_run_unsafe_code=True, bootstrap_iters=0)
    return rerank.sampled_problems(res["samples"]), context.truncation(res["samples"], lm_obj)


def held_out_split(n_problems: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Problem indices (train, held-out): whole problems, so no problem's candidates straddle it."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n_problems).tolist()
    n_held = max(1, round(share * n_problems)) if n_problems > 1 else 0
    return sorted(order[n_held:]), sorted(order[:n_held])


@dataclass
class Fitted:
    """A verifier fit on some problems: P(correct) of the candidates of problem j, and its cost."""
    kind: str
    predict: Callable[[int], list[float]]
    model: Any
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)


def fit(model: str, vspec: dict[str, Any], problems: list[rerank.Problem], idx: Sequence[int],
        rows: list[list[dict[str, float]]], texts: list[list[str]], base_model: Path, dev: torch.device,
        cuts: Cuts) -> Fitted:
    """`model` (features or lm) fit on the candidates of problems `idx`. One class only: the constant
    verifier, whatever the model (nothing to learn)."""
    start = time.perf_counter()
    y = [c for i in idx for c in problems[i].correct]
    if model == "features" or len(set(y)) < 2:
        v = Verifier.fit(vspec["kind"], [f for i in idx for f in rows[i]], y, vspec["seed"])
        return Fitted(v.kind, lambda j: v.predict_rows(rows[j]), v, time.perf_counter() - start)
    from sophia.verifier import lm as lm_train

    clf, stats = lm_train.train(base_model, [t for i in idx for t in texts[i]], y, vspec["lm"], vspec["seed"],
                                dev, cuts)
    return Fitted(clf.kind, lambda j: clf.predict_texts(texts[j], cuts), clf, time.perf_counter() - start, stats)


def assess(model: str, vspec: dict[str, Any], problems: list[rerank.Problem], rows: list[list[dict[str, float]]],
           texts: list[list[str]], base_model: Path, dev: torch.device, cuts: Cuts) -> dict[str, Any]:
    """Held-out AUC, Brier score, calibration and reranked pass@1 (LEVER's pick, mean over held-out
    problems) of a verifier fit on the other problems; the seconds it took (None where undefined)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_auc_score

    train, held = held_out_split(len(problems), vspec["held_out"], vspec["seed"])
    hy = [c for i in held for c in problems[i].correct]
    out: dict[str, Any] = {"model": model, "train_problems": len(train), "held_out_problems": len(held),
                           "held_out_candidates": len(hy), "held_out_positives": int(sum(hy)), "auc": None,
                           "calibration": None, "reranked_pass@1": None}
    if not train or not held or not any(problems[i].completions for i in train):
        out["note"] = "too few problems for a held-out split"
        return out
    fitted = fit(model, vspec, problems, train, rows, texts, base_model, dev, cuts)
    start = time.perf_counter()
    per_problem = [fitted.predict(j) for j in held]
    p = [v for probs in per_problem for v in probs]
    out.update({"held_out_kind": fitted.kind, "seconds": fitted.seconds + time.perf_counter() - start,
                **({"training": fitted.stats} if fitted.stats else {})})
    picks = [lever.pass_at_1([lever.execution_key(r.error, r.codes) for r in problems[j].results], problems[j].programs,
                             [lp for lp, _ in problems[j].logprobs], probs, problems[j].correct)
             for j, probs in zip(held, per_problem, strict=True)]
    picks = [v for v in picks if v is not None]
    out["reranked_pass@1"] = sum(picks) / len(picks) if picks else None
    if 0 < sum(hy) < len(hy):
        out["auc"] = float(roc_auc_score([int(v) for v in hy], p))
        observed, predicted = calibration_curve([int(v) for v in hy], p, n_bins=10, strategy="uniform")
    else:
        out["note"] = "held-out candidates are all of one class: AUC undefined"
        observed, predicted = [sum(hy) / len(hy)], [sum(p) / len(p)]
    out["calibration"] = {"predicted": [float(v) for v in predicted], "observed": [float(v) for v in observed]}
    out["brier"] = float(sum((pi - int(yi)) ** 2 for pi, yi in zip(p, hy, strict=True)) / len(hy))
    return out


def calibration_plot(cal: dict[str, Any] | None, path: Path, title: str) -> None:
    """Reliability diagram: observed share correct against the predicted probability, per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    if cal:
        ax.plot(cal["predicted"], cal["observed"], marker="o", label="verifier (held-out)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(correct)")
    ax.set_ylabel("observed share correct")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cache_key(spec: dict[str, Any], model_id: str, model_dir: Path, adapter: Path | None,
              device: str) -> str | None:
    """The verifier folder's key in a result cache (sophia.evaluate.cache): its settings, the stage's
    code, the input runs, the local data, the package versions and the device; None when an input
    has no run record. A rerun of its job (the variant job reruns whenever any of its benchmarks'
    settings change) then restores the same folder, run record included, so the code benchmarks
    that rerank with it keep their own cache keys too."""
    espec = spec["evaluate"]
    root = Path(espec["dataset_root"]) if espec.get("dataset_root") else None
    identity = cache.job_identity({"model": model_dir, "adapter": adapter}, root, device, stage=STAGE)
    return cache.content_key({"stage": "verifier", "model_id": model_id, "spec": spec},
                             ["model", "adapter"], identity)


def run_stage(spec: dict[str, Any], model_id: str, model_dir: Path, adapter: Path | None, out: Path,
              cache_dir: Path | None = None, variant: lm.SharedVariant | None = None) -> dict[str, Any]:
    """Train the variant's verifier into `out`, or restore it from `cache_dir` when nothing it depends
    on changed. `variant`: the model as the job shares it (sophia.evaluate_job), else loaded here."""
    espec = validate_section(spec["evaluate"], "evaluate", "evaluate")
    vspec = validate_section(spec["verifier"], "verifier", "verifier")
    if vspec["n_samples"] < 2:
        raise ConfigError("verifier.n_samples: LEVER compares candidates, need at least 2")
    dev = lm.device()
    key = cache_key(spec, model_id, model_dir, adapter, dev.type) if cache_dir is not None else None
    entry = cache.lookup(cache_dir, key) if cache_dir is not None and key else None
    if entry is not None:
        cache.restore_folder(entry, key, out)
        info = json.loads((out / "verifier.json").read_text(encoding="utf-8"))
        log.info("verifier %s: cached (%s)", model_id, entry.name[:12])
        return info
    rspec = espec["rerank"]
    sb = espec["sandbox"]
    isolation = sandbox.resolve_isolation(sb["isolation"], sb["allow_unisolated"])
    box = sandbox.Sandbox(sandbox.Limits(timeout_s=sb["timeout_s"], memory_mb=sb["memory_mb"],
                                         max_processes=sb["max_processes"]), isolation)
    box.self_test()
    inputs: dict[str, Path] = {"model": model_dir, **({"adapter": adapter} if adapter else {})}
    variant = variant or lm.SharedVariant(model_dir, adapter, dev)
    params = {"model": model_id, "verifier": vspec, "rerank": rspec}
    with tracking.stage_run("verifier", model_id, params, inputs=inputs) as run, atomic_dir(out) as tmp:
        start = time.perf_counter()
        model, tok = variant.get()
        lm_obj = harness.hf_lm(model, tok, espec["batch_size"])
        problems, generation_cut = train_candidates(lm_obj, espec, vspec)
        if vspec["gold_positives"]:  # a small model may solve no train problem: nothing to learn from
            for p in problems:
                p.completions.append(p.doc["code"])
        gold = box.run_many([code.program(p.doc, c) for p in problems for c in p.completions], sb["workers"])
        labels = iter(o.passed for o in gold)
        for p in problems:
            p.correct = [next(labels) for _ in p.completions]
        eng = engine.HFEngine(model, tok, espec["batch_size"])
        runner = execbatch.Runner(box, rspec["test_timeout_s"], Cache(rspec["cache"]), sb["workers"])
        tokens = rerank.measure(problems, eng, runner, rspec, vspec["seed"])
        rows = [rerank.features(p, rspec["weight"]) for p in problems]
        texts = [p.verifier_texts() for p in problems]
        held = assess(vspec["model"], vspec, problems, rows, texts, model_dir, dev, eng.cuts)
        compared = ({"features": assess("features", vspec, problems, rows, texts, model_dir, dev, eng.cuts)}
                    if vspec["model"] == "lm" else {})
        fitted = fit(vspec["model"], vspec, problems, list(range(len(problems))), rows, texts, model_dir, dev,
                     eng.cuts)
        cut = gate_cuts(generation_cut, eng.cuts, espec["max_truncated_share"])
        labels_all = [c for p in problems for c in p.correct]
        info = {"model": model_id, "split": SPLIT, "problems": len(problems), "candidates": len(labels_all),
                "positives": int(sum(labels_all)), "valid_tests": sum(len(p.tests) for p in problems),
                "gold_positives": vspec["gold_positives"],
                "requested_model": vspec["model"], "requested_kind": vspec["kind"], "held_out": held,
                "compared": compared, "training": fitted.stats or None, "truncation": cut,
                "execution": runner.stats.to_dict(), "tokens": tokens, "engine": eng.name,
                "seconds": time.perf_counter() - start}
        if isinstance(fitted.model, Verifier):
            fitted.model.save(tmp, info)
        else:
            fitted.model.save(tmp, info, model_dir)
        calibration_plot(held.get("calibration"), tmp / "calibration.png", f"verifier {model_id} (held-out)")
        with open(tmp / "candidates.jsonl", "w", encoding="utf-8") as fh:
            for p, feats, inputs_ in zip(problems, rows, texts, strict=True):
                for f, ok, text in zip(feats, p.correct, inputs_, strict=True):
                    fh.write(json.dumps({"problem": p.id, "correct": ok, "features": f, "lm_input": text}) + "\n")
        run.write_record(tmp, "verifier", model_id)
        run.log_metrics(metrics(info))
        run.set_tags({"sophia.model": model_id, "sophia.verifier.kind": fitted.kind,
                      "sophia.verifier.model": vspec["model"]})
        tracking.log_output(run, tmp, out, ("verifier.json", "calibration.png"))
    log.info("verifier %s: %s on %d candidates (%d correct), held-out AUC %s", model_id, fitted.kind,
             len(labels_all), sum(labels_all), held.get("auc"))
    if key is not None:
        try:
            cache.store(cache_dir, key, out)
        except OSError as exc:  # the output is complete; only a later rerun loses the shortcut
            log.warning("verifier %s: not cached (%s)", model_id, exc)
    return info


def gate_cuts(generation: dict[str, Any], cuts: Cuts, allowed: float) -> dict[str, Any]:
    """Every prompt the verifier cut to fit the window (lm-eval's MBPP prompts, test prompts,
    likelihood pairs, verifier inputs), gated by evaluate.max_truncated_share."""
    own = cuts.report(rerank.PURPOSES)
    per = {"programs": {"requests": generation["requests"], "truncated": generation["truncated"]}, **own["per_task"]}
    requests = sum(v["requests"] for v in per.values())
    truncated = sum(v["truncated"] for v in per.values())
    cut = {**own, "requests": requests, "truncated": truncated, "share": truncated / requests if requests else 0.0,
           "per_task": per}
    results.check_truncation("verifier", cut, allowed)
    return {**cut, "allowed": allowed}


def metrics(info: dict[str, Any]) -> dict[str, float]:
    """The verifier run's MLflow metrics: counts, cost, and each assessed model's held-out measures."""
    out = {"candidates": info["candidates"], "positives": info["positives"], "valid_tests": info["valid_tests"],
           "seconds": info["seconds"], "truncated_share": info["truncation"]["share"],
           **{f"tokens.{k}": float(v) for k, v in info["tokens"].items()},
           **{f"execution.{k}": float(v) for k, v in info["execution"].items() if isinstance(v, (int, float))}}
    for prefix, held in (("held_out", info["held_out"]), *((f"held_out.{m}", h) for m, h in info["compared"].items())):
        for name in ("auc", "brier", "reranked_pass@1", "seconds"):
            if held.get(name) is not None:
                out[f"{prefix}.{name.replace('@', '_at_')}"] = float(held[name])
    return out


def main() -> None:
    from sophia.cli import add_variant, load_spec, parse, parser

    p: argparse.ArgumentParser = parser("Train the LEVER verifier of one model variant (stage verifier).", threads=0)
    add_variant(p)
    p.add_argument("--cache", type=Path, help="result cache directory: an unchanged verifier is restored "
                                              "from it instead of trained (default: no cache)")
    args = parse(p)
    run_stage(load_spec(args.spec), args.model_id, args.model, args.adapter, args.out, args.cache)
