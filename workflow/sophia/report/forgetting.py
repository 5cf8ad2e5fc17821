"""The forgetting matrix: every measured row (variant or curriculum step) x every curriculum eval split,
the held-out answer loss with a bootstrap interval over examples, and paired differences (the same
examples, resampled together) against the base and against the previous curriculum step.

Why paired: two fine-tuned variants' losses vary together from example to example far more than
they differ, so their independent intervals overlap even where every example moved the same way;
the interval of the paired difference shows the change itself. Losses are comparable only between
models with one tokenizer (per-token NLL): other pairs get no difference."""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sophia.errors import DataError

LOSSES, SUMMARY = "losses.jsonl", "forgetting.json"
STEP = "step:"  # the label of a measured curriculum step that is no evaluated variant
Example = dict[str, tuple[float, int]]  # example id -> (summed answer NLL, answer tokens)


def read(folders: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """label -> {"chain", "previous", "tokenizer", "splits": {split -> Example}}, in the folders'
    order (a job's intermediate steps before its own variant, so curricula read in training order)."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        path, summary_path = Path(folder) / LOSSES, Path(folder) / SUMMARY
        if not path.is_file() or not summary_path.is_file():
            raise DataError(f"{folder}: no {LOSSES}/{SUMMARY} (written by the evaluate job's forgetting step)")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        rows: dict[str, dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            e = json.loads(line)
            if not e["tokens"]:
                continue
            info = summary["rows"][e["row"]]
            row = rows.setdefault(e["row"], {"chain": info["chain"], "previous": info.get("previous"),
                                             "tokenizer": summary["tokenizer"], "splits": {}})
            for split in (e["split"], *([f"{e['split']}/{e['language']}"] if e.get("language") else [])):
                row["splits"].setdefault(split, {})[str(e["id"])] = (float(e["nll"]), int(e["tokens"]))
        own = summary["model_id"]
        for label in [lbl for lbl in rows if lbl != own] + [own]:
            if label in rows:
                found[label] = rows[label]
    return found


def _rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode())])


def _ratios(nll: np.ndarray, tok: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return nll[idx].sum(axis=1) / tok[idx].sum(axis=1)


def interval(a: Example, b: Example | None, split: str, confidence: float, resamples: int,
             seed: int) -> dict[str, Any] | None:
    """Loss of `a` (b None) or the paired difference loss(a) - loss(b) on their common examples:
    value, percentile bootstrap interval, n. None when no example is shared."""
    ids = sorted(set(a) & set(b)) if b is not None else sorted(a)
    if not ids:
        return None
    na, ta = (np.array([a[i][k] for i in ids], dtype=float) for k in (0, 1))
    idx = _rng(seed, split).integers(0, len(ids), size=(resamples, len(ids)))
    value, boot = na.sum() / ta.sum(), _ratios(na, ta, idx)
    if b is not None:
        nb, tb = (np.array([b[i][k] for i in ids], dtype=float) for k in (0, 1))
        value, boot = value - nb.sum() / tb.sum(), boot - _ratios(nb, tb, idx)
    if len(ids) < 2:  # every resample is the one example: no interval to speak of
        return {"value": float(value), "ci_low": None, "ci_high": None, "n": len(ids)}
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high), "n": len(ids)}


def excludes_zero(d: Mapping[str, Any] | None) -> bool:
    return d is not None and d["ci_low"] is not None and (d["ci_low"] > 0 or d["ci_high"] < 0)


def matrix(rows: Mapping[str, dict[str, Any]], confidence: float, resamples: int, seed: int) -> list[dict[str, Any]]:
    """One entry per (row, split): loss, its interval, and the paired differences vs base and vs the
    previous step (None where the other row is missing or has another tokenizer)."""
    out = []
    for label, r in rows.items():
        prev = r["previous"] if r["previous"] in rows else None
        for split, ex in r["splits"].items():
            entry: dict[str, Any] = {"variant": label, "dataset": split, "previous": prev,
                                     "loss": interval(ex, None, split, confidence, resamples, seed)}
            for key, other in (("vs_base", "base"), ("vs_previous", prev)):
                o = rows.get(other) if other and other != label else None
                same = o is not None and o["tokenizer"] == r["tokenizer"] and split in o["splits"]
                entry[key] = interval(ex, o["splits"][split], split, confidence, resamples, seed) if same else None
            out.append(entry)
    return out


FIELDS = ["variant", "dataset", "examples", "loss", "loss_ci_low", "loss_ci_high", "base_diff", "base_diff_ci_low",
          "base_diff_ci_high", "previous", "previous_diff", "previous_diff_ci_low", "previous_diff_ci_high"]


def write_csv(entries: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for e in entries:
            row: dict[str, Any] = {"variant": e["variant"], "dataset": e["dataset"], "previous": e["previous"],
                                   "examples": e["loss"]["n"]}
            for prefix, d in (("loss", e["loss"]), ("base_diff", e["vs_base"]), ("previous_diff", e["vs_previous"])):
                if d is not None:
                    row.update({prefix: d["value"], f"{prefix}_ci_low": d["ci_low"], f"{prefix}_ci_high": d["ci_high"]})
            w.writerow(row)


def _num(x: float, signed: bool = False) -> str:
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def cell(d: Mapping[str, Any] | None, signed: bool = False) -> str:
    """`value [low, high]`; a difference whose interval excludes 0 is bold."""
    if d is None:
        return "—"
    if d["ci_low"] is None:
        return f"{_num(d['value'], signed)} (n={d['n']})"
    text = f"{_num(d['value'], signed)} [{_num(d['ci_low'], signed)}, {_num(d['ci_high'], signed)}]"
    return f"**{text}**" if signed and excludes_zero(d) else text


def task_splits(entries: Sequence[dict[str, Any]]) -> list[str]:
    """dataset/task columns (language breakdowns are in the CSV and the heatmap)."""
    return list(dict.fromkeys(e["dataset"] for e in entries if e["dataset"].count("/") == 1))


def _find(entries: Sequence[dict[str, Any]], variant: str, split: str) -> dict[str, Any] | None:
    return next((e for e in entries if e["variant"] == variant and e["dataset"] == split), None)


def verdict(d: Mapping[str, Any] | None) -> str:
    if d is None:
        return "not measured"
    if d["ci_low"] is None:
        return f"{_num(d['value'], True)} nats on {d['n']} example: no interval, no change shown"
    text = f"{_num(d['value'], True)} nats [{_num(d['ci_low'], True)}, {_num(d['ci_high'], True)}]"
    if not excludes_zero(d):
        return text + ", inside its interval: no change shown"
    return text + (", a cost (the loss rose)" if d["value"] > 0 else ", a gain (the loss fell)")


ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]


def _label_of(chain: str, entries: Sequence[dict[str, Any]], chains: Mapping[str, str | None]) -> str | None:
    found = sorted((lbl for lbl, c in chains.items() if c == chain), key=lambda lbl: lbl.startswith(STEP))
    return found[0] if found else None


def curriculum_sentences(entries: Sequence[dict[str, Any]], chains: Mapping[str, str | None],
                         curricula: Mapping[str, Sequence[str]], phases: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per curriculum: each step on its own training data against the step before it, and what each
    later step did to the earlier steps' data (the second step on the first step's data first)."""
    lines = []
    for name, steps in curricula.items():
        labels = [_label_of("/".join(steps[: i + 1]), entries, chains) for i in range(len(steps))]
        if not any(labels):
            continue
        own = []
        for step, label in zip(steps, labels, strict=True):
            data = [f"{phases[step]['dataset']}/{t}" for t in phases[step]["tasks"]]
            for split in data:
                e = _find(entries, label, split) if label else None
                own.append(f"{step} on {split} {verdict(e['vs_previous'] if e else None)}")
        text = (f"- **{name}** ({' → '.join(steps)}): each step on its own data against the step before: "
                + "; ".join(own))
        for i in range(1, len(steps)):
            own_data = {f"{phases[steps[i]]['dataset']}/{t}" for t in phases[steps[i]]["tasks"]}
            earlier = [f"{phases[p]['dataset']}/{t}" for p in steps[:i] for t in phases[p]["tasks"]]
            earlier = [d for d in dict.fromkeys(earlier) if d not in own_data]
            if not earlier:
                continue
            costs = [f"on {split} {verdict(e['vs_previous'] if (e := _find(entries, labels[i], split)) else None)}"
                     for split in earlier] if labels[i] else ["not measured"]
            whose = "the first step's data" if i == 1 else "the earlier steps' data"
            text += f". The {ORDINALS[i]} step ({steps[i]}) on {whose}: " + "; ".join(costs)
        lines.append(text + ".")
    return lines


def markdown(entries: Sequence[dict[str, Any]], chains: Mapping[str, str | None], confidence: float,
             curricula: Mapping[str, Sequence[str]], phases: Mapping[str, Mapping[str, Any]]) -> str:
    if not entries:
        return ""
    level = round(100 * confidence)
    splits = task_splits(entries)
    variants = list(dict.fromkeys(e["variant"] for e in entries))
    head = "| variant | " + " | ".join(splits) + " |"
    rule = "|---|" + "---|" * len(splits)
    lines = ["", "## Forgetting: held-out answer loss on the curricula's data", "",
             "Mean token NLL of the answer (nats, the fine-tuning objective) on each curriculum dataset's eval "
             f"split, with {level} % bootstrap intervals over examples. Differences are paired (the same examples, "
             "resampled together): bold where the interval excludes 0. `step:` rows are curriculum steps that no "
             "evaluated variant ends with. Per language: forgetting.csv and forgetting.png.", "",
             "Loss:", "", head, rule]
    lines += [f"| {v} | " + " | ".join(cell(e["loss"] if (e := _find(entries, v, s)) else None) for s in splits) + " |"
              for v in variants]
    for key, title in (("vs_previous", "Against the previous step (this row - previous)"),
                       ("vs_base", "Against the base model (this row - base)")):
        lines += ["", f"{title}:", "", "| variant | previous | " + " | ".join(splits) + " |", "|---|---|"
                  + "---|" * len(splits)]
        for v in variants:
            prev = next((e["previous"] for e in entries if e["variant"] == v), None)
            if (key == "vs_previous" and prev is None) or (key == "vs_base" and v == "base"):
                continue
            cells = [cell(e[key] if (e := _find(entries, v, s)) else None, signed=True) for s in splits]
            lines.append(f"| {v} | {prev if key == 'vs_previous' else 'base'} | " + " | ".join(cells) + " |")
    sentences = curriculum_sentences(entries, chains, curricula, phases)
    if sentences:
        lines += ["", "What each curriculum's steps bought and cost:", "", *sentences]
    return "\n".join(lines) + "\n"


def heatmap(entries: Sequence[dict[str, Any]], path: Path, confidence: float) -> None:
    """Rows x splits, coloured by the paired difference against the base (blue: lower loss), each cell
    annotated with it (`*`: interval excludes 0); the base row shows its losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(e["variant"] for e in entries))
    splits = list(dict.fromkeys(e["dataset"] for e in entries))
    grid = np.full((len(variants), len(splits)), np.nan)
    text = [["" for _ in splits] for _ in variants]
    for e in entries:
        i, j = variants.index(e["variant"]), splits.index(e["dataset"])
        if e["variant"] == "base" or e["vs_base"] is None:
            text[i][j] = f"{e['loss']['value']:.2f}"
            grid[i, j] = 0.0 if e["variant"] == "base" else np.nan
        else:
            grid[i, j] = e["vs_base"]["value"]
            text[i][j] = f"{e['vs_base']['value']:+.3f}" + ("*" if excludes_zero(e["vs_base"]) else "")
    span = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(splits) + 2.5), max(2.5, 0.45 * len(variants) + 1.5)), dpi=100)
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-(span or 1.0), vmax=span or 1.0, aspect="auto")
    for i in range(len(variants)):
        for j in range(len(splits)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(splits)), splits, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(variants)), variants, fontsize=8)
    fig.colorbar(im, ax=ax, label="Δ loss vs base (nats)")
    ax.set_title(f"Held-out answer loss vs base (base row: loss; *: {round(100 * confidence)} % interval excludes 0)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
