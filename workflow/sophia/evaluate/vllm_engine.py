"""`Engine` (sophia.evaluate.engine) on a vLLM server (sophia.evaluate.vllm_server): reranking and
self-debugging run unchanged on `evaluate.engine: vllm`.

Prompts are tokenised here with the variant's own tokenizer and sent as token ids, so the server
sees exactly the tokens `HFEngine` would feed `generate` (and the same left cuts, counted the same
way). `n` samples of one prompt are one request (vLLM's parallel sampling shares the prompt's
key/value cache); generated tokens are counted from the returned ids.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from sophia.errors import ModelError
from sophia.evaluate.engine import Cuts, Generated, LeftCut, _mean

MAX_STOPS = 4  # vLLM's OpenAI protocol caps a request's stop strings


def post(url: str, payload: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """POST JSON to the server; an error answer is raised with the server's message."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ModelError(f"vLLM rejected a request to {url}: {exc.code} {exc.read().decode(errors='replace')[:500]}"
                         ) from exc


class VLLMEngine(LeftCut):
    """One served model name (the base, or one LoRA adapter) of a running vLLM server."""
    name = "vllm"

    def __init__(self, url: str, served: str, tok: Any, max_length: int, version: str = "") -> None:
        self.url, self.served, self.tok, self.max_length = url, served, tok, max_length
        self.version = version
        self.cuts = Cuts(max_length)


    def complete(self, prompts: list[list[int]], **params: Any) -> list[dict[str, Any]]:
        """The completion choices of `prompts` (token ids), in prompt order then sample order."""
        body = post(self.url + "/v1/completions", {"model": self.served, "prompt": prompts, "return_token_ids": True,
                                                    "skip_special_tokens": True, **params})
        return sorted(body["choices"], key=lambda c: c["index"])

    def _generated(self, choice: dict[str, Any]) -> Generated:
        ids = choice.get("token_ids")
        if ids is None:
            raise ModelError("vLLM returned no token ids (return_token_ids): the server is older than the "
                             "engine expects (envs/vllm.txt)")
        return Generated(choice["text"], len(ids))

    def sample(self, prompt: str, n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int,
               purpose: str) -> list[Generated]:
        """`n` sampled continuations of one prompt from one seeded request."""
        ids = self._prompt(prompt, max_new_tokens, purpose)
        choices = self.complete([ids], n=n, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                seed=seed)
        return [self._generated(c) for c in choices]

    def greedy(self, prompts: Sequence[str], max_new_tokens: int, purpose: str,
               stop: Sequence[str] = ()) -> list[Generated]:
        """The greedy continuation of each prompt (one batched request), ending at the first of `stop`
        with the stop string kept, as `HFEngine.greedy` keeps it."""
        if not prompts:
            return []
        ids = [self._prompt(p, max_new_tokens, purpose) for p in prompts]
        # the server takes 4 stop strings; the others cut the text here (kept, as the server keeps its own)
        extra = {"stop": list(stop[:MAX_STOPS]), "include_stop_str_in_output": True} if stop else {}
        choices = self.complete(ids, max_tokens=max_new_tokens, temperature=0.0, **extra)
        out = [self._generated(c) for c in choices]
        for g in out:
            ends = [g.text.find(s) + len(s) for s in stop[MAX_STOPS:] if s and s in g.text]
            g.text = g.text[: min(ends)] if ends else g.text
        return out

    def token_logprobs(self, seqs: list[list[int]]) -> list[list[float | None]]:
        """Each sequence's per-token log-prob given its prefix (None for the first token)."""
        choices = self.complete(seqs, max_tokens=1, temperature=0.0, echo=True, logprobs=0)
        out = []
        for seq, c in zip(seqs, choices, strict=True):
            values = c["logprobs"]["token_logprobs"][: len(seq)]
            out.append(values)
        return out

    def mean_logprobs(self, pairs: Sequence[tuple[str, str]], purpose: str = "logprobs") -> list[tuple[float, int]]:
        """(mean log-prob per token, tokens) of each completion given its context, teacher-forced;
        a pair too long for the window has its context cut from the left (counted), as in
        `HFEngine.full_logprobs`."""
        if not pairs:
            return []
        limit = self.max_length
        seqs, starts = [], []
        for ctx, comp in pairs:
            c_ids = self.tokens(ctx)
            a_ids = self.tokens(comp)[: limit - 1]
            full = (c_ids + a_ids)[-limit:]
            self.cuts.add(purpose, len(c_ids) + len(a_ids) > limit)
            seqs.append(full)
            starts.append(len(full) - len(a_ids))
        out = []
        for seq, start, lps in zip(seqs, starts, self.token_logprobs(seqs), strict=True):
            out.append(_mean([float(lps[t]) for t in range(max(start, 1), len(seq))]))
        return out
