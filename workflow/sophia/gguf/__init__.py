"""Stage gguf: llama.cpp GGUF files, an Ollama Modelfile and their parity with PyTorch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pre_tokenizer(setting: str, base_model: Mapping[str, Any]) -> str | None:
    """The pre-tokenizer the converter is told to write, or None for its own hash detection.

    `auto`: the scratch base model's tokenizer is a retrained byte-level BPE that the detection cannot
    know: GPT-2's pre-tokenizer (`gpt-2`) for the Phi and Llama families, Qwen2's (`qwen2`) for Qwen2;
    hub and local models keep the converter's detection."""
    if setting == "auto":
        scratch = base_model.get("scratch")
        if scratch is None:
            return None
        return "qwen2" if scratch.get("family") == "qwen2" else "gpt-2"
    return None if setting == "detect" else setting
