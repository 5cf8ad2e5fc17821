"""The fixed-shape graphs the phone runs, as torch modules over a Hugging Face Phi model's own
submodules (same weights, same math):

- `KVStep(length=T)`, the prefill graph (file `window_*.tflite`): T token ids from position `pos`
  against a static key/value cache [L, 1, H, MAX, D] → logits [1, T, V] and the updated cache. The
  prompt goes in with one call (or one per T tokens) instead of one call per token; with `pos` 0
  and an empty cache it is also the fixed-window model (generation re-runs the whole window).
- `KVStep(length=1)`, the decode graph (file `kv_*.tflite`): one token → logits and the cache.
- `WindowLM`: token ids [1, T] → logits [1, T, V], no cache; the window graph when export.kv_cache
  is 0.

This is the prefill/decode pair of the LiteRT LLM exports. Why fixed shapes: onnx2tf fails on
transformers' dynamic causal-mask machinery and GPU delegates dislike dynamic shapes. Why int32
inputs: LiteRT.js (the phone app's runtime) has no int64 tensors, so the graphs cast to int64 inside.
The cache is written with one-hot arithmetic rather than scatter ops, which convert to TFLite
builtins cleanly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sophia.errors import ModelError

SUPPORTED = {"phi": "PhiForCausalLM"}  # families whose block layout KVStep reproduces
NEG = -1e9  # finite additive mask: -inf would give inf - inf = NaN in fp16


def check_family(model: Any) -> None:
    kind = getattr(model.config, "model_type", None)
    if kind not in SUPPORTED:
        raise ModelError(f"export: model_type '{kind}' is not supported (supported: "
                         f"{', '.join(f'{k} ({v})' for k, v in SUPPORTED.items())}); the static KV-cache graph "
                         "reproduces each family's attention block")


class WindowLM(nn.Module):
    """Logits for a fixed window of token ids; causal, so right padding never changes earlier logits."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids.long(), use_cache=False, return_dict=True).logits


class KVStep(nn.Module):
    """`length` tokens of a Phi model at positions pos .. pos + length - 1 against a static cache of
    `max_len` positions: the decode step (length 1) and the prefill (length T) are the same math.

    Positions past the cache (the padding of a last prefill chunk) write nothing and read the last
    rotary row; their logits are never used. Padding inside the cache writes rows that the next real
    token overwrites before any query can see them (a query at p sees slots <= p only)."""

    def __init__(self, model: Any, max_len: int, length: int = 1) -> None:
        super().__init__()
        check_family(model)
        cfg = model.config
        self.model = model
        self.layers = cfg.num_hidden_layers
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // self.heads
        self.max_len = max_len
        self.length = length
        attn = model.model.layers[0].self_attn
        self.rot = attn.rotary_ndims
        self.scaling = attn.scaling
        positions = torch.arange(max_len)[None]
        cos, sin = model.model.rotary_emb(torch.zeros(1, max_len, cfg.hidden_size), position_ids=positions)
        self.register_buffer("cos_table", cos[0].contiguous(), persistent=False)  # [MAX, rot]
        self.register_buffer("sin_table", sin[0].contiguous(), persistent=False)
        self.register_buffer("slots", torch.arange(max_len), persistent=False)
        self.register_buffer("offsets", torch.arange(length), persistent=False)

    def cache_shape(self) -> tuple[int, ...]:
        return (self.layers, 1, self.heads, self.max_len, self.head_dim)

    def empty_cache(self) -> torch.Tensor:
        return torch.zeros(self.cache_shape())

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        # two distinct cache tensors: the exporters merge inputs that are the same object
        return (torch.zeros(1, self.length, dtype=torch.int32), torch.zeros(1, dtype=torch.int32),
                self.empty_cache(), self.empty_cache())

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        r = self.rot
        return torch.cat((x[..., :r] * cos + self._rotate_half(x[..., :r]) * sin, x[..., r:]), dim=-1)

    def forward(self, input_ids: torch.Tensor, pos: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model.model
        h_n, d, t_n = self.heads, self.head_dim, self.length
        positions = pos.long() + self.offsets  # [T]
        x = m.embed_tokens(input_ids.long())  # [1, T, C]
        rows = torch.clamp(positions, max=self.max_len - 1)
        cos = self.cos_table[rows][None, None]  # [1, 1, T, rot]
        sin = self.sin_table[rows][None, None]
        onehot = (positions[:, None] == self.slots[None, :]).to(x.dtype)  # [T, MAX]
        keep = (1.0 - onehot.sum(0))[None, None, :, None]  # [1, 1, MAX, 1]
        write = onehot.t()[None, None]  # [1, 1, MAX, T]
        mask = torch.where(self.slots[None, :] <= positions[:, None], torch.zeros((), dtype=x.dtype),
                           torch.full((), NEG, dtype=x.dtype))[None, None]  # [1, 1, T, MAX]
        keys, values = [], []
        for i, layer in enumerate(m.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = self._rope(a.q_proj(h).view(1, t_n, h_n, d).transpose(1, 2), cos, sin)  # [1, H, T, D]
            k = self._rope(a.k_proj(h).view(1, t_n, h_n, d).transpose(1, 2), cos, sin)
            v = a.v_proj(h).view(1, t_n, h_n, d).transpose(1, 2)
            kc = k_cache[i] * keep + torch.matmul(write, k)  # [1, H, MAX, D]
            vc = v_cache[i] * keep + torch.matmul(write, v)
            w = torch.softmax(torch.matmul(q, kc.transpose(2, 3)) * self.scaling + mask, dim=-1)
            o = torch.matmul(w, vc).transpose(1, 2).reshape(1, t_n, h_n * d)
            x = a.dense(o) + layer.mlp(h) + x  # Phi: attention and MLP in parallel on one norm
            keys.append(kc)
            values.append(vc)
        logits = self.model.lm_head(m.final_layernorm(x))
        return logits, torch.stack(keys), torch.stack(values)


@torch.no_grad()
def fold_layer_norms(model: Any) -> Any:
    """Move each LayerNorm's scale and shift into the linear layers that read it, in place: Phi's
    input norm feeds q, k, v and fc1, the final norm lm_head; W(g * x + b) + c = (W diag g) x + (W b + c).
    The norms keep no affine part, so the model computes the same function (up to float rounding).

    Why: TFLite's converter folds the norm's scale into the following fully-connected weights on its
    own, in the decode signature but not in the prefill one, so a two-signature file kept a second
    copy of q, k, v, fc1 and lm_head (1.6x the weights). Folded beforehand, both signatures read
    the same tensors and the file holds them once."""
    check_family(model)

    def fold(norm: nn.LayerNorm, linears: list[nn.Linear]) -> nn.LayerNorm:
        g, b = norm.weight.detach().clone(), norm.bias.detach().clone()
        for lin in linears:
            w = lin.weight.detach().clone()
            lin.weight.copy_(w * g[None, :])
            shift = w @ b
            if lin.bias is None:
                lin.bias = nn.Parameter(shift)
            else:
                lin.bias.add_(shift)
        return nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)

    for layer in model.model.layers:
        a = layer.self_attn
        layer.input_layernorm = fold(layer.input_layernorm, [a.q_proj, a.k_proj, a.v_proj, layer.mlp.fc1])
    model.model.final_layernorm = fold(model.model.final_layernorm, [model.lm_head])
    return model


@torch.no_grad()
def teacher_forced(step: KVStep, ids: list[int]) -> torch.Tensor:
    """Logits [len(ids), V] from feeding `ids` one at a time through the cache."""
    k, v = step.empty_cache(), step.empty_cache()
    rows = []
    for p, t in enumerate(ids):
        logits, k, v = step(torch.tensor([[t]], dtype=torch.int32), torch.tensor([p], dtype=torch.int32), k, v)
        rows.append(logits[0, 0])
    return torch.stack(rows)


@torch.no_grad()
def prefilled(prefill: KVStep, step: KVStep, ids: list[int], n_prefill: int) -> torch.Tensor:
    """Logits [len(ids), V] the way the runner and the app produce them: the first `n_prefill` ids
    through the prefill graph (one call per `prefill.length` tokens, the last chunk padded), the
    rest one at a time through the decode graph."""
    k, v = prefill.empty_cache(), prefill.empty_cache()
    rows = []
    for at in range(0, n_prefill, prefill.length):
        chunk = ids[at: min(at + prefill.length, n_prefill)]
        padded = torch.zeros(1, prefill.length, dtype=torch.int32)
        padded[0, : len(chunk)] = torch.tensor(chunk, dtype=torch.int32)
        logits, k, v = prefill(padded, torch.tensor([at], dtype=torch.int32), k, v)
        rows.extend(logits[0, : len(chunk)])
    for p in range(n_prefill, len(ids)):
        logits, k, v = step(torch.tensor([[ids[p]]], dtype=torch.int32), torch.tensor([p], dtype=torch.int32), k, v)
        rows.append(logits[0, 0])
    return torch.stack(rows)


def export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]],
                path: Any, opset: int) -> None:
    """Dynamo exporter, fixed shapes; weights go to an external data file when the graph would pass
    protobuf's 2 GB limit (real Phi-2 does)."""
    n_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    external = n_bytes > 1.8e9
    program = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=names[0],
                                output_names=names[1], external_data=external, optimize=True)
    program.save(str(path), external_data=external)
