"""Stage gguf: llama.cpp GGUF files, an Ollama Modelfile and their parity with PyTorch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pre_tokenizer(setting: str, base_model: Mapping[str, Any]) -> str | None:
    """The pre-tokenizer the converter is told to write, or None for its own hash detection.

    `auto`: the scratch base model's tokenizer is a retrained GPT-2-style byte-level BPE that the
    detection cannot know, so `gpt-2`; hub and local models keep the converter's detection."""
    if setting == "auto":
        return "gpt-2" if base_model.get("scratch") is not None else None
    return None if setting == "detect" else setting
