"""The fixed-shape graphs the phone runs, as torch modules over a Hugging Face model's own
submodules (same weights, same math), for the Phi, Llama and Qwen2 families:

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

Why our own block code rather than transformers' StaticCache: its cache update is an index_copy_
(a scatter, which the converters do not turn into TFLite builtins) behind a mutable Python object
the graph cannot take as an input. The families differ in few places, all read from the model
itself (`Layout`): Phi runs attention and MLP in parallel on one LayerNorm and rotates part of each
head; Llama and Qwen2 run them one after the other on two RMSNorms, rotate the whole head and may
share each key/value head among several query heads (grouped-query attention: the cache holds the
key/value heads only). The rotary tables come from the model's own rotary module, so its scaling
(DeepSeek-Coder's linear factor) is the model's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sophia.errors import ModelError

# families whose block layout KVStep reproduces
SUPPORTED = {"phi": "PhiForCausalLM", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
NEG = -1e9  # finite additive mask: -inf would give inf - inf = NaN in fp16


def check_family(model: Any) -> None:
    cfg = model.config
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED:
        raise ModelError(f"export: model_type '{kind}' is not supported (supported: "
                         f"{', '.join(f'{k} ({v})' for k, v in SUPPORTED.items())}); the static KV-cache graph "
                         "reproduces each family's attention block")
    if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
        raise ModelError(f"export: this {kind} model uses sliding-window attention, which the static KV-cache "
                         "graph does not reproduce (every query sees the whole cache)")


class Layout:
    """Where a family keeps the parts of its decoder the graphs use."""

    def __init__(self, model: Any) -> None:
        check_family(model)
        cfg = model.config
        self.parallel = cfg.model_type == "phi"  # attention and MLP side by side on one norm
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads

    def out_proj(self, attn: nn.Module) -> nn.Module:
        return attn.dense if self.parallel else attn.o_proj

    def final_norm(self, model: Any) -> nn.Module:
        return model.model.final_layernorm if self.parallel else model.model.norm


class WindowLM(nn.Module):
    """Logits for a fixed window of token ids; causal, so right padding never changes earlier logits."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids.long(), use_cache=False, return_dict=True).logits


class KVStep(nn.Module):
    """`length` tokens of the model at positions pos .. pos + length - 1 against a static cache of
    `max_len` positions: the decode step (length 1) and the prefill (length T) are the same math.

    Positions past the cache (the padding of a last prefill chunk) write nothing and read the last
    rotary row; their logits are never used. Padding inside the cache writes rows that the next real
    token overwrites before any query can see them (a query at p sees slots <= p only)."""

    def __init__(self, model: Any, max_len: int, length: int = 1) -> None:
        super().__init__()
        self.layout = Layout(model)
        cfg = model.config
        self.model = model
        self.layers = cfg.num_hidden_layers
        self.heads, self.kv_heads, self.head_dim = self.layout.heads, self.layout.kv_heads, self.layout.head_dim
        self.max_len = max_len
        self.length = length
        self.scaling = model.model.layers[0].self_attn.scaling
        positions = torch.arange(max_len)[None]
        cos, sin = model.model.rotary_emb(torch.zeros(1, max_len, cfg.hidden_size), position_ids=positions)
        self.rot = cos.shape[-1]  # the rotated dimensions of a head: all of them, or Phi's share
        self.register_buffer("cos_table", cos[0].contiguous(), persistent=False)  # [MAX, rot]
        self.register_buffer("sin_table", sin[0].contiguous(), persistent=False)
        self.register_buffer("slots", torch.arange(max_len), persistent=False)
        self.register_buffer("offsets", torch.arange(length), persistent=False)

    def cache_shape(self) -> tuple[int, ...]:
        return (self.layers, 1, self.kv_heads, self.max_len, self.head_dim)

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
        if r == x.shape[-1]:
            return x * cos + self._rotate_half(x) * sin
        return torch.cat((x[..., :r] * cos + self._rotate_half(x[..., :r]) * sin, x[..., r:]), dim=-1)

    def _split(self, y: torch.Tensor, n: int) -> torch.Tensor:
        """[1, T, n * D] → [1, n, T, D]. One head (Qwen2's single key/value head) is an unsqueeze: onnx2tf
        converted the reshape-to-one-head-then-transpose after a biased projection wrongly (its prefill
        graph's logits off by up to 0.07), while the unsqueeze, the same tensor, converts exactly."""
        if n == 1:
            return y.unsqueeze(1)
        return y.view(1, self.length, n, self.head_dim).transpose(1, 2)

    def _attend(self, q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale + mask) v → [1, T, H * D]. With grouped key/value heads (query head h
        reads key/value head h // G), the G query heads of a group go in as G * T rows against their
        one key/value head: no copy of the cache per query head."""
        groups, t_n = self.heads // self.kv_heads, self.length
        if groups > 1:
            q = q.reshape(1, self.kv_heads, groups * t_n, self.head_dim)
            mask = torch.cat([mask] * groups, dim=2)  # row j * T + t is query head j's position t
        w = torch.softmax(torch.matmul(q, kc.transpose(2, 3)) * self.scaling + mask, dim=-1)
        o = torch.matmul(w, vc).reshape(1, self.heads, t_n, self.head_dim)
        return o.transpose(1, 2).reshape(1, t_n, self.heads * self.head_dim)

    def forward(self, input_ids: torch.Tensor, pos: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m, lay = self.model.model, self.layout
        h_n, kv_n = self.heads, self.kv_heads
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
            q = self._rope(self._split(a.q_proj(h), h_n), cos, sin)  # [1, H, T, D]
            k = self._rope(self._split(a.k_proj(h), kv_n), cos, sin)
            v = self._split(a.v_proj(h), kv_n)
            kc = k_cache[i] * keep + torch.matmul(write, k)  # [1, KVH, MAX, D]
            vc = v_cache[i] * keep + torch.matmul(write, v)
            o = lay.out_proj(a)(self._attend(q, kc, vc, mask))
            if lay.parallel:
                x = o + layer.mlp(h) + x
            else:
                x = x + o
                x = x + layer.mlp(layer.post_attention_layernorm(x))
            keys.append(kc)
            values.append(vc)
        logits = self.model.lm_head(lay.final_norm(self.model)(x))
        return logits, torch.stack(keys), torch.stack(values)


class UnitRMSNorm(nn.Module):
    """Llama's and Qwen2's RMSNorm without its scale (folded into the next linears): transformers'
    class has no switch for that, and a scale of ones left in the graph would be folded by the
    converter into one signature's weights again."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.float32)
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


@torch.no_grad()
def fold_layer_norms(model: Any) -> Any:
    """Move each norm's scale (and LayerNorm's shift) into the linear layers that read it, in place:
    W(g * x + b) + c = (W diag g) x + (W b + c). Phi's input norm feeds q, k, v and fc1; a Llama or
    Qwen2 layer's input norm q, k, v and its post-attention norm the gate and up projections; the
    final norm feeds lm_head. The norms keep no scale or shift, so the model computes the same
    function (up to float rounding). A tied lm_head is untied first: the embedding must not change.

    Why: TFLite's converter folds the norm's scale into the following fully-connected weights on its
    own, in the decode signature but not in the prefill one, so a two-signature file kept a second
    copy of those weights and lm_head (1.6x the weights). Folded beforehand, both signatures read
    the same tensors and the file holds them once."""
    lay = Layout(model)

    def scale_in(linears: list[nn.Linear], g: torch.Tensor, b: torch.Tensor | None) -> None:
        for lin in linears:
            w = lin.weight.detach().clone()
            lin.weight = nn.Parameter(w * g[None, :])  # a new tensor: a tied weight keeps its own
            if b is None:
                continue
            shift = w @ b
            if lin.bias is None:
                lin.bias = nn.Parameter(shift)
            else:
                lin.bias.add_(shift)

    def fold(norm: nn.Module, linears: list[nn.Linear]) -> nn.Module:
        g = norm.weight.detach().clone()
        if isinstance(norm, nn.LayerNorm):
            scale_in(linears, g, norm.bias.detach().clone())
            return nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)
        scale_in(linears, g, None)  # RMSNorm: a scale only
        return UnitRMSNorm(norm.variance_epsilon)

    for layer in model.model.layers:
        a = layer.self_attn
        attn_in = [a.q_proj, a.k_proj, a.v_proj]
        if lay.parallel:
            layer.input_layernorm = fold(layer.input_layernorm, [*attn_in, layer.mlp.fc1])
        else:
            layer.input_layernorm = fold(layer.input_layernorm, attn_in)
            layer.post_attention_layernorm = fold(layer.post_attention_layernorm,
                                                  [layer.mlp.gate_proj, layer.mlp.up_proj])
    final = fold(lay.final_norm(model), [model.lm_head])
    if lay.parallel:
        model.model.final_layernorm = final
    else:
        model.model.norm = final
    model.config.tie_word_embeddings = False
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
