"""`sophia serve` as editors use it: a real server process on a loopback port, driven by the official
`ollama` and `openai` clients (and raw HTTP for what clients hide), over the micro model's f16 GGUF."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from conftest import GGUF_SPEC, ROOT
from sophia.prompt import build_prompt

NAME = "sophia-base:f16"
PROMPT = GGUF_SPEC["reference_prompts"][0]
GREEDY = {"temperature": 0, "num_predict": GGUF_SPEC["gguf"]["parity"]["greedy_tokens"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(micro_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`sophia serve` in its own process; its log is kept to check the per-request metrics."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    # a context beyond the model's 768 positions: long enough that a stream is still running when
    # its client leaves (the disconnect test)
    cmd = [sys.executable, "-m", "sophia", "serve", "--model", str(micro_gguf), "--type", "f16", "--port", str(port),
           "--ctx", "4096", "--threads", "1"]  # one thread: ggml's spinning pool stalls on busy cores
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/api/version", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sophia serve did not start:\n{log_path.read_text()}")
                time.sleep(0.3)
        parity = json.loads((micro_gguf / "parity.json").read_text())
        yield {"url": url, "log": log_path, "parity": parity, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def ol(server: dict[str, Any]) -> ollama.Client:
    return ollama.Client(host=server["url"], timeout=120)  # a stuck queue fails the test, not hangs it


@pytest.fixture
def oa(server: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_list_show_version_ps(ol: ollama.Client, oa: openai.OpenAI, server: dict[str, Any]) -> None:
    assert [m.model for m in ol.list().models] == [NAME]
    shown = ol.show(NAME)
    assert "Instruct: {{ .Content }}\nOutput:" in shown.template and ".Suffix" not in shown.template
    assert shown.capabilities == ["completion"] and "FROM ./model-f16.gguf" in shown.modelfile
    assert shown.details.family == "phi2" and shown.details.quantization_level == "F16"
    assert [m.model for m in ol.ps().models] == [NAME]
    assert httpx.get(server["url"] + "/api/version").json()["version"]
    assert [m.id for m in oa.models.list().data] == [NAME]


def test_generate_gives_the_parity_runs_greedy_tokens(ol: ollama.Client, server: dict[str, Any]) -> None:
    parity = server["parity"]
    prompt_ids = parity["greedy_prompt_ids"][0]
    want = parity["types"]["f16"]["greedy"][0]["tokens"]
    assert want == parity["greedy_tokens_torch"][0]  # the parity run agreed with PyTorch
    r = ol.generate(NAME, PROMPT, options={**GREEDY, "stop": []})
    assert r.context[: len(prompt_ids)] == prompt_ids
    assert want, "the parity run generated nothing, so there is nothing to compare"
    assert list(r.context[len(prompt_ids):]) == want and r.eval_count == len(want)
    # the parity run stops at EOS or after num_predict tokens, and so must the server
    assert r.done_reason == ("length" if len(want) == GREEDY["num_predict"] else "stop")
    streamed = list(ol.generate(NAME, PROMPT, options={**GREEDY, "stop": []}, stream=True))
    assert "".join(c.response for c in streamed) == r.response
    assert [c.done for c in streamed] == [False] * (len(streamed) - 1) + [True]
    assert streamed[-1].context == r.context and streamed[-1].prompt_eval_count == len(prompt_ids)


def test_stop_strings_cut_the_answer(ol: ollama.Client, oa: openai.OpenAI) -> None:
    full = ol.generate(NAME, PROMPT, options={**GREEDY, "stop": []}).response
    stop = full.strip()[2:5]
    cut = ol.generate(NAME, PROMPT, options={**GREEDY, "stop": [stop]})
    assert cut.response == full[: full.index(stop)] and cut.done_reason == "stop"
    raw = oa.completions.create(model=NAME, prompt=build_prompt(PROMPT), max_tokens=GREEDY["num_predict"],
                                temperature=0, stop=[stop])
    assert raw.choices[0].text == cut.response and raw.choices[0].finish_reason == "stop"


def test_chat_and_openai_answer_like_generate(ol: ollama.Client, oa: openai.OpenAI) -> None:
    want = ol.generate(NAME, PROMPT, options=GREEDY).response
    msgs = [{"role": "user", "content": PROMPT}]
    assert ol.chat(NAME, msgs, options=GREEDY).message.content == want
    assert "".join(c.message.content for c in ol.chat(NAME, msgs, options=GREEDY, stream=True)) == want
    n = GREEDY["num_predict"]
    chat = oa.chat.completions.create(model=NAME, messages=msgs, max_tokens=n, temperature=0)
    assert chat.choices[0].message.content == want and chat.usage.completion_tokens <= n
    stream = oa.chat.completions.create(model=NAME, messages=msgs, max_tokens=n, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == want
    text = "".join(c.choices[0].text for c in oa.completions.create(
        model=NAME, prompt=build_prompt(PROMPT), max_tokens=n, temperature=0, stop=["\nInstruct:", "\nOutput:"],
        stream=True))
    assert text == want


TOOL = {"type": "function", "function": {"name": "read_file", "description": "Read a file",
                                         "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}


def test_offered_tools_are_answered_in_text_and_a_required_call_is_refused(ol: ollama.Client,
                                                                          oa: openai.OpenAI) -> None:
    """Continue's agent offers its tools on every chat request (seen with its CLI, cn 1.5.47): the
    model has no tool-calling template, so it answers in text as under tool_choice 'auto'."""
    msgs = [{"role": "user", "content": PROMPT}]
    want = ol.chat(NAME, msgs, options=GREEDY).message.content
    assert ol.chat(NAME, msgs, tools=[TOOL], options=GREEDY).message.content == want
    n = GREEDY["num_predict"]
    chat = oa.chat.completions.create(model=NAME, messages=msgs, max_tokens=n, temperature=0, tools=[TOOL])
    assert chat.choices[0].message.content == want and not chat.choices[0].message.tool_calls
    with pytest.raises(openai.BadRequestError, match="no tool-calling template"):
        oa.chat.completions.create(model=NAME, messages=msgs, max_tokens=n, tools=[TOOL], tool_choice="required")


def test_openai_stream_ends_with_done(server: dict[str, Any]) -> None:
    body = {"model": NAME, "prompt": "def f(", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server["url"] + "/v1/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_bad_requests_get_4xx_with_a_message(ol: ollama.Client, oa: openai.OpenAI, server: dict[str, Any]) -> None:
    url = server["url"]
    for path in ("/api/generate", "/api/chat", "/v1/completions", "/v1/chat/completions"):
        r = httpx.post(url + path, content=b'{"model": "x", "prompt": ', timeout=10,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "malformed JSON" in r.text, path
    with pytest.raises(ollama.ResponseError, match="model 'nope' not found") as err:
        ol.generate("nope", PROMPT)
    assert err.value.status_code == 404
    with pytest.raises(openai.NotFoundError, match="model 'nope' not found"):
        oa.completions.create(model="nope", prompt="x")
    with pytest.raises(ollama.ResponseError, match=r"prompt is \d+ tokens, the context holds 4096") as err:
        ol.generate(NAME, "word " * 5000)
    assert err.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="the context holds 4096") as oerr:
        oa.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "word " * 5000}])
    assert oerr.value.code == "context_length_exceeded"
    with pytest.raises(ollama.ResponseError, match="unknown option 'temprature'"):
        ol.generate(NAME, PROMPT, options={"temprature": 0.5})
    with pytest.raises(ollama.ResponseError, match="option 'mirostat' is not supported"):
        ol.generate(NAME, PROMPT, options={"mirostat": 1})
    with pytest.raises(ollama.ResponseError, match=r"'options\.top_k' must be int"):
        ol.generate(NAME, PROMPT, options={"top_k": "many"})
    with pytest.raises(ollama.ResponseError, match=r"'messages\[0\]\.role' must be one of"):
        ol.chat(NAME, [{"role": "robot", "content": "hi"}])


def test_fill_in_the_middle_is_refused_for_a_model_without_fim_tokens(ol: ollama.Client, oa: openai.OpenAI) -> None:
    with pytest.raises(ollama.ResponseError, match="no fill-in-the-middle tokens") as err:
        ol.generate(NAME, "def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))", options=GREEDY)
    assert err.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="no fill-in-the-middle tokens"):
        oa.completions.create(model=NAME, prompt="def add(a, b):\n", suffix="\nprint(add(1, 2))")


def test_two_concurrent_streaming_clients_both_complete(ol: ollama.Client) -> None:
    prompts = [PROMPT, GGUF_SPEC["reference_prompts"][1]]
    want = [ol.generate(NAME, p, options=GREEDY).response for p in prompts]
    got: list[str | None] = [None, None]

    def stream(i: int) -> None:
        got[i] = "".join(c.response for c in ol.generate(NAME, prompts[i], options=GREEDY, stream=True))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == want


def test_a_client_that_leaves_mid_stream_frees_the_slot(ol: ollama.Client, server: dict[str, Any]) -> None:
    body = {"model": NAME, "prompt": "def", "raw": True, "options": {"temperature": 0, "num_predict": 4000}}
    with httpx.stream("POST", server["url"] + "/api/generate", json=body, timeout=60) as r:
        first = json.loads(next(r.iter_lines()))
    assert first["done"] is False  # left after the first chunk of a 4000-token answer
    r = ol.generate(NAME, PROMPT, options=GREEDY)
    assert r.done and r.response
    deadline = time.monotonic() + 30
    while "cancelled" not in server["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = [line for line in server["log"].read_text().splitlines() if "request: prompt" in line]
    cancelled = [line for line in lines if line.endswith("cancelled")]
    assert cancelled, lines
    generated = int(cancelled[0].split("generated ")[1].split(",")[0])
    assert generated < 4000
    # every request is logged with its metrics
    assert all("first token" in line and "tokens/s" in line for line in lines)


def test_unknown_fields_are_accepted_and_include_usage_gives_the_usage_chunk(oa: openai.OpenAI) -> None:
    """What llama.cpp clients send (`cache_prompt`) is ignored as llama.cpp's server and Ollama do."""
    n = GREEDY["num_predict"]
    msgs = [{"role": "user", "content": PROMPT}]
    once = oa.chat.completions.create(model=NAME, messages=msgs, max_tokens=n, temperature=0,
                                      extra_body={"cache_prompt": True})
    chunks = list(oa.chat.completions.create(model=NAME, messages=msgs, max_tokens=n, temperature=0, stream=True,
                                             stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage == once.usage
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == once.choices[0].message.content


def test_a_seed_repeats_an_answer_and_does_not_stick_to_later_requests(ol: ollama.Client) -> None:
    """llama-cpp-python keeps the last seed it was given: without a fresh one per request, every
    unseeded request after a seeded one would repeat it."""
    hot = {"temperature": 2.0, "top_k": 0, "top_p": 1.0, "num_predict": 24}
    seeded = [ol.generate(NAME, PROMPT, options={**hot, "seed": 7}).context for _ in range(2)]
    assert seeded[0] == seeded[1]
    unseeded = [ol.generate(NAME, PROMPT, options=hot).context for _ in range(3)]
    assert any(u != seeded[0] for u in unseeded) and len({tuple(u) for u in unseeded}) > 1


def test_attacks_are_refused_within_a_second_while_a_normal_client_is_served(server: dict[str, Any]) -> None:
    """DNS rebinding (a foreign Host), a cross-site text/plain POST, and a 50 MB body, during a stream."""
    url, port = server["url"], int(server["url"].rsplit(":", 1)[1])
    body = {"model": NAME, "prompt": "def", "raw": True, "options": {"temperature": 0, "num_predict": 2000}}
    with httpx.stream("POST", url + "/api/generate", json=body, timeout=60) as normal:
        lines = normal.iter_lines()
        assert json.loads(next(lines))["done"] is False
        seconds = []

        def timed(status: int, send: Any) -> None:
            start = time.monotonic()
            assert send() == status
            seconds.append(time.monotonic() - start)

        timed(403, lambda: httpx.get(url + "/api/tags", headers={"Host": f"evil.example:{port}"}).status_code)
        timed(403, lambda: httpx.post(url + "/api/generate", content=json.dumps({"model": NAME, "prompt": "x"}),
                                      headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
              .status_code)
        timed(403, lambda: httpx.options(url + "/api/generate", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}).status_code)

        def huge() -> int:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                             b"\r\nContent-Length: 52428800\r\n\r\n" + b"x" * 65536)
                return int(sock.recv(64).split(b" ")[1])

        timed(413, huge)
        assert max(seconds) < 1, seconds
        last = json.loads(list(lines)[-1])
    assert last["done"] is True and last["eval_count"] > 0
