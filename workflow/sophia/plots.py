"""Small matplotlib helpers for the PNGs stages log (headless backend, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def line_plot(
    series: Mapping[str, Sequence[tuple[int, float]]], path: Path, title: str, ylabel: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, points in series.items():
        ax.plot([s for s, _ in points], [v for _, v in points], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[tuple[float | None, float | None, float | None]]],
    path: Path,
    title: str,
    ylabel: str,
    hatched: Sequence[str] = (),
    notes: Mapping[str, Sequence[str | None]] | None = None,
) -> Path:
    """One group of bars per category, one bar per series; each value is (value, ci_low, ci_high)
    and draws an error bar when the interval is known. Missing values leave a gap. `notes` puts a
    short text above a series' bar (e.g. "1/5" for a partly measured group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(categories) + 0.4 * n), 4), dpi=100)
    for i, (name, values) in enumerate(series.items()):
        xs, ys, lo, hi = [], [], [], []
        for j, (v, low, high) in enumerate(values):
            if v is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(v)
            lo.append(v - low if low is not None else 0.0)
            hi.append(high - v if high is not None else 0.0)
        ax.bar(xs, ys, width=width, label=name, yerr=[lo, hi], capsize=2,
               hatch="//" if name in hatched else None, edgecolor="black", linewidth=0.4)
        for j, (v, _, high) in enumerate(values):
            note = (notes or {}).get(name, [None] * len(values))[j]
            if note and v is not None:
                ax.annotate(note, (j - 0.4 + width * (i + 0.5), high if high is not None else v),
                            xytext=(0, 3), textcoords="offset points", ha="center", fontsize=6)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
