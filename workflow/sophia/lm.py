"""Loading causal LMs and measuring them: device choice, perplexity, logits on a fixed batch.

Shared by every stage that loads or compares models (quantize, finetune, distill, evaluate, the
export's merge, gguf's parity), so "perplexity" means the same computation everywhere.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sophia.errors import ModelError


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def float_dtype(dev: torch.device) -> torch.dtype:
    """fp32 on CPU (fp16 matmuls are slow or missing there), bf16/fp16 on GPU."""
    if dev.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load(path: str | Path, dev: torch.device | None = None, trainable: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode; GPTQ checkpoints load through transformers' own path.

    `trainable` asks for a GPTQ kernel that passes gradients through the frozen int4 base (LoRA).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = dev or device()
    qcfg = json.loads((Path(path) / "config.json").read_text()).get("quantization_config")
    if qcfg is None:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=float_dtype(dev)).to(dev)
    else:
        from transformers import GPTQConfig

        kwargs: dict[str, Any] = {"device_map": str(dev)}
        if dev.type == "cpu":
            # gptqmodel's default CPU kernel computes in bf16 and only takes group sizes 32-256;
            # the plain torch kernel dequantizes exactly (fp32), so measurements show the
            # quantization error itself, for every group size (and it keeps gradients, see finetune).
            kwargs["quantization_config"] = GPTQConfig(bits=qcfg["bits"], backend="gptq_torch")
            # That kernel wraps its dequantizer in torch.compile; on CPU, inductor recompiles per
            # layer shape and train/eval mode, many times slower than eager dequantization.
            import torch._dynamo

            torch._dynamo.config.disable = True
            # Its dequantizer otherwise runs on every forward pass, so each decoding step would pay
            # for the whole model's dequantization. The kernel's own cache keeps the
            # dequantized weights (the same tensors, so the same numbers) while in eval mode; training
            # mode still dequantizes per pass. Read when each layer is built, hence before loading.
            os.environ["GPTQ_TORCH_CACHE_WEIGHTS"] = "1"
        elif trainable:
            # Fast CUDA kernels (Marlin, ExLlama) are inference-only; let gptqmodel pick one with a backward.
            kwargs["quantization_config"] = GPTQConfig(bits=qcfg["bits"], backend="auto_trainable")
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def load_variant(model_dir: Path, adapter: Path | None, dev: torch.device) -> tuple[Any, Any]:
    """A variant as evaluate serves it (and distill's teacher, the verifier's generator): base or
    GPTQ weights, plus a curriculum's LoRA adapter."""
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir}: no config.json, not a model directory")
    model, tok = load(model_dir, dev)
    if adapter is not None:
        from peft import PeftModel

        if not (adapter / "adapter_config.json").is_file():
            raise ModelError(f"{adapter}: no adapter_config.json, not a LoRA adapter directory")
        model = PeftModel.from_pretrained(model, adapter).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


class SharedVariant:
    """One variant loaded at most once, on first use, for the stages one job runs on it (the variant
    job: its verifier, then its evaluation). A stage whose outputs all come from a cache never loads it."""

    def __init__(self, model_dir: Path, adapter: Path | None, dev: torch.device,
                 loader: Any = None) -> None:
        self.model_dir, self.adapter, self.dev = Path(model_dir), adapter, dev
        self._loader = loader or load_variant
        self._loaded: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = self._loader(self.model_dir, self.adapter, self.dev)
        return self._loaded


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of full training-style sequences: the text, then EOS, truncated."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [[*x, tokenizer.eos_token_id][:max_length] for x in ids]


def _batch(seqs: Sequence[list[int]], pad: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids.to(dev), mask.to(dev)


@torch.no_grad()
def perplexity(
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 8
) -> dict[str, float]:
    """Token-weighted perplexity over `texts` (each scored on its own, right-padded)."""
    dev = next(model.parameters()).device
    seqs = [s for s in encode(tokenizer, texts, max_length) if len(s) > 1]
    nll, count = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        ids, mask = _batch(seqs[i : i + batch_size], tokenizer.pad_token_id, dev)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:]
        keep = mask[:, 1:].bool()
        token_nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        nll += token_nll[keep].sum().item()
        count += int(keep.sum().item())
    if count == 0:
        raise ValueError("perplexity needs at least one text of two or more tokens")
    return {"ppl": math.exp(nll / count), "nll": nll / count, "tokens": count}


@torch.no_grad()
def logits(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits, attention mask) of one right-padded batch, for model-vs-model checks."""
    dev = next(model.parameters()).device
    ids, mask = _batch(encode(tokenizer, texts, max_length), tokenizer.pad_token_id, dev)
    return model(input_ids=ids, attention_mask=mask).logits.float().cpu(), mask.cpu()


def logit_difference(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean and max absolute difference over real (non-padding) positions."""
    keep = mask.bool()
    diff = (a - b).abs()[keep]
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
            "argmax_agreement": float((a.argmax(-1) == b.argmax(-1))[keep].float().mean())}
