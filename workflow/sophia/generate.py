"""Answer prompts with the shared instruct template: greedy, bounded, stopping at the end of
the answer. Used wherever the workflow shows what a model says (quantize, finetune, report)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sophia.prompt import build_prompt

# A model that has learnt the template tends to continue with a new task after its answer
# (the paper's verbosity complaint): the next "Instruct:" marks the end of the answer.
STOP_STRINGS = ("\nInstruct:", "\nOutput:")


def cut_at_stop(text: str, stops: Sequence[str] = STOP_STRINGS) -> str:
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(ends)] if ends else text).strip()


@torch.no_grad()
def answer(
    model: Any, tokenizer: Any, requests: Sequence[str], max_new_tokens: int, batch_size: int = 8
) -> list[dict[str, Any]]:
    """Greedy answers to `requests`; each result has the text, token count and stop reason."""
    dev = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only batching: pad before the prompt
    results: list[dict[str, Any]] = []
    try:
        for i in range(0, len(requests), batch_size):
            chunk = list(requests[i : i + batch_size])
            enc = tokenizer([build_prompt(r) for r in chunk], return_tensors="pt", padding=True).to(dev)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=list(STOP_STRINGS),
                tokenizer=tokenizer,
            )
            for request, row in zip(chunk, out[:, enc["input_ids"].shape[1] :], strict=True):
                new = row.tolist()
                if tokenizer.pad_token_id in new:  # finished rows are padded to the batch's length
                    new = new[: new.index(tokenizer.pad_token_id)]
                raw = tokenizer.decode(new, skip_special_tokens=True)
                text = cut_at_stop(raw)
                reason = "stop" if text != raw.strip() else ("eos" if len(new) < max_new_tokens else "length")
                # counted from the output ids: an EOS that ended the answer was generated too, though
                # it reads as the first pad where the pad token is the EOS token
                ended_on_eos = reason == "eos" and tokenizer.pad_token_id == tokenizer.eos_token_id
                results.append({"request": request, "answer": text, "new_tokens": len(new) + ended_on_eos,
                                "finish": reason})
    finally:
        tokenizer.padding_side = side
    return results
