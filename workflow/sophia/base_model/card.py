"""Model card of the scratch model: says plainly what it is and is not."""

from __future__ import annotations

from typing import Any

from sophia.base_model.families import FAMILIES

TITLES = {"phi": "Phi", "llama": "Llama (DeepSeek-Coder layout)", "qwen2": "Qwen2 (Qwen2.5-Coder layout)"}


def _tokens(name: str) -> str:
    fam = FAMILIES[name]
    text = f"`{fam.bos}` as BOS, `{fam.eos}` as EOS/PAD" if fam.bos else f"`{fam.eos}` as BOS/EOS/PAD"
    if fam.fim:
        text += "; fill-in-the-middle tokens " + ", ".join(f"`{t}`" for t in fam.fim)
    return text


def scratch_card(summary: dict[str, Any]) -> str:
    arch = summary["spec"]["scratch"]["architecture"]
    train = summary["spec"]["scratch"]["training"]
    t = summary["training"]
    params = sum(summary["parameters"].values())
    name = summary["spec"]["scratch"].get("family", "phi")
    return f"""# Sophia tiny {TITLES[name]} (scratch)

A **tiny test model** of the {TITLES[name]} family (`{FAMILIES[name].model_class}`), built by Sophia's `base_model`
stage so the whole workflow (GPTQ, LoRA, evaluation, export, phone app) runs offline in
minutes on a CPU. It writes code-shaped text; it is **not** a useful coding assistant, and
its benchmark scores measure the pipeline, not a model worth deploying.

## What it is
- Architecture: hidden {arch['hidden_size']}, intermediate {arch['intermediate_size']},
  {arch['num_hidden_layers']} layers, {arch['num_attention_heads']} heads, context
  {arch['max_position_embeddings']}; {params:,} parameters (fp32).
- Tokenizer: byte-level BPE, vocabulary {summary['vocab_size']}, {_tokens(name)}.
- Data: {len(summary['corpus']['files'])} source files of the Python {summary['python_version']}
  standard library (digest `{summary['corpus']['digest']}`), {summary['corpus']['eval_files']}
  of them held out. Another Python version gives another corpus, hence another model.
- Training: {train['steps']} AdamW steps, batch {train['batch_size']} x {train['seq_len']} tokens,
  peak learning rate {train['learning_rate']}, cosine schedule with {train['warmup_steps']} warm-up
  steps, seed {summary['spec']['scratch']['seed']}, {summary['spec']['scratch']['threads']} CPU
  threads (same seed and threads give bit-identical weights).

## Results
- Held-out loss {t['eval_loss_before']:.3f} before training, {t['eval_loss_after']:.3f} after
  (perplexity {t['eval_ppl_after']:.1f}).
- Wall time {t['seconds']:.1f} s for {t['tokens_seen']:,} training tokens, torch {summary['torch_version']}.

## Use
Prompt format shared by the whole workflow: `Instruct: <request>\\nOutput:`.
Produced by Sophia {summary['sophia_version']} at commit `{summary['git_commit']}`.
"""
