"""Bring an existing checkpoint into the workflow: from the hub (connected machines) or a path."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from sophia.errors import ModelError

# What a causal LM checkpoint needs; READMEs, licences and tokenizer variants come along.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py", "*.md", "LICENSE*", "*.tiktoken"]


def from_hub(repo_id: str, revision: str, dest: Path) -> str:
    """Download a snapshot (safetensors only, no pickles) into `dest`; return the commit hash."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(repo_id, revision=revision)
        snapshot_download(repo_id=repo_id, revision=info.sha, local_dir=dest, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise ModelError(f"base_model.hub: cannot download {repo_id}@{revision}: {exc}") from exc
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
    return str(info.sha)


def from_path(src: Path, dest: Path) -> None:
    if not src.is_dir():
        raise ModelError(f"base_model.path: {src} is not a directory")
    for item in src.iterdir():
        if item.name.startswith("."):
            continue
        target = dest / item.name
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, target)


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
