"""The model families a scratch base model can be built in: Phi (Phi-2), Llama (DeepSeek-Coder's
architecture) and Qwen2 (Qwen2.5-Coder's). Each is the Hugging Face class the real checkpoints load
as, so every later stage meets the micro model through the same code path as the real one.

What a family fixes beyond the configured widths is what distinguishes the real models: Llama and
Qwen2 use RMSNorm, a SwiGLU MLP and rotary embeddings over the whole head; Qwen2 adds a bias to the
query, key and value projections. Their tokenizers differ in special tokens only: DeepSeek-Coder
starts every text with a BOS token and names its fill-in-the-middle tokens fim▁begin, fim▁hole and
fim▁end (each between `<` + a fullwidth bar and the bar + `>`); Qwen has no BOS and uses
`<|fim_prefix|>`, `<|fim_suffix|>`, `<|fim_middle|>` (llama.cpp recognises both sets by these texts,
which is what makes FIM work in `sophia serve`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    model_class: str  # transformers class name (config.json `architectures`)
    config_class: str
    eos: str
    bos: str | None = None  # prepended to every encoding when set
    fim: tuple[str, str, str] | None = None  # prefix, suffix, middle
    extra_special: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)  # fixed config fields of the family
    arch_only: frozenset[str] = frozenset()  # architecture keys only this family reads

    @property
    def special_tokens(self) -> list[str]:
        return [t for t in (self.eos, self.bos, *(self.fim or ()), *self.extra_special) if t]


FAMILIES = {
    "phi": Family("phi", "PhiForCausalLM", "PhiConfig", eos="<|endoftext|>",
                  arch_only=frozenset({"partial_rotary_factor"})),
    # DeepSeek-Coder 1.3B: rms_norm_eps 1e-6, rope_theta 100000, untied embeddings
    "llama": Family("llama", "LlamaForCausalLM", "LlamaConfig", eos="<｜end▁of▁sentence｜>",  # noqa: RUF001
                    bos="<｜begin▁of▁sentence｜>",  # noqa: RUF001  (the fullwidth bars are DeepSeek's)
                    fim=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # noqa: RUF001
                    config={"rms_norm_eps": 1e-6, "rope_theta": 100000.0, "hidden_act": "silu",
                            "tie_word_embeddings": False},
                    arch_only=frozenset({"num_key_value_heads"})),
    # Qwen2.5-Coder: rms_norm_eps 1e-6, rope_theta 1e6, bias on q/k/v (Qwen2Config's own layout)
    "qwen2": Family("qwen2", "Qwen2ForCausalLM", "Qwen2Config", eos="<|endoftext|>",
                    fim=("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                    extra_special=("<|fim_pad|>", "<|im_start|>", "<|im_end|>"),
                    config={"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
                            "tie_word_embeddings": False, "use_sliding_window": False},
                    arch_only=frozenset({"num_key_value_heads"})),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model family '{name}' is not one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def model_config(name: str, arch: Mapping[str, Any], token_ids: Mapping[str, int]) -> Any:
    """The family's transformers config for the configured widths (`arch`) and tokenizer ids."""
    import transformers

    fam = family(name)
    foreign = sorted(k for k in arch if any(k in f.arch_only for f in FAMILIES.values()) and k not in fam.arch_only)
    if foreign:
        raise ValueError(f"architecture.{foreign[0]} does not apply to the {name} family")
    return getattr(transformers, fam.config_class)(**fam.config, **arch, **token_ids)
