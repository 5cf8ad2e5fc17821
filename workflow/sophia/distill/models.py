"""Teacher and student references: check them, read their vocabulary sizes, load them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sophia.errors import ConfigError

if TYPE_CHECKING:  # config validation imports this module: keep torch out of its import time
    import torch

KINDS = ("variant", "hub", "path", "scratch")


def kind(ref: Mapping[str, Any]) -> str:
    return next(k for k in KINDS if ref.get(k) is not None)


def describe(ref: Mapping[str, Any]) -> str:
    """One line naming a model reference, for messages, tags and the model card."""
    k = kind(ref)
    if k == "scratch":
        arch = ref["scratch"]["architecture"]
        return f"scratch (hidden {arch['hidden_size']}, {arch['num_hidden_layers']} layers)"
    if k == "hub":
        return f"hub:{ref['hub']}@{ref.get('revision', 'main')}"
    return ref[k] if k == "variant" else f"path:{ref['path']}"


def check_reference(ref: Mapping[str, Any], where: str, variants: Sequence[str], student: bool) -> None:
    allowed = KINDS if student else KINDS[:3]
    present = [k for k in KINDS if ref.get(k) is not None]
    if len(present) != 1 or present[0] not in allowed:
        raise ConfigError(f"{where}: set exactly one of {', '.join(allowed)} (found: {', '.join(present) or 'none'})")
    if "variant" in present and ref["variant"] not in variants:
        raise ConfigError(f"{where}.variant: '{ref['variant']}' unknown (allowed: {', '.join(variants)})")
    if "path" in present and not (Path(ref["path"]) / "config.json").is_file():
        raise ConfigError(f"{where}.path: {ref['path']} has no config.json (not a Hugging Face model directory)")


def vocab_of(model: str | Path, revision: str = "main", local_only: bool = False) -> int | None:
    """Rows of the output embedding (the logits' width) from a model's config; None if unknown
    without downloading (a hub model not in the local cache)."""
    path = Path(model)
    if (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text())
        return int(cfg.get("text_config", cfg)["vocab_size"])
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(model), revision=revision, local_files_only=local_only)
    except OSError:
        if local_only:
            return None
        raise
    return int(cfg.get_text_config().vocab_size)


def known_vocab(ref: Mapping[str, Any], base_model: Mapping[str, Any]) -> int | None:
    """The vocabulary size a reference will have, where it can be read before any job runs."""
    k = kind(ref)
    if k == "path":
        return vocab_of(ref["path"])
    if k == "hub":
        return vocab_of(ref["hub"], ref.get("revision", "main"), local_only=True)
    # The workflow's own models and scratch students all carry the base model's tokenizer.
    if base_model.get("path"):
        return vocab_of(base_model["path"])
    if base_model.get("hub"):
        return vocab_of(base_model["hub"], base_model.get("revision", "main"), local_only=True)
    return None


def check_vocabularies(teacher: int | None, student: int | None, where: str, teacher_ref: Mapping[str, Any],
                       student_ref: Mapping[str, Any]) -> None:
    if teacher is not None and student is not None and teacher != student:
        raise ConfigError(
            f"{where}.method: token-level KD needs one vocabulary, but teacher {describe(teacher_ref)} has "
            f"{teacher} tokens and student {describe(student_ref)} has {student}; use method: sequence")


def local_dir(model: str | Path, revision: str = "main") -> Path:
    """A model directory: the given one, or the hub snapshot (downloaded once into the HF cache)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model), revision=revision))


def load_teacher(model: str | Path, adapter: Path | None, dev: torch.device, revision: str = "main") -> tuple[Any, Any]:
    """The teacher as evaluate serves it (GPTQ through sophia.lm's CPU-safe path, LoRA on top), frozen."""
    from sophia.lm import load_variant

    net, tok = load_variant(local_dir(model, revision), adapter, dev)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval(), tok


def load_student(ref: Mapping[str, Any], source: str | Path, dev: torch.device) -> tuple[Any, Any]:
    """The student before training. `source` is the model directory (or hub id) for base/hub/path,
    and the base model (for its tokenizer) for a scratch student."""
    from sophia import lm

    path = local_dir(source, ref.get("revision") or "main")
    if ref.get("scratch") is None:
        return lm.load(path, dev, trainable=True)
    from transformers import AutoTokenizer

    from sophia.base_model.scratch import build_model

    tok = AutoTokenizer.from_pretrained(path)
    arch = dict(ref["scratch"]["architecture"])
    if arch["hidden_size"] % arch["num_attention_heads"]:
        raise ConfigError(f"student.scratch.architecture: hidden_size {arch['hidden_size']} is not divisible by "
                          f"num_attention_heads {arch['num_attention_heads']}")
    model = build_model(tok, arch, ref["scratch"]["seed"]).to(dev)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok
