"""Per-example held-out answer loss: the summed token NLL of the answer given its prompt and the
number of answer tokens, encoded the way supervised fine-tuning encodes a prompt/completion row
(prompt and prompt + answer + EOS tokenised apart, loss on the tokens after the prompt, the
sequence cut at the end to the training window)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch


def encode(tok: Any, prompt: str, completion: str, max_length: int) -> tuple[list[int], int]:
    """(token ids cut to `max_length`, index of the first answer token), as TRL's SFT prepares a
    prompt/completion row: the EOS text appended to the answer, both texts tokenised with the
    tokenizer's own special tokens, the answer starting where the two token lists diverge."""
    eos = tok.eos_token or ""
    answer = completion if completion.endswith(eos) else completion + eos
    prompt_ids = tok(prompt)["input_ids"]
    full = tok(prompt + answer)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(prompt_ids, full, strict=False)) if a != b),
                 min(len(prompt_ids), len(full)))
    return full[:max_length], start


@torch.no_grad()
def answer_losses(model: Any, tok: Any, rows: Sequence[dict[str, Any]], max_length: int,
                  batch_size: int = 8) -> list[dict[str, Any]]:
    """One `{"nll", "tokens"}` per row, in order: the answer's summed NLL in nats and its token
    count within the window; a row whose answer starts beyond the window has tokens 0, nll None."""
    dev = next(model.parameters()).device
    encoded = [encode(tok, r["prompt"], r["completion"], max_length) for r in rows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    # batches of similar lengths: a short answer padded to a whole program's length costs as much as it
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out: list[dict[str, Any]] = [{}] * len(encoded)
    for i in range(0, len(order), batch_size):
        chunk = [encoded[k] for k in order[i : i + batch_size]]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        scored = torch.zeros((len(chunk), width), dtype=torch.bool)
        for j, (seq, start) in enumerate(chunk):
            ids[j, : len(seq)] = torch.tensor(seq)
            mask[j, : len(seq)] = 1
            scored[j, start : len(seq)] = True
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits[:, :-1].float()
        target = ids[:, 1:].to(dev)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none").cpu()
        keep = scored[:, 1:]
        for j, k in enumerate(order[i : i + batch_size]):
            n = int(keep[j].sum())
            out[k] = {"nll": float(nll[j][keep[j]].sum()) if n else None, "tokens": n}
    return out


def tokenizer_digest(tok: Any) -> str:
    """sha256 of the token -> id map: per-token losses of two models are comparable only when equal."""
    vocab = sorted(tok.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()
