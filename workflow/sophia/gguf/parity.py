"""What a GGUF file says compared with the PyTorch model it came from.

- tokens: llama.cpp's tokenizer against the HF tokenizer, id for id, on varied text (code in several
  languages, Unicode, whitespace runs, digits, contractions, a special token inside text);
- logits: full logits of the reference prompts and a few eval texts (max |difference|, argmax);
- greedy: tokens of the reference prompts decoded greedily by llama.cpp's sampler with
  repeat_penalty 1.0 (its default, 1.1, would change them) vs PyTorch `generate`;
- eval: argmax agreement and perplexity over the eval splits, on identical token ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sophia import lm, prompt

TOKENIZATION_TEXTS = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <iostream>\nint main() { std::cout << \"hi\\n\"; return 0; }",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n}",
    "for f in *.txt; do echo \"$f\" | tr 'a-z' 'A-Z'; done  # bash",
    "public static void main(String[] args) { System.out.println(42); }",
    "puts [1, 2, 3].map { |x| x ** 2 }.sum",
    "I've been told he's there; they're sure we'll make it, I'd say. DON'T",
    "3 33 333 3333 33333 3.14159 1e-5 0x1F 1_000_000",
    "\n \n\n \t \t\t   \n    \n        indented\r\nwindows line",
    "café naïve Zürich — \u201cquotes\u201d \u2018single\u2019 … ¿qué? 我想在apple工作 нещо на Български",
    "emoji 🚀 (normal) 😶\u200d🌫️ 🦙🦙 ✅",
    "text<|endoftext|>after the special token",
    "",
    "   leading and trailing spaces   ",
]


def first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def token_check(tok: Any, llm: Any, texts: Sequence[str]) -> dict[str, Any]:
    """llama.cpp tokenizes as the HF tokenizer does by default (its BOS policy, special tokens parsed)."""
    mismatches = []
    for text in texts:
        want = tok(text).input_ids
        got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if got != want:
            first = first_difference(got, want)
            mismatches.append({"text": text[:80], "first_difference": first, "hf": want[:first + 3],
                               "llama_cpp": got[:first + 3]})
    return {"texts": len(texts), "equal": not mismatches, "mismatches": mismatches}


@torch.no_grad()
def torch_reference(model_dir: Path, prompts: Sequence[str], eval_texts: Sequence[str], logit_texts: int,
                    greedy_tokens: int, max_length: int) -> tuple[Any, dict[str, Any]]:
    """(tokenizer, what PyTorch says): the reference every GGUF type is compared with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    eos = tok.eos_token_id
    prompt_ids = [tok(prompt.build_prompt(p)).input_ids for p in prompts]
    eval_ids = [ids for ids in lm.encode(tok, list(eval_texts), max_length) if len(ids) > 1]
    if not eval_ids:
        raise ValueError("gguf parity needs at least one eval text of two or more tokens")
    ref: dict[str, Any] = {"prompt_ids": prompt_ids, "eval_ids": eval_ids, "logits": [], "eval_argmax": [],
                           "greedy": [], "nll": 0.0, "count": 0}
    for i, ids in enumerate([*prompt_ids, *eval_ids]):
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        if i < len(prompt_ids) + logit_texts:
            ref["logits"].append(logits.numpy())
        if i >= len(prompt_ids):
            ref["eval_argmax"].append(logits.argmax(-1).numpy())
            ref["nll"] += nll(logits.numpy(), ids)
            ref["count"] += len(ids) - 1
    for ids in prompt_ids:
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=greedy_tokens, pad_token_id=eos, eos_token_id=eos)
        new = out[0, len(ids):].tolist()
        ref["greedy"].append(new[: new.index(eos)] if eos in new else new)
    return tok, ref


def nll(logits: np.ndarray, ids: Sequence[int]) -> float:
    """Summed negative log-likelihood of ids[1:] under logits[:-1]."""
    x = logits[:-1].astype(np.float64)
    logz = x.max(-1) + np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1))
    return float((logz - x[np.arange(len(ids) - 1), ids[1:]]).sum())


def measure(path: Path, tok: Any, ref: dict[str, Any], greedy_tokens: int, texts: Sequence[str],
            threads: int) -> dict[str, Any]:
    """Every comparison for one GGUF file."""
    from llama_cpp import Llama

    sequences = [*ref["prompt_ids"], *ref["eval_ids"]]
    n_ctx = max(len(s) for s in sequences) + greedy_tokens + 1
    llm = Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    try:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm.model)

        def scores(ids: Sequence[int]) -> np.ndarray:
            llm.reset()
            llm.eval(list(ids))
            return np.array(llm.scores[: len(ids)], dtype=np.float32)

        diffs, agree, total = [], 0, 0
        for want, ids in zip(ref["logits"], sequences, strict=False):
            got = scores(ids)
            diffs.append(float(np.abs(got - want).max()))
        nll_sum = 0.0
        for ids, want_argmax in zip(ref["eval_ids"], ref["eval_argmax"], strict=True):
            got = scores(ids)
            agree += int((got.argmax(-1) == want_argmax).sum())
            total += len(ids)
            nll_sum += nll(got, ids)
        greedy = []
        for ids, want in zip(ref["prompt_ids"], ref["greedy"], strict=True):
            got = []
            for token in llm.generate(ids, temp=0.0, repeat_penalty=1.0, top_k=1, top_p=1.0, min_p=0.0):
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                got.append(int(token))
                if len(got) >= greedy_tokens:
                    break
            first = None if got == want else first_difference(got, want)
            greedy.append({"prompt_tokens": len(ids), "tokens": got, "equal": got == want,
                           "first_difference": first})
        tokens = token_check(tok, llm, [*TOKENIZATION_TEXTS, *texts])
    finally:
        llm.close()
    return {"bytes": path.stat().st_size, "logits_max_abs": max(diffs), "logits_max_abs_per_text": diffs,
            "argmax_agreement": agree / total, "ppl": math.exp(nll_sum / ref["count"]),
            "greedy": greedy, "greedy_equal": all(g["equal"] for g in greedy), "tokens": tokens}
