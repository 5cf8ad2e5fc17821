"""LoRA targets per model family and the optimizer choice."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from sophia.errors import ConfigError

# Attention and MLP projections of each supported family (QLoRA's "all linear layers" recipe,
# minus lm_head). Other families need finetune.lora.target_modules set explicitly.
FAMILY_TARGETS = {
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def target_modules(model_type: str, configured: list[str]) -> list[str]:
    if configured:
        return list(configured)
    if model_type not in FAMILY_TARGETS:
        raise ConfigError(
            f"finetune.lora.target_modules: no default for model family '{model_type}' "
            f"(known: {', '.join(sorted(FAMILY_TARGETS))}); list the modules to adapt"
        )
    return FAMILY_TARGETS[model_type]


def lora_config(spec: dict[str, Any], model_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=spec["r"],
        lora_alpha=spec["alpha"],
        lora_dropout=spec["dropout"],
        target_modules=target_modules(model_type, spec["target_modules"]),
        task_type="CAUSAL_LM",
    )


def optimizer(choice: str) -> str:
    """Paged 8-bit AdamW (bitsandbytes) needs CUDA; on CPU the plain PyTorch AdamW. bitsandbytes is
    installed only where a GPU is (envs/cuda.txt): importing it would slow every CPU job's start."""
    picked = choice
    if choice == "auto":
        picked = "paged_adamw_8bit" if torch.cuda.is_available() else "adamw_torch"
    if "8bit" not in picked:
        return picked
    if not torch.cuda.is_available():
        raise ConfigError(f"finetune.training.optimizer: {picked} needs CUDA; use auto or adamw_torch")
    if importlib.util.find_spec("bitsandbytes") is None:
        named = "auto chooses paged_adamw_8bit on CUDA, which" if choice == "auto" else picked
        raise ConfigError(
            f"finetune.training.optimizer: {named} needs bitsandbytes, which is not installed: "
            "pip install -r envs/cuda.txt -c envs/constraints.txt (make setup does it where nvidia-smi "
            "sees a GPU), or set adamw_torch"
        )
    return picked
