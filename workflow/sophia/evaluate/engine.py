"""The one generation interface that reranking (CodeT's tests, LEVER's likelihoods) and
self-debugging call, so another evaluation engine (vLLM) plugs in by implementing `Engine`.

Every engine counts the prompts it cuts from the left to fit the model's window, per purpose
(`tests`, `logprobs`, `selfdebug`, ...), in the shape `results.check_truncation` gates, and
counts generated tokens from the output ids (never by re-tokenising text).

`HFEngine` is the reference: transformers `generate` on an already-loaded model. Candidates of
one problem share its context, usually a few-shot prompt many times longer than a completion:
the context runs once and its key/value cache serves every candidate (`full_logprobs` is the
reference computation).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

# Floor of a candidate's mean log-prob: an empty completion has none, and exp(-inf) would make
# the verifier's feature matrix non-finite.
MIN_LOGPROB = -50.0


@dataclass
class Generated:
    """One continuation: its text and how many tokens the model produced for it."""
    text: str
    tokens: int


@dataclass
class Cuts:
    """Prompts seen and prompts cut from the left, per purpose."""
    max_length: int
    seen: dict[str, list[int]] = field(default_factory=dict)

    def add(self, purpose: str, cut: bool) -> None:
        counts = self.seen.setdefault(purpose, [0, 0])
        counts[0] += 1
        counts[1] += bool(cut)

    def report(self, purposes: Sequence[str] | None = None) -> dict[str, Any]:
        """`results.check_truncation`'s input: requests, truncated, share, per purpose."""
        names = [p for p in (purposes or sorted(self.seen)) if p in self.seen]
        requests = sum(self.seen[p][0] for p in names)
        truncated = sum(self.seen[p][1] for p in names)
        return {"requests": requests, "truncated": truncated, "share": truncated / requests if requests else 0.0,
                "max_length": self.max_length, "max_gen_toks": None,
                "per_task": {p: {"requests": self.seen[p][0], "truncated": self.seen[p][1]} for p in names}}


class Engine(Protocol):
    """What reranking and self-debugging need from a model."""
    name: str
    cuts: Cuts

    def sample(self, prompt: str, n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int,
               purpose: str) -> list[Generated]: ...

    def greedy(self, prompts: Sequence[str], max_new_tokens: int, purpose: str,
               stop: Sequence[str] = ()) -> list[Generated]: ...

    def mean_logprobs(self, pairs: Sequence[tuple[str, str]], purpose: str) -> list[tuple[float, int]]: ...


def _mean(values: Sequence[float]) -> tuple[float, int]:
    mean = sum(values) / len(values) if values else MIN_LOGPROB
    return max(MIN_LOGPROB, mean), len(values)


class LeftCut:
    """What every engine shares: user text tokenised without special tokens, and a prompt cut from
    the left to leave room for the answer, the cut counted by purpose (needs tok, max_length, cuts)."""

    tok: Any
    max_length: int
    cuts: Cuts

    def tokens(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _prompt(self, prompt: str, max_new_tokens: int, purpose: str) -> list[int]:
        ids = self.tokens(prompt)
        room = max(1, self.max_length - max_new_tokens)
        self.cuts.add(purpose, len(ids) > room)
        return ids[-room:]


class HFEngine(LeftCut):
    """transformers on a loaded model (base, GPTQ or PEFT)."""
    name = "hf"

    def __init__(self, model: Any, tok: Any, batch_size: int) -> None:
        self.model, self.tok, self.batch_size = model, tok, batch_size
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self.cuts = Cuts(self.max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


    def _continuations(self, gen: torch.Tensor, start: int) -> list[Generated]:
        out = []
        for row in gen[:, start:]:
            ids = row.tolist()
            # Generated tokens end at the first end-of-sequence (its padding is not generation).
            n = next((i + 1 for i, t in enumerate(ids) if t == self.tok.eos_token_id), len(ids))
            out.append(Generated(self.tok.decode(ids[:n], skip_special_tokens=True), n))
        return out

    @torch.no_grad()
    def sample(self, prompt: str, n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int,
               purpose: str) -> list[Generated]:
        """`n` sampled continuations of one prompt, in whole batches from one seeded stream, so the
        first n of a larger n are the same completions (a rerun with more adds to the old)."""
        ids = self._prompt(prompt, max_new_tokens, purpose)
        torch.manual_seed(seed)
        out: list[Generated] = []
        inp = torch.tensor([ids], device=self.device)
        while len(out) < n:
            gen = self.model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=True,
                                      temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                      num_return_sequences=self.batch_size, pad_token_id=self.tok.pad_token_id)
            out += self._continuations(gen, len(ids))
        return out[:n]

    @torch.no_grad()
    def greedy(self, prompts: Sequence[str], max_new_tokens: int, purpose: str,
               stop: Sequence[str] = ()) -> list[Generated]:
        """The greedy continuation of each prompt, one at a time (no padding to shift positions),
        ending at the first of `stop` (the stop string's tokens are generated, so they count)."""
        out: list[Generated] = []
        extra = {"stop_strings": list(stop), "tokenizer": self.tok} if stop else {}
        for prompt in prompts:
            ids = self._prompt(prompt, max_new_tokens, purpose)
            inp = torch.tensor([ids], device=self.device)
            gen = self.model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=False,
                                      max_new_tokens=max_new_tokens, pad_token_id=self.tok.pad_token_id, **extra)
            out += self._continuations(gen, len(ids))
        return out

    @torch.no_grad()
    def mean_logprobs(self, pairs: Sequence[tuple[str, str]], purpose: str = "logprobs") -> list[tuple[float, int]]:
        """(mean log-prob per token, tokens) of each completion given its context, teacher-forced;
        runs of equal context share its key/value cache. A pair too long for the window has its
        context cut from the left (counted)."""
        out: list[tuple[float, int]] = []
        i = 0
        while i < len(pairs):
            j = i
            while j < len(pairs) and pairs[j][0] == pairs[i][0]:
                j += 1
            out += self._shared_context(pairs[i][0], [c for _, c in pairs[i:j]], purpose)
            i = j
        return out

    def _shared_context(self, ctx: str, completions: Sequence[str], purpose: str) -> list[tuple[float, int]]:
        limit = self.max_length
        c_ids = self.tokens(ctx)
        comps = [self.tokens(c)[: limit - 1] for c in completions]
        if not c_ids or len(c_ids) + max(len(a) for a in comps) > limit:
            return self.full_logprobs([(ctx, c) for c in completions], purpose)
        for _ in comps:
            self.cuts.add(purpose, False)
        model, dev = self.model, self.device
        prefix = model(input_ids=torch.tensor([c_ids], device=dev), use_cache=True)
        first = torch.log_softmax(prefix.logits[0, -1].float(), -1).cpu()  # predicts each completion's first token
        out: list[tuple[float, int]] = []
        for b in range(0, len(comps), self.batch_size):
            chunk = comps[b: b + self.batch_size]
            width = max(len(a) for a in chunk)
            if width <= 1:  # nothing past the first token to run
                out += [_mean([float(first[a[0]])] if a else []) for a in chunk]
                continue
            ids = torch.full((len(chunk), width), self.tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), len(c_ids) + width), dtype=torch.long)
            mask[:, : len(c_ids)] = 1
            for k, a in enumerate(chunk):
                ids[k, : len(a)] = torch.tensor(a)
                mask[k, len(c_ids): len(c_ids) + len(a)] = 1
            cache = copy.deepcopy(prefix.past_key_values)
            cache.batch_repeat_interleave(len(chunk))
            positions = torch.arange(len(c_ids), len(c_ids) + width, device=dev).expand(len(chunk), -1)
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), past_key_values=cache,
                           position_ids=positions, use_cache=True).logits
            logp = torch.log_softmax(logits.float(), -1).cpu()
            for k, a in enumerate(chunk):
                out.append(_mean([float(first[a[0]])] + [float(logp[k, t - 1, a[t]]) for t in range(1, len(a))]
                                 if a else []))
        return out

    @torch.no_grad()
    def full_logprobs(self, pairs: Sequence[tuple[str, str]], purpose: str = "logprobs") -> list[tuple[float, int]]:
        """mean_logprobs with every context run in full, left-cut to the window with its completion."""
        dev, limit = self.device, self.max_length
        out: list[tuple[float, int]] = []
        for b in range(0, len(pairs), self.batch_size):
            chunk = pairs[b: b + self.batch_size]
            seqs, starts = [], []
            for ctx, comp in chunk:
                c_ids = self.tokens(ctx)
                a_ids = self.tokens(comp)[: limit - 1]
                full = (c_ids + a_ids)[-limit:]
                self.cuts.add(purpose, len(c_ids) + len(a_ids) > limit)
                seqs.append(full)
                starts.append(len(full) - len(a_ids))
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), self.tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
            logp = torch.log_softmax(logits.float(), -1).cpu()
            for i, (s, start) in enumerate(zip(seqs, starts, strict=True)):
                out.append(_mean([float(logp[i, t - 1, s[t]]) for t in range(max(start, 1), len(s))]))
        return out
