"""From sampled solutions to CodeT and LEVER scores: generate tests with the model, run every test
against every solution (batched, cached), score each candidate's likelihood, rank.

Shared by the evaluate stage (benchmark test split) and the verifier stage (MBPP train split):
both describe their candidates the same way, so the verifier sees at training time exactly the
features it is given at evaluation time.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sophia.evaluate import code, codet, execbatch, lever, sandbox, testgen
from sophia.evaluate.execcache import Cache
from sophia.evaluate.scoring import summarize
from sophia.verifier.model import Verifier

log = logging.getLogger(__name__)
# Floor of a candidate's mean log-prob: an empty completion has none, and exp(-inf) would make
# the verifier's feature matrix non-finite.
MIN_LOGPROB = -50.0
RERANK = "rerank.jsonl"


@dataclass
class Problem:
    """One problem's sampled candidates and everything measured about them."""
    doc: dict[str, Any]
    context: str  # the solution prompt lm-eval sent (few-shot included)
    completions: list[str]
    correct: list[bool] = field(default_factory=list)  # gold tests (labels; never a feature)
    tests: list[str] = field(default_factory=list)
    results: list[execbatch.Result] = field(default_factory=list)
    logprobs: list[tuple[float, int]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return code.problem_id(self.doc)

    @property
    def programs(self) -> list[str]:
        return [code._source(self.doc, c) for c in self.completions]


def sampled_problems(samples: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """The problems of lm-eval's sampled task (the n completions drawn for pass@k)."""
    out = []
    for task, rows in samples.items():
        if not task.endswith("_sampled"):
            continue
        for row in rows:
            resps = row["resps"][0] if row["resps"] and isinstance(row["resps"][0], list) else row["resps"]
            out.append(Problem(row["doc"], row["arguments"][0][0], list(resps)))
    return out


def test_prompts(problems: Sequence[Problem]) -> list[str]:
    """CodeT's test prompts, from the visible fields only and checked against every hidden test."""
    prompts = [testgen.test_prompt(testgen.visible(p.doc)) for p in problems]
    testgen.check_no_leak(prompts, [p.doc for p in problems])
    return prompts


def _max_length(model: Any) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


@torch.no_grad()
def sample(model: Any, tok: Any, prompt: str, n: int, max_new_tokens: int, temperature: float, top_p: float,
           seed: int, batch_size: int) -> list[str]:
    """`n` sampled continuations of one prompt (left-truncated to fit the model's window).

    Always whole batches from one seeded stream, so the first n of a larger n are the same
    completions: a rerun with more tests adds tests (and reuses the cached outcomes of the old)."""
    dev = next(model.parameters()).device
    ids = tok(prompt, add_special_tokens=False)["input_ids"][-(_max_length(model) - max_new_tokens):]
    torch.manual_seed(seed)
    out: list[str] = []
    while len(out) < n:
        count = batch_size
        inp = torch.tensor([ids], device=dev)
        gen = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=True,
                             temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             num_return_sequences=count, pad_token_id=tok.pad_token_id)
        out += tok.batch_decode(gen[:, len(ids):], skip_special_tokens=True)
    return out[:n]


def generate_tests(model: Any, tok: Any, problems: Sequence[Problem], rspec: dict[str, Any], seed: int,
                   batch_size: int) -> None:
    """m test completions per problem; their asserts that compile and call the entry point."""
    for i, (p, prompt) in enumerate(zip(problems, test_prompts(problems), strict=True)):
        name = testgen.entry_point(p.doc)
        texts = sample(model, tok, prompt, rspec["n_tests"], rspec["max_gen_toks"], rspec["temperature"],
                       rspec["top_p"], seed + i, batch_size)
        p.tests = testgen.unique(t for text in texts for t in testgen.extract_asserts(text, name, rspec["max_asserts"]))


@torch.no_grad()
def mean_logprobs(model: Any, tok: Any, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[tuple[float, int]]:
    """(mean log-prob per token, tokens) of each completion given its context, teacher-forced.

    A problem's n candidates share its context, usually a few-shot prompt many times longer than a
    completion: the context runs once and its key/value cache serves every candidate (the same
    numbers up to float rounding; `full_logprobs` is the reference). Where context and completion
    do not fit the window together, the context is cut from the left per candidate, as before."""
    out: list[tuple[float, int]] = []
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        out += _shared_context_logprobs(model, tok, pairs[i][0], [c for _, c in pairs[i:j]], batch_size)
        i = j
    return out


def _tokens(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _mean(values: Sequence[float]) -> tuple[float, int]:
    mean = sum(values) / len(values) if values else MIN_LOGPROB
    return max(MIN_LOGPROB, mean), len(values)


def _shared_context_logprobs(model: Any, tok: Any, ctx: str, completions: Sequence[str],
                             batch_size: int) -> list[tuple[float, int]]:
    limit = _max_length(model)
    c_ids = _tokens(tok, ctx)
    comps = [_tokens(tok, c)[: limit - 1] for c in completions]
    if not c_ids or len(c_ids) + max(len(a) for a in comps) > limit:
        return full_logprobs(model, tok, [(ctx, c) for c in completions], batch_size)
    dev = next(model.parameters()).device
    prefix = model(input_ids=torch.tensor([c_ids], device=dev), use_cache=True)
    first = torch.log_softmax(prefix.logits[0, -1].float(), -1).cpu()  # predicts each completion's first token
    out: list[tuple[float, int]] = []
    for b in range(0, len(comps), batch_size):
        chunk = comps[b: b + batch_size]
        width = max(len(a) for a in chunk)
        if width <= 1:  # nothing past the first token to run
            out += [_mean([float(first[a[0]])] if a else []) for a in chunk]
            continue
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
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
def full_logprobs(model: Any, tok: Any, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[tuple[float, int]]:
    """mean_logprobs with every context run in full, left-cut to the window with its completion."""
    dev = next(model.parameters()).device
    limit = _max_length(model)
    out: list[tuple[float, int]] = []
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b: b + batch_size]
        seqs, starts = [], []
        for ctx, comp in chunk:
            c_ids = _tokens(tok, ctx)
            a_ids = _tokens(tok, comp)[: limit - 1]
            full = (c_ids + a_ids)[-limit:]
            seqs.append(full)
            starts.append(len(full) - len(a_ids))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        logp = torch.log_softmax(model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float(), -1).cpu()
        for i, (s, start) in enumerate(zip(seqs, starts, strict=True)):
            out.append(_mean([float(logp[i, t - 1, s[t]]) for t in range(max(start, 1), len(s))]))
    return out


def measure(problems: Sequence[Problem], model: Any, tok: Any, runner: execbatch.Runner, rspec: dict[str, Any],
            seed: int, batch_size: int) -> None:
    """Tests, executions against them, and likelihoods, filled into `problems`."""
    generate_tests(model, tok, problems, rspec, seed, batch_size)
    jobs = [(prog, p.tests) for p in problems for prog in p.programs]
    results = iter(runner.run(jobs))
    pairs = [(p.context, c) for p in problems for c in p.completions]
    logprobs = iter(mean_logprobs(model, tok, pairs, batch_size))
    for p in problems:
        p.results = [next(results) for _ in p.completions]
        p.logprobs = [next(logprobs) for _ in p.completions]


def codet_scores(p: Problem, weight: str) -> list[float]:
    """Each candidate's CodeT group score (for the verifier's features)."""
    by_member = {}
    for g in codet.group([r.passed() for r in p.results], [False] * len(p.results), weight):
        for i in g.members:
            by_member[i] = g.score
    return [by_member[i] for i in range(len(p.results))]


def features(p: Problem, weight: str) -> list[dict[str, float]]:
    return lever.problem_features(p.doc.get("prompt") or p.doc.get("text") or "", p.programs,
                                  [r.error for r in p.results], [r.codes for r in p.results], p.logprobs,
                                  codet_scores(p, weight))


def rank(p: Problem, ks: Sequence[int], weight: str, p_verifier: Sequence[float] | None) -> dict[str, Any]:
    """Per-problem reranked scores: codet_pass@1, codet_pass@k (k > 1), lever_pass@1."""
    passed = [r.passed() for r in p.results]
    row: dict[str, Any] = {"problem": p.id, "n_tests": len(p.tests),
                           "codet_pass@1": codet.pass_at_1(passed, p.correct, weight)}
    for k in ks:
        if 1 < k <= len(p.results):
            row[f"codet_pass@{k}"] = codet.pass_at_k(passed, p.correct, k, weight)
    if p_verifier is not None:
        keys = [lever.execution_key(r.error, r.codes) for r in p.results]
        row["lever_pass@1"] = lever.pass_at_1(keys, p.programs, [lp for lp, _ in p.logprobs], p_verifier,
                                              p.correct)
    return row


def record(p: Problem, p_verifier: Sequence[float] | None) -> dict[str, Any]:
    """One line of rerank.jsonl: the problem's tests and what each candidate did."""
    return {"problem": p.id, "tests": p.tests, "candidates": [
        {"sample": i, "correct": ok, "loads": r.error is None, "error": r.error, "codes": r.codes,
         "mean_logprob": lp, "tokens": nt, **({"p_verifier": p_verifier[i]} if p_verifier is not None else {})}
        for i, (ok, r, (lp, nt)) in enumerate(zip(p.correct, p.results, p.logprobs, strict=True))]}


def attach(scores: dict[str, Any], out: Path, samples: dict[str, list[dict[str, Any]]],
           records: Sequence[dict[str, Any]], model: Any, tok: Any, box: sandbox.Sandbox, espec: dict[str, Any],
           verifier_dir: Path | None) -> None:
    """The evaluate stage's reranking: adds codet_pass@1, codet_pass@k and lever_pass@1 (with
    intervals) to `scores["metrics"]` and each problem's row, the cost to `scores["rerank"]`, and
    writes `rerank.jsonl` (tests and per-candidate outcomes) into `out`."""
    rspec, bspec = espec["rerank"], scores["settings"]
    if not rspec["enabled"] or bspec["n_samples"] < 2:
        scores["rerank"] = {"skipped": "evaluate.rerank.enabled is false" if not rspec["enabled"]
                            else "needs n_samples >= 2 sampled solutions"}
        return
    start = time.perf_counter()
    problems = sampled_problems(samples)
    label = {(r["problem"], r["sample"]): r["status"] == sandbox.PASSED for r in records if r["mode"] == "sampled"}
    for p in problems:
        p.correct = [label[(p.id, i)] for i in range(len(p.completions))]
    cache = Cache(rspec["cache"])
    try:
        runner = execbatch.Runner(box, rspec["test_timeout_s"], cache, espec["sandbox"]["workers"])
        measure(problems, model, tok, runner, rspec, espec["seed"], espec["batch_size"])
    finally:
        cache.close()
    verifier = Verifier.load(verifier_dir) if verifier_dir is not None else None
    if verifier is None:
        log.warning("no --verifier: lever_pass@1 is not scored")
    rows = {}
    with open(out / RERANK, "w", encoding="utf-8") as fh:
        for p in problems:
            pv = verifier.predict(features(p, rspec["weight"])) if verifier is not None else None
            rows[p.id] = rank(p, bspec["k"], rspec["weight"], pv)
            fh.write(json.dumps(record(p, pv), ensure_ascii=False) + "\n")
    names = [n for n in ("codet_pass@1", *(f"codet_pass@{k}" for k in bspec["k"] if k > 1), "lever_pass@1")
             if any(n in r for r in rows.values())]
    for name in names:
        scores["metrics"][name] = summarize([r[name] for r in rows.values() if r.get(name) is not None],
                                            espec["confidence"])
    for row in scores.get("problems", []):
        row.update({k: v for k, v in rows.get(row["problem"], {}).items() if k != "problem"})
    n_tests = [len(p.tests) for p in problems]
    scores["rerank"] = {
        "settings": rspec, "verifier": str(verifier_dir) if verifier_dir else None,
        "verifier_kind": verifier.kind if verifier else None,
        "valid_tests": sum(n_tests), "problems_without_tests": sum(n == 0 for n in n_tests),
        "cost": {**runner.stats.to_dict(), "wall_seconds": time.perf_counter() - start,
                 "candidates": sum(len(p.completions) for p in problems)},
    }
