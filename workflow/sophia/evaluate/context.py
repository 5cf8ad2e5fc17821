"""What lm-eval's Hugging Face model cut from each request to fit the context window, counted the
way `HFLM` cuts (lm-eval 0.4.13, models/huggingface.py):

- generation (`generate_until`): the prompt keeps its last `max_length - max_gen_toks` tokens,
  where `max_gen_toks` is the request's own (its task's generation settings, or HFLM's default 256
  when the task sets none), so a long budget silently shortens the prompt;
- log-likelihood: context + continuation keep their last `max_length + 1` tokens.

Requests are the per-sample log's `arguments`; a document appears once per filter (GSM8k has two),
so each (task, document, request) is counted once.
"""

from __future__ import annotations

from typing import Any

Samples = dict[str, list[dict[str, Any]]]


def _gen_budget(lm: Any, gen_kwargs: dict[str, Any]) -> int:
    from lm_eval.models.utils import normalize_gen_kwargs

    return int(normalize_gen_kwargs(gen_kwargs, lm.max_gen_toks)["max_gen_toks"])


def _prompt_tokens(lm: Any, context: str) -> int:
    """Length `tok_batch_encode` gives the context (the same special-token rule as generation)."""
    ids, _ = lm.tok_batch_encode([context])
    return int(ids.shape[1])


def _pair_tokens(lm: Any, context: str, continuation: str) -> int:
    if context == "":  # lm-eval conditions on one prefix token instead
        cont = lm.tok_encode(continuation, add_special_tokens=False)
        return len(cont) + (1 if lm.prefix_token_id != cont[0] else 0)
    ctx, cont = lm._encode_pair(context, continuation)
    return len(ctx) + len(cont)


def request_cut(lm: Any, args: Any) -> dict[str, Any]:
    """One request: its prompt tokens, generation budget (None for log-likelihood) and whether cut."""
    context, second = args[0], args[1]
    if isinstance(second, dict):
        budget = _gen_budget(lm, second)
        n = _prompt_tokens(lm, context)
        return {"prompt_tokens": n, "max_gen_toks": budget, "cut": n > lm.max_length - budget}
    n = _pair_tokens(lm, context, second)
    return {"prompt_tokens": n, "max_gen_toks": None, "cut": n > lm.max_length + 1}


def truncation(samples: Samples, lm: Any) -> dict[str, Any]:
    """Requests, how many were cut and their share, per benchmark and per task; the budgets seen."""
    seen: set[tuple[str, Any, int]] = set()
    per_task: dict[str, dict[str, int]] = {}
    budgets: set[int] = set()
    longest = 0
    for task, rows in samples.items():
        for row in rows:
            for i, args in enumerate(row["arguments"]):
                key = (task, row["doc_id"], i)
                if key in seen:
                    continue
                seen.add(key)
                r = request_cut(lm, args)
                t = per_task.setdefault(task, {"requests": 0, "truncated": 0})
                t["requests"] += 1
                t["truncated"] += r["cut"]
                longest = max(longest, r["prompt_tokens"])
                if r["max_gen_toks"] is not None:
                    budgets.add(r["max_gen_toks"])
    requests = sum(t["requests"] for t in per_task.values())
    cut = sum(t["truncated"] for t in per_task.values())
    return {"requests": requests, "truncated": cut, "share": cut / requests if requests else 0.0,
            "max_length": lm.max_length, "longest_prompt_tokens": longest, "max_gen_toks": sorted(budgets),
            "per_task": {t: v for t, v in per_task.items() if v["truncated"]}}


def generated_in_row(tail: list[int], pad: int | None, eos: int | None, stop: list[str], decode: Any) -> int:
    """Tokens generate() produced for one row (the ids after its prompt). A row that finished before
    the batch's longest is padded to its length: the padding is not generated. Where the pad token is
    the EOS token, a row that ended on EOS generated one of them, while a row stopped by a stop string
    did not: its decoded text says which."""
    n = len(tail)
    while n and tail[n - 1] == pad:
        n -= 1
    if n < len(tail) and pad is not None and pad == eos:
        text = decode(tail[:n])
        if not any(s and s in text for s in stop):
            n += 1
    return n


class GenerationCounter:
    """Counts the tokens an lm-eval HF model generates, from the output ids of each generate() call
    (not by tokenising the decoded, stop-cut text again, which misses what followed the stop string
    and can merge or split tokens differently)."""

    def __init__(self, lm: Any) -> None:
        self.total = 0
        self._lm, self._inner = lm, lm._model_generate
        lm._model_generate = self._generate

    def _generate(self, context: Any, max_length: int, stop: list[str], **kwargs: Any) -> Any:
        cont = self._inner(context, max_length, stop, **kwargs)
        tok = self._lm.tokenizer
        for row in cont[:, context.shape[1]:].tolist():
            self.total += generated_in_row(row, tok.pad_token_id, tok.eos_token_id, stop or [], tok.decode)
        return cont
