"""Token-length and count statistics of a sampled dataset, measured with the base tokenizer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def length_summary(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {}
    arr = np.asarray(lengths)
    out = {f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}
    out.update(mean=float(arr.mean()), max=int(arr.max()), min=int(arr.min()))
    return out


def split_stats(records: Sequence[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    """Counts per language and token lengths of prompt, completion and the full sequence (+EOS)."""
    prompts = [r["prompt"] for r in records]
    completions = [r["completion"] for r in records]
    p_len = [len(x) for x in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if records else []
    full = [p + c for p, c in zip(prompts, completions, strict=True)]
    f_len = [len(x) + 1 for x in tokenizer(full, add_special_tokens=False)["input_ids"]] if records else []
    c_len = [f - 1 - p for f, p in zip(f_len, p_len, strict=True)]
    languages = Counter(r["language"] or "unspecified" for r in records)
    return {
        "rows": len(records),
        "languages": dict(sorted(languages.items())),
        "tokens": {
            "prompt": length_summary(p_len),
            "completion": length_summary(c_len),
            "total": length_summary(f_len),
        },
    }
