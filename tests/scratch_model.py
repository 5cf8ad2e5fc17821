"""A tiny model with its own tokenizer, saved as the base model stage saves one: for unit tests that
need a real model folder or forward pass without waiting for the micro study (seconds)."""

from __future__ import annotations

from pathlib import Path


def build(out: Path, vocab_size: int = 300, hidden_size: int = 32, corpus_seed: int = 0) -> Path:
    """`corpus_seed` other than 0 trains the tokenizer on other text: same size, other token ids."""
    from sophia.base_model.scratch import build_model
    from sophia.base_model.tokenizer import train_tokenizer

    texts = [f"def f{i}(x):\n    return x * {i}\n" for i in range(200)] + ["Instruct: add two numbers\nOutput: a + b"]
    if corpus_seed:
        texts = [f"class Point{i * corpus_seed}:\n    name = 'p{i}'  # a comment\n" for i in range(300)] + texts[::7]
    tok = train_tokenizer(texts, vocab_size, 128)
    model = build_model(tok, {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_hidden_layers": 2,
                              "num_attention_heads": 4, "max_position_embeddings": 128}, 0)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
