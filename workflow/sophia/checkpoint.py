"""Facts about a Hugging Face checkpoint directory, read from its files without loading it:
is it complete, how many parameters of which dtype, how big on disk. Shared by every stage
that produces or consumes a model directory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sophia.errors import ModelError


def check_checkpoint(path: Path, where: str) -> None:
    """Fail early, naming the file, when a directory is not a loadable causal LM."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{where}: {path} has no config.json (not a Hugging Face model directory)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{where}: {path} has no weights (*.safetensors or *.bin)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise ModelError(f"{where}: {path} has no tokenizer files")
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: {path / 'config.json'} is not valid JSON: {exc}") from exc


# safetensors dtype codes → torch's names, so both counting paths report the same keys.
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def parameter_counts(path: Path) -> dict[str, int]:
    """Parameters by dtype, read from safetensors headers so a multi-GB model is never loaded."""
    from safetensors import safe_open

    counts: Counter[str] = Counter()
    files = sorted(path.glob("*.safetensors"))
    if files:
        for f in files:
            with safe_open(f, framework="pt") as st:
                for name in st.keys():
                    sl = st.get_slice(name)
                    numel = 1
                    for d in sl.get_shape():
                        numel *= d
                    code = str(sl.get_dtype())
                    counts[_ST_DTYPES.get(code, code.lower())] += numel
        return dict(counts)
    # Legacy .bin checkpoint: count on the meta device instead of unpickling weights.
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    for p in model.parameters():
        counts[str(p.dtype).removeprefix("torch.")] += p.numel()
    return dict(counts)


def size_on_disk(path: Path) -> dict[str, Any]:
    weights = [p for p in path.iterdir() if p.suffix in {".safetensors", ".bin"}]
    return {
        "weights_bytes": sum(p.stat().st_size for p in weights),
        "total_bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
    }
