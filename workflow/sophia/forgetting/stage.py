"""Stage function: the held-out answer loss of one model variant, and of the intermediate curriculum
steps its job owns (sophia.forgetting.plan), on every curriculum dataset's eval split →
`<out>/losses.jsonl` (one line per row and example) and `<out>/forgetting.json` (per row and split:
token-weighted mean loss, tokens, examples), one MLflow run whose per-split losses are filed under the
variant's LoggedModel (`heldout_loss.<dataset>.<task>`, one column per dataset in the Models tab).

It runs inside the variant's evaluate job (sophia.evaluate_job), on the model that job already loaded;
intermediate steps are LoRA adapters added to that same model and removed after. With a cache
directory an unchanged output (same settings, data, code, input runs) is restored without loading.

    python -m sophia.forgetting --spec SPEC --model-id ID --model DIR [--adapter DIR]
        [--step LABEL=DIR ...] --data DATASET=DIR [...] [--cache DIR] --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sophia import lm, records, tracking
from sophia.atomic import atomic_dir
from sophia.errors import ConfigError
from sophia.evaluate import cache
from sophia.forgetting import losses

log = logging.getLogger(__name__)

STAGE = "sophia.forgetting"
LOSSES = "losses.jsonl"
SUMMARY = "forgetting.json"


def eval_rows(splits: Mapping[str, list[str]], data: Mapping[str, Path]) -> list[dict[str, Any]]:
    """Every eval example of the curricula's datasets, with its split (`dataset/task`) and language."""
    missing = [d for d in splits if d not in data]
    if missing:
        raise ConfigError(f"forgetting: no data folder given for dataset(s) {', '.join(missing)}")
    out = []
    for dataset, tasks in splits.items():
        for task in tasks:
            for r in records.read(Path(data[dataset]) / task / "eval.jsonl"):
                out.append({"split": f"{dataset}/{task}", "id": r["id"], "language": r.get("language"),
                            "prompt": r["prompt"], "completion": r["completion"]})
    return out


def summarise(per_example: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """split → token-weighted mean loss (the fine-tuning objective's eval loss), tokens, examples
    scored and examples whose answer lay beyond the window (dropped)."""
    out: dict[str, dict[str, Any]] = {}
    for e in per_example:
        for split in (e["split"], *([f"{e['split']}/{e['language']}"] if e["language"] else [])):
            s = out.setdefault(split, {"nll": 0.0, "tokens": 0, "examples": 0, "dropped": 0})
            if e["tokens"]:
                s["nll"] += e["nll"]
                s["tokens"] += e["tokens"]
                s["examples"] += 1
            else:
                s["dropped"] += 1
    for s in out.values():
        s["loss"] = s.pop("nll") / s["tokens"] if s["tokens"] else None
    return out


@contextmanager
def adapter_active(model: Any, label: str, path: Path | None) -> Iterator[None]:
    """The model as the row sees it: its own adapter (path None), or a step's adapter added beside
    it for the duration (the GPTQ base stays loaded once)."""
    if path is None:
        yield
        return
    if not hasattr(model, "load_adapter") or not hasattr(model, "active_adapter"):
        raise ConfigError(f"forgetting: step {label} needs a LoRA variant to add its adapter to")
    own = model.active_adapter
    name = re.sub(r"\W", "_", label)  # module names: no dots (step:tiny_codegen/tiny_summary)
    model.load_adapter(str(path), adapter_name=name)
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(own)
        model.delete_adapter(name)
        model.eval()


def measure(model: Any, tok: Any, rows: list[dict[str, Any]], window: int, batch_size: int) -> list[dict[str, Any]]:
    """Per example: split, id, language, nll, tokens."""
    context = getattr(model.config, "max_position_embeddings", None) or window
    got = losses.answer_losses(model, tok, rows, min(window, context), batch_size)
    return [{"split": r["split"], "id": r["id"], "language": r["language"], **g}
            for r, g in zip(rows, got, strict=True)]


def cache_key(spec: Mapping[str, Any], model_id: str, inputs: Mapping[str, Path | None],
              data: Mapping[str, Path], device: str) -> str | None:
    identity = cache.job_identity(inputs, None, device, stage=STAGE)
    what = {"stage": "forgetting", "model_id": model_id, "spec": spec,
            "data": {d: cache.data_digest(Path(p)) for d, p in sorted(data.items())}}
    return cache.content_key(what, list(inputs), identity)


def run_stage(spec: dict[str, Any], model_id: str, model_dir: Path, adapter: Path | None,
              steps: Mapping[str, Path], data: Mapping[str, Path], out: Path, cache_dir: Path | None = None,
              variant: lm.SharedVariant | None = None) -> dict[str, Any]:
    """Measure the rows of `spec["rows"]` (the variant's own first, then `steps`' adapters) into `out`;
    returns forgetting.json's content."""
    fspec = spec["forgetting"]
    rows = eval_rows(spec["splits"], data)
    unknown = [r["label"] for r in spec["rows"][1:] if r["label"] not in steps]
    if unknown:
        raise ConfigError(f"forgetting: no adapter given for step(s) {', '.join(unknown)} (--step LABEL=DIR)")
    inputs: dict[str, Path | None] = {"model": model_dir, "adapter": adapter,
                                      **{f"step.{k}": Path(v) for k, v in steps.items()}}
    inputs = {k: v for k, v in inputs.items() if v is not None}
    dev = lm.device()
    key = cache_key(spec, model_id, inputs, data, dev.type) if cache_dir is not None else None
    entry = cache.lookup(cache_dir, key) if cache_dir is not None and key else None
    if entry is not None:
        cache.restore_folder(entry, key, out)
        log.info("%s: held-out losses restored from the cache (%s)", model_id, entry.name[:12])
        return json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    variant = variant or lm.SharedVariant(model_dir, adapter, dev)
    model, tok = variant.get()
    digest = losses.tokenizer_digest(tok)
    with tracking.stage_run("forgetting", model_id, spec, inputs=inputs) as run, atomic_dir(out) as tmp:
        summary: dict[str, Any] = {"model_id": model_id, "window": fspec["max_length"] or spec["window"],
                                   "tokenizer": digest, "rows": {}}
        with open(tmp / LOSSES, "w", encoding="utf-8") as fh:
            for row in spec["rows"]:
                label = row["label"]
                with adapter_active(model, label, steps.get(label) if label != model_id else None):
                    per = measure(model, tok, rows, summary["window"], fspec["batch_size"])
                for e in per:
                    fh.write(json.dumps({"row": label, **e}, ensure_ascii=False) + "\n")
                summary["rows"][label] = {"chain": row["chain"], "previous": row.get("previous"),
                                          "splits": summarise(per)}
                log.info("%s: %s", label, ", ".join(f"{s} {v['loss']:.4f}" for s, v in
                                                     summary["rows"][label]["splits"].items() if v["loss"] is not None))
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        run.write_record(tmp, "forgetting", model_id)
        log_metrics(run, summary, rows, inputs, data)
        own = summary["rows"][model_id]["splits"]
        run.describe(f"`{model_id}`: held-out answer loss (mean token NLL, nats) on each curriculum dataset's "
                     "eval split.", {s: v["loss"] for s, v in own.items() if "/" not in s.split("/", 1)[1]})
        run.set_tags({"sophia.model": model_id})
        tracking.log_output(run, tmp, out, (SUMMARY, LOSSES))
    if cache_dir is not None and key:
        try:
            cache.store(cache_dir, key, out)
        except OSError as exc:  # the output is complete; only a later rerun loses the shortcut
            log.warning("%s: held-out losses not cached (%s)", model_id, exc)
    return summary


def log_metrics(run: tracking.Run, summary: Mapping[str, Any], rows: list[dict[str, Any]],
                inputs: Mapping[str, Path], data: Mapping[str, Path]) -> None:
    """Each row's loss per split on the run; each task-level split's loss also under the row's
    LoggedModel, with the split as its dataset (the Models tab's columns)."""
    from sophia.tracking import data as tracking_data

    for label, row in summary["rows"].items():
        path = inputs.get("adapter") if label == summary["model_id"] else inputs.get(f"step.{label}")
        model = tracking.model_id_of(path or inputs["model"], label if label == summary["model_id"] else None)
        prefix = "" if label == summary["model_id"] else f"{label}."
        plain: dict[str, float] = {}
        linked = []
        for split, s in row["splits"].items():
            if s["loss"] is None:
                continue
            name = tracking.metric_name(f"{prefix}heldout_loss.{split.replace('/', '.')}")
            if split.count("/") == 1 and model:
                dataset = split.split("/")[0]
                ds = tracking_data.from_records([{"id": r["id"], "split": r["split"]} for r in rows
                                                 if r["split"] == split], split, Path(data[dataset]).resolve())
                linked.append((name, s["loss"], ds))
            else:
                plain[name] = s["loss"]
        run.log_metrics(plain)  # one write for the row's language splits (and all of a row without a model)
        if linked:
            run.log_datasets([(ds, "forgetting") for _, _, ds in linked], model_ids=(model,))
        for name, value, ds in linked:
            run.log_metrics({name: value}, model_id=model, dataset=ds)


def _pairs(items: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag} {item}: expected NAME=DIR")
        out[name] = Path(path)
    return out


def add_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The stage's own options (the variant job adds them under `--forgetting-*`)."""
    p.add_argument(f"--{prefix}step", action="append", default=[], metavar="LABEL=DIR",
                   help="an intermediate curriculum step's adapter measured on the same model (repeatable)")
    p.add_argument(f"--{prefix}data", action="append", default=[], metavar="DATASET=DIR",
                   help="a data stage output (results/data/DATASET) whose eval splits are measured (repeatable)")


def parse_pairs(args: argparse.Namespace, prefix: str = "") -> tuple[dict[str, Path], dict[str, Path]]:
    attr = prefix.replace("-", "_")
    return (_pairs(getattr(args, f"{attr}step"), f"--{prefix}step"),
            _pairs(getattr(args, f"{attr}data"), f"--{prefix}data"))


def main() -> None:
    from sophia.cli import add_variant, load_spec, parser

    p: argparse.ArgumentParser = parser("Held-out answer loss of one model variant on the curricula's eval splits.")
    add_variant(p)
    p.add_argument("--cache", type=Path, help="result cache directory (default: no cache)")
    add_arguments(p)
    args = p.parse_args()
    steps, data = parse_pairs(args)
    run_stage(load_spec(args.spec), args.model_id, args.model, args.adapter, steps, data, args.out, args.cache)
