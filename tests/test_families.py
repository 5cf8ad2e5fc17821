"""The model families a study can pick (Phi, Llama as in DeepSeek-Coder, Qwen2 as in Qwen2.5-Coder):
the scratch models' architecture and tokenizer, the LoRA targets, and the export graphs against the
Hugging Face forward, on tiny random models of each family (seconds, no micro study)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import config_error
from sophia.base_model.families import FAMILIES
from sophia.base_model.scratch import build_model
from sophia.base_model.tokenizer import train_tokenizer
from sophia.export import graphs
from sophia.finetune.lora import target_modules

TEXTS = [f"def f{i}(x):\n    return x * {i}\n" for i in range(200)] + ["Instruct: add two numbers\nOutput: a + b"]
ARCH = {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": 128}
KV_HEADS = {"phi": {}, "llama": {}, "qwen2": {"num_key_value_heads": 2}}  # Qwen2.5-Coder shares kv heads


def tiny(family: str) -> tuple[Any, Any]:
    tok = train_tokenizer(TEXTS, 300, 128, family)
    model = build_model(tok, {**ARCH, **KV_HEADS[family]}, 0, family).eval()
    model.config._attn_implementation = "eager"
    return model, tok


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_scratch_tokenizer_has_the_family_fim_tokens(family: str, tmp_path: Path) -> None:
    """Each FIM token is one special token that survives save/load, and user text spelling it is
    still one token (what llama.cpp finds them by); DeepSeek-Coder starts every text with its BOS."""
    from transformers import AutoTokenizer

    fam = FAMILIES[family]
    train_tokenizer(TEXTS, 300, 128, family).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = [tok.convert_tokens_to_ids(t) for t in fam.fim]
    assert len(set(ids)) == 3 and tok.convert_ids_to_tokens(ids) == list(fam.fim)
    text = f"{fam.fim[0]}def f(x):{fam.fim[1]}\n{fam.fim[2]}"
    enc = tok(text).input_ids
    body = enc[1:] if fam.bos else enc
    assert body[0] == ids[0] and ids[1] in body and body[-1] == ids[2]
    assert tok.eos_token == fam.eos
    if fam.bos:
        assert enc[0] == tok.bos_token_id == tok.convert_tokens_to_ids(fam.bos) != tok.eos_token_id
    else:
        assert tok("def").input_ids == tok("def", add_special_tokens=False).input_ids
    assert tok.decode(tok("def f(x):").input_ids, skip_special_tokens=True) == "def f(x):"


def test_phi_tokenizer_is_unchanged_by_the_families() -> None:
    """The Phi family keeps its one special token at id 0 (a rebuilt embedded default is the same model)."""
    tok = train_tokenizer(TEXTS, 300, 128, "phi")
    assert tok.convert_ids_to_tokens(0) == "<|endoftext|>" == tok.bos_token == tok.eos_token
    assert len(tok.all_special_tokens) == 1


@pytest.mark.parametrize("family", ["phi", "llama", "qwen2"])
def test_scratch_model_has_the_family_layout(family: str) -> None:
    model, tok = tiny(family)
    cfg, layer = model.config, model.model.layers[0]
    assert type(model).__name__ == FAMILIES[family].model_class and cfg.vocab_size == len(tok)
    assert cfg.bos_token_id == tok.bos_token_id and cfg.eos_token_id == tok.eos_token_id
    a = layer.self_attn
    if family == "phi":
        assert isinstance(layer.input_layernorm, torch.nn.LayerNorm) and hasattr(layer.mlp, "fc1")
        return
    assert type(layer.input_layernorm).__name__.endswith("RMSNorm") and hasattr(layer, "post_attention_layernorm")
    assert {n for n, _ in layer.mlp.named_children()} >= {"gate_proj", "up_proj", "down_proj"}  # SwiGLU
    assert cfg.hidden_act == "silu" and not cfg.tie_word_embeddings
    cos, _ = model.model.rotary_emb(torch.zeros(1, 4, 64), position_ids=torch.arange(4)[None])
    assert cos.shape[-1] == 64 // 4  # rotary over the whole head
    biased = [p.bias is not None for p in (a.q_proj, a.k_proj, a.v_proj)]
    assert biased == [family == "qwen2"] * 3 and a.o_proj.bias is None
    assert a.k_proj.out_features == (2 if family == "qwen2" else 4) * 16


@pytest.mark.parametrize("family", ["phi", "llama", "qwen2"])
def test_lora_targets_are_every_projection_of_the_family(family: str) -> None:
    """The default targets name every linear layer of a block (the QLoRA recipe) and nothing else."""
    model, _ = tiny(family)
    linears = {n.rsplit(".", 1)[-1] for n, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(target_modules(model.config.model_type, [])) == linears


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_export_graphs_equal_the_full_forward(family: str) -> None:
    """The decode graph fed one token at a time and the prefill graph (8 per call, the last chunk
    padded) then decode give the Hugging Face forward's logits; grouped key/value heads included."""
    model, _ = tiny(family)
    step, prefill = graphs.KVStep(model, 40).eval(), graphs.KVStep(model, 40, length=8).eval()
    assert step.cache_shape() == (2, 1, 2 if family == "qwen2" else 4, 40, 16)
    ids = torch.randint(0, 300, (30,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0]
    assert (graphs.teacher_forced(step, ids) - full).abs().max() < 1e-5
    for n_prefill in (1, 8, 19):
        assert (graphs.prefilled(prefill, step, ids, n_prefill) - full).abs().max() < 1e-5


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_folded_rms_norms_compute_the_same_function(family: str) -> None:
    """Non-trivial RMSNorm scales moved into q/k/v, gate/up and lm_head: the same logits, no scale left."""
    model, _ = tiny(family)
    g = torch.Generator().manual_seed(3)
    norms = [model.model.norm, *(n for layer in model.model.layers
                                  for n in (layer.input_layernorm, layer.post_attention_layernorm))]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=g))
        ids = torch.randint(0, 300, (1, 20), generator=g)
        want = model(input_ids=ids).logits
        folded = graphs.fold_layer_norms(model)
        got = folded(input_ids=ids).logits
    assert isinstance(folded.model.norm, graphs.UnitRMSNorm)
    assert not any(isinstance(m, type(norms[0])) for m in folded.modules())
    assert (got - want).abs().max() / want.abs().max() < 1e-5


def test_sliding_window_models_are_refused() -> None:
    from sophia.errors import ModelError
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, use_sliding_window=True, sliding_window=16))
    with pytest.raises(ModelError, match="sliding-window attention"):
        graphs.KVStep(model, 8)


@pytest.mark.parametrize(("family", "key", "value", "expected"), [
    ("phi", "num_key_value_heads", 2, r"architecture\.num_key_value_heads: applies to the llama and qwen2 family"),
    ("llama", "partial_rotary_factor", 0.5, r"architecture\.partial_rotary_factor: applies to the phi family only"),
    ("qwen2", "num_key_value_heads", 3, r"num_key_value_heads: 3 does not divide num_attention_heads 2"),
])
def test_family_architecture_keys_are_checked(family: str, key: str, value: Any, expected: str) -> None:
    def mutate(scratch: dict[str, Any]) -> None:
        scratch["family"] = family
        scratch["architecture"][key] = value

    message = config_error(lambda base: mutate(base["scratch"]), "base_model")
    assert "base_model.scratch." in message
    assert re.search(expected, message), message


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_scratch_student_takes_its_base_models_family(family: str, tmp_path: Path) -> None:
    """Distillation: a Llama (Qwen2) base model gets a Llama (Qwen2) student with its tokenizer."""
    from sophia.distill.models import load_student

    model, tok = tiny(family)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    arch = {**ARCH, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    student, student_tok = load_student({"scratch": {"architecture": arch, "seed": 0}}, tmp_path, torch.device("cpu"))
    assert type(student).__name__ == FAMILIES[family].model_class and student.config.hidden_size == 32
    assert student.config.vocab_size == len(student_tok) == len(tok)
    assert student.config.bos_token_id == tok.bos_token_id


@pytest.mark.parametrize("family", ["phi", "llama", "qwen2"])
def test_the_tokenizer_stays_the_same_through_transformers(family: str, tmp_path: Path) -> None:
    """What pretraining used is what every later stage loads (transformers rebuilds a qwen2 model's
    tokenizer as Qwen2Tokenizer, with Qwen's own normalizer and pre-tokenizer) and what the app and
    llama.cpp read from tokenizer.json."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    model, tok = tiny(family)
    model.config.save_pretrained(tmp_path)  # transformers picks the tokenizer class by the model's type
    tok.save_pretrained(tmp_path)
    loaded, raw = AutoTokenizer.from_pretrained(tmp_path), Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in ["def f7(x):\n    return x * 199\n", "café  x\r\n\n\t y", "I'VE 123 4.5e-3 'll"]:
        assert tok(text).input_ids == loaded(text).input_ids == raw.encode(text).ids, text


@pytest.mark.parametrize(("family", "pre"), [("phi", "gpt-2"), ("llama", "gpt-2"), ("qwen2", "qwen2")])
def test_gguf_names_the_scratch_familys_pre_tokenizer(family: str, pre: str) -> None:
    from sophia.gguf import pre_tokenizer

    assert pre_tokenizer("auto", {"scratch": {"family": family}}) == pre
    assert pre_tokenizer("auto", {"hub": "Qwen/Qwen2.5-Coder-1.5B"}) is None


def test_folding_a_tied_lm_head_leaves_the_embedding_alone() -> None:
    """Qwen2.5-Coder 1.5B ties lm_head to the embedding: the final norm's scale goes into an untied
    copy, and the token embedding (what the first layer reads) keeps its values."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        model.model.norm.weight.copy_(1 + 0.5 * torch.randn(64, generator=torch.Generator().manual_seed(1)))
        embedding = model.model.embed_tokens.weight.clone()
        ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(2))
        want = model(input_ids=ids).logits
        got = graphs.fold_layer_norms(model)(input_ids=ids).logits
    assert torch.equal(model.model.embed_tokens.weight, embedding)
    assert (got - want).abs().max() / want.abs().max() < 1e-5
