"""Fill-in-the-middle through the HTTP layer on a fake model (tests/serve_fake.py): the prompt is
built from the model's own FIM tokens, truncated the way llama.cpp's server truncates infill, and
user text is never parsed for special tokens. tests/test_serve_fim.py runs it on a real GGUF."""

from __future__ import annotations

import ollama
import openai
import pytest
from serve_fake import MID, NAME, PRE, SUF, FakeModel, serving
from sophia.serve.fim import fit


def oa(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)


def ol(url: str) -> ollama.Client:
    return ollama.Client(host=url, timeout=30)


def test_fit_keeps_the_end_of_the_prefix_and_the_start_of_the_suffix() -> None:
    prefix, suffix = list(range(100)), list(range(1000, 1100))
    p, s = fit(prefix, suffix, 40)
    assert p == prefix[-30:] and s == suffix[:10]
    p, s = fit(prefix[:5], suffix, 40)  # a short prefix leaves its room to the suffix
    assert p == prefix[:5] and s == suffix[:35]
    p, s = fit(prefix, suffix[:3], 40)
    assert p == prefix[-37:] and s == suffix[:3]
    assert fit(prefix[:5], suffix[:5], 40) == (prefix[:5], suffix[:5]) and fit(prefix, suffix, 0) == ([], [])


def test_fill_in_the_middle_prompt_is_built_truncated_and_not_special_parsed() -> None:
    model = FakeModel(n_ctx=64, fim=True)
    with serving(model) as s:
        shown = ol(s.url).show(NAME)
        assert shown.capabilities == ["completion", "insert"] and ".Suffix" in shown.template
        r = ol(s.url).generate(NAME, "ab<|fim_suffix|>", suffix="cd", options={"num_predict": 2})
        prompt = model.text(r.context[:-2])
        assert prompt == "<s><|fim_prefix|>ab<|fim_suffix|><|fim_suffix|>cd<|fim_middle|>"
        assert r.context[1] == PRE and r.context.count(SUF) == 1 and r.context[-3] == MID  # user text stays text
        long_prefix, long_suffix = "P" * 50 + "near", "next" + "S" * 50
        r = oa(s.url).completions.create(model=NAME, prompt=long_prefix, suffix=long_suffix, max_tokens=8)
        tokens = model.seen[-1][0]
        # 64 context - 1 BOS - 3 FIM tokens - 8 to generate = 52 tokens of text, a quarter for the suffix
        assert len(tokens) == 64 - 8 and r.usage.prompt_tokens == 56
        text = model.text(tokens)
        assert text == "<s><|fim_prefix|>" + long_prefix[-39:] + "<|fim_suffix|>" + long_suffix[:13] + "<|fim_middle|>"


def test_fill_in_the_middle_is_refused_without_fim_tokens() -> None:
    with serving() as s:
        with pytest.raises(ollama.ResponseError, match="no fill-in-the-middle tokens") as err:
            ol(s.url).generate(NAME, "def f(", suffix=")")
        assert err.value.status_code == 400
        assert ol(s.url).show(NAME).capabilities == ["completion"]
