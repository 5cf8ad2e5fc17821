"""Bring an existing checkpoint into the workflow: from the hub (connected machines) or a path."""

from __future__ import annotations

import shutil
from pathlib import Path

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
