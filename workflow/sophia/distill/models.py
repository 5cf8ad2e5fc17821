"""Teacher and student references (checked in `sophia.references`) loaded as models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sophia.errors import ConfigError

if TYPE_CHECKING:
    import torch


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
    from transformers import AutoConfig, AutoTokenizer

    from sophia.base_model.families import FAMILIES
    from sophia.base_model.scratch import build_model

    tok = AutoTokenizer.from_pretrained(path)
    # the student takes the base model's family along with its tokenizer: a Llama student of a Llama teacher
    family = AutoConfig.from_pretrained(path).model_type
    if family not in FAMILIES:
        raise ConfigError(f"student.scratch: the base model's family '{family}' cannot be built from scratch "
                          f"(one of {', '.join(FAMILIES)}); give the student as hub or path")
    arch = dict(ref["scratch"]["architecture"])
    if arch["hidden_size"] % arch["num_attention_heads"]:
        raise ConfigError(f"student.scratch.architecture: hidden_size {arch['hidden_size']} is not divisible by "
                          f"num_attention_heads {arch['num_attention_heads']}")
    try:
        model = build_model(tok, arch, ref["scratch"]["seed"], family).to(dev)
    except ValueError as exc:  # an architecture key of another family
        raise ConfigError(f"student.scratch: {exc}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok
