"""`sophia serve`'s HTTP layer over a stand-in model (tests/serve_fake.py): the guard (Host, Origin,
API key, content type), limits before work, the queue, and each API's compatibility details, driven
through the official `ollama` and `openai` clients or raw HTTP on a loopback port."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import ollama
import openai
import pytest
from serve_fake import EOS, NAME, FakeModel, serving
from sophia.serve.shared import Limits


def oa(url: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, timeout=30, **kw)


def ol(url: str, **kw: object) -> ollama.Client:
    return ollama.Client(host=url, timeout=30, **kw)


# --- who may talk to the server ------------------------------------------------------------------
def test_foreign_host_names_get_403_and_loopback_names_any_port() -> None:
    with serving() as s:
        for host in ("evil.example:%d", "evil.example", "127.0.0.1.evil.example:%d", "192.168.1.5:%d"):
            h = host % s.port if "%d" in host else host
            r = httpx.get(s.url + "/api/tags", headers={"Host": h})
            assert r.status_code == 403 and "is not answered" in r.json()["error"], h
            r = httpx.get(s.url + "/v1/models", headers={"Host": h})
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        for host in ("127.0.0.1:1", "localhost:99", "LOCALHOST", "[::1]:8080", "127.0.0.1"):
            assert httpx.get(s.url + "/api/tags", headers={"Host": host}).status_code == 200, host


def test_cross_origin_posts_and_preflights_are_refused_unless_listed() -> None:
    body = json.dumps({"model": NAME, "prompt": "hi", "stream": False})
    with serving(origins=["http://good.example", "http://localhost:*"]) as s:
        evil = {"Origin": "http://evil.example"}
        # what any web page may send without a preflight: text/plain, and then JSON
        for ctype in ("text/plain", "application/json"):
            r = httpx.post(s.url + "/api/generate", content=body, headers={**evil, "Content-Type": ctype})
            assert r.status_code == 403 and "--origins http://evil.example" in r.json()["error"]
        pre = {**evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        assert httpx.options(s.url + "/api/generate", headers=pre).status_code == 403
        assert not s.model.seen  # nothing was generated
        for origin in ("http://good.example", "http://localhost:5173"):
            pre = {"Origin": origin, "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "content-type, authorization"}
            r = httpx.options(s.url + "/v1/chat/completions", headers=pre)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
            assert "POST" in r.headers["access-control-allow-methods"]
            r = httpx.post(s.url + "/api/generate", content=body,
                           headers={"Origin": origin, "Content-Type": "application/json"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        # same origin (a page this server served) and no Origin at all (editors, CLIs) need no listing
        same = {"Origin": s.url, "Content-Type": "application/json"}
        assert httpx.post(s.url + "/api/generate", content=body, headers=same).status_code == 200
    with serving() as s:  # default: no origin listed
        r = httpx.get(s.url + "/api/tags", headers={"Origin": "http://localhost:3000"})
        assert r.status_code == 403


def test_posts_must_declare_json() -> None:
    with serving() as s:
        body = json.dumps({"model": NAME, "prompt": "hi", "stream": False})
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": ctype} if ctype else {}
            r = httpx.post(s.url + "/api/generate", content=body, headers=headers)
            assert r.status_code == 415 and "must be application/json" in r.json()["error"], ctype
        r = httpx.post(s.url + "/v1/completions", content=body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "must be application/json" in r.json()["error"]["message"]
        r = httpx.post(s.url + "/api/generate", content=body,
                       headers={"Content-Type": "application/json; charset=utf-8"})
        assert r.status_code == 200 and r.json()["done"]


def test_api_key_is_required_when_set() -> None:
    with serving(api_key="s3cret") as s:
        with pytest.raises(openai.AuthenticationError, match="missing or wrong API key"):
            oa(s.url, api_key="wrong").models.list()
        assert [m.id for m in oa(s.url, api_key="s3cret").models.list().data] == [NAME]
        with pytest.raises(ollama.ResponseError, match="missing or wrong API key") as err:
            ol(s.url).list()
        assert err.value.status_code == 401
        assert ol(s.url, headers={"Authorization": "Bearer s3cret"}).generate(NAME, "hi", options={"num_predict": 2})
        r = httpx.get(s.url + "/api/tags")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


# --- limits before work ---------------------------------------------------------------------------
def read_reply(sock: socket.socket) -> bytes:
    """One HTTP response (head and a Content-Length body) from a raw socket."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def raw_status(port: int, head: bytes, body: bytes, timeout: float = 5) -> tuple[int, float]:
    """Sends a request head and part of its body on a raw socket: (the status, seconds until it came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        start = time.monotonic()
        sock.sendall(head + body)
        reply = read_reply(sock)
        return int(reply.split(b" ", 2)[1]), time.monotonic() - start


def test_an_oversized_body_is_refused_before_it_is_read_and_others_are_served_meanwhile() -> None:
    with serving(FakeModel(answer="ok "), limits=Limits(max_body=1 << 20)) as s:
        declared = (b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 52428800\r\n\r\n")
        status, seconds = raw_status(s.port, declared, b'{"model": "' + b"x" * 65536)
        assert status == 413 and seconds < 1
        chunked = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 300_000
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(chunked)
            for _ in range(3):  # 900 KB: under the cap, and the connection stays open
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            start = time.monotonic()
            r = ol(s.url).generate(NAME, "still there?", options={"num_predict": 3})  # served meanwhile
            assert r.response == "ok " and time.monotonic() - start < 1
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # over 1 MiB now
            reply = read_reply(sock)
        assert b" 413 " in reply.split(b"\r\n")[0] and b"over the limit" in reply


def test_prompt_characters_are_capped_before_tokenizing() -> None:
    model = FakeModel(n_ctx=64)
    with serving(model, limits=Limits(max_prompt_chars=100)) as s:
        with pytest.raises(openai.BadRequestError, match="prompt is 101 characters, over the limit of 100") as err:
            oa(s.url).completions.create(model=NAME, prompt="x" * 101)
        assert err.value.code == "context_length_exceeded"
        with pytest.raises(ollama.ResponseError, match="over the limit of 100"):
            ol(s.url).chat(NAME, [{"role": "system", "content": "s" * 60}, {"role": "user", "content": "u" * 41}])
        # under the character cap but over the context: refused by token count, with OpenAI's code
        with pytest.raises(openai.BadRequestError, match="prompt is 81 tokens, the context holds 64") as err:
            oa(s.url).completions.create(model=NAME, prompt="y" * 80)
        assert err.value.code == "context_length_exceeded"
        assert not model.seen


def test_tokenizing_does_not_block_other_clients() -> None:
    with serving(FakeModel(tokenize_delay_s=1.5)) as s:
        slow = threading.Thread(target=lambda: ol(s.url).generate(NAME, "slow to tokenize", options={"num_predict": 1}))
        slow.start()
        time.sleep(0.3)
        start = time.monotonic()
        assert httpx.get(s.url + "/api/version").status_code == 200
        assert time.monotonic() - start < 0.5
        slow.join()


def background(fn: object) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn()  # type: ignore[operator]
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_for(cond: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_full_queue_answers_503_with_retry_after() -> None:
    model = FakeModel(delay_s=0.01)
    with serving(model, max_queue=1) as s:
        running, r1 = background(lambda: ol(s.url).generate(NAME, "one", options={"num_predict": 100}))
        wait_for(lambda: len(model.seen) == 1)
        queued, r2 = background(lambda: ol(s.url).generate(NAME, "two", options={"num_predict": 2}))
        wait_for(lambda: s.engine.queued() == 1)
        with pytest.raises(openai.InternalServerError, match="the server is busy") as err:
            oa(s.url).completions.create(model=NAME, prompt="three", max_tokens=2)
        assert err.value.status_code == 503 and int(err.value.response.headers["retry-after"]) >= 1
        r = httpx.post(s.url + "/api/generate", json={"model": NAME, "prompt": "four"})
        assert r.status_code == 503 and "retry in" in r.json()["error"]
        running.join()
        queued.join()
        assert r1["value"].eval_count == 100 and r2["value"].eval_count == 2  # the admitted ones complete


def test_the_deadline_cuts_a_long_answer_and_refuses_a_request_still_queued() -> None:
    model = FakeModel(delay_s=1.0)  # the first token comes after the deadline
    with serving(model, timeout_s=0.6) as s:
        start = time.monotonic()
        first, r1 = background(lambda: oa(s.url).completions.create(model=NAME, prompt="a", max_tokens=1000))
        wait_for(lambda: len(model.seen) == 1)
        with pytest.raises(openai.InternalServerError, match="deadline") as err:
            oa(s.url).completions.create(model=NAME, prompt="b", max_tokens=5)
        assert err.value.status_code == 503
        first.join()
        cut = r1["value"]
        assert cut.choices[0].finish_reason == "length" and 0 < cut.usage.completion_tokens < 1000
        assert time.monotonic() - start < 3


def test_a_newer_fill_in_the_middle_request_of_the_same_client_replaces_its_queued_one() -> None:
    model = FakeModel(delay_s=0.01, fim=True)
    with serving(model) as s:
        busy, _ = background(lambda: ol(s.url).generate(NAME, "busy", options={"num_predict": 60}))
        wait_for(lambda: len(model.seen) == 1)
        old, r_old = background(lambda: oa(s.url).completions.create(model=NAME, prompt="def f(", suffix=")",
                                                                     max_tokens=3))
        wait_for(lambda: s.engine.queued() == 1)
        # a different client (another editor) is not replaced
        other_t, r_other = background(lambda: httpx.post(
            s.url + "/api/generate", headers={"User-Agent": "another-editor"}, timeout=30,
            json={"model": NAME, "prompt": "x = ", "suffix": "\n", "stream": False, "options": {"num_predict": 2}}))
        wait_for(lambda: s.engine.queued() == 2)
        new = oa(s.url).completions.create(model=NAME, prompt="def f(a", suffix=")", max_tokens=3)
        old.join()
        assert isinstance(r_old["error"], openai.ConflictError) and "replaced by a newer" in str(r_old["error"])
        assert new.choices[0].text == "hel"
        other_t.join()
        busy.join()
        assert r_other["value"].status_code == 200 and r_other["value"].json()["response"] == "he"


def test_a_client_that_leaves_while_queued_is_never_generated() -> None:
    model = FakeModel(delay_s=0.01)
    with serving(model) as s:
        busy, _ = background(lambda: ol(s.url).generate(NAME, "busy", options={"num_predict": 300}))
        wait_for(lambda: len(model.seen) == 1)
        for stream in (True, False):
            with httpx.Client(timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
                c.post(s.url + "/api/generate", json={"model": NAME, "prompt": "left", "stream": stream})
        wait_for(lambda: s.engine.queued() == 0)
        busy.join()
        ol(s.url).generate(NAME, "after", options={"num_predict": 1})
        prompts = [model.text(tokens) for tokens, _ in model.seen]
        assert not any("left" in p for p in prompts) and any("after" in p for p in prompts)


# --- OpenAI compatibility -------------------------------------------------------------------------
def test_include_usage_sends_a_usage_chunk_before_done() -> None:
    with serving() as s:
        chunks = list(oa(s.url).chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}],
                                                        max_tokens=4, stream=True,
                                                        stream_options={"include_usage": True}))
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
        assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 4
        assert all(c.usage is None for c in chunks[:-1]) and chunks[-2].choices[0].finish_reason == "length"
        plain = list(oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=2, stream=True))
        assert all(c.usage is None and c.choices for c in plain)
        last = list(oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=2, stream=True,
                                                 stream_options={"include_usage": True}))[-1]
        assert last.choices == [] and last.usage.completion_tokens == 2


def test_unknown_fields_are_ignored_and_logged_and_nulls_are_absent(caplog: pytest.LogCaptureFixture) -> None:
    with serving() as s, caplog.at_level(logging.INFO, logger="sophia.serve"):
        r = oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=2,
                                         extra_body={"cache_prompt": True, "n_probs": 0})
        assert r.choices[0].text == "he"
        assert any("ignored unknown field(s) cache_prompt, n_probs" in m for m in caplog.messages)
        body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": None,
                "stop": None, "temperature": None, "seed": None, "stream": None, "stream_options": None,
                "tools": None, "response_format": None, "logprobs": None, "user": None}
        r = httpx.post(s.url + "/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hel"
        assert ol(s.url).generate(NAME, "x", options={"num_predict": 2, "seed": None}).response == "he"


def test_developer_is_system_and_tool_results_are_refused_clearly() -> None:
    model = FakeModel()
    with serving(model) as s:
        msgs = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        oa(s.url).chat.completions.create(model=NAME, messages=msgs, max_tokens=1)
        as_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        oa(s.url).chat.completions.create(model=NAME, messages=as_system, max_tokens=1)
        assert model.seen[0][0] == model.seen[1][0] and "Be brief." in model.text(model.seen[0][0])
        tool = [*msgs, {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "1", "content": "42"}]
        with pytest.raises(openai.BadRequestError, match=r"messages\[3\]\.role': 'tool' results cannot be used"):
            oa(s.url).chat.completions.create(model=NAME, messages=tool, max_tokens=1)


def test_a_failure_mid_stream_is_an_error_event_not_a_cut_stream() -> None:
    with serving(FakeModel(fail_after=3)) as s:
        got = []
        with pytest.raises(openai.APIError, match="generation failed: RuntimeError: the fake model failed"):
            for c in oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=10, stream=True):
                got.append(c.choices[0].text)
        assert "".join(got) == "hel"
        with pytest.raises(ollama.ResponseError, match="the fake model failed"):
            list(ol(s.url).generate(NAME, "x", options={"num_predict": 10}, stream=True))
        with pytest.raises(openai.InternalServerError, match="the fake model failed"):
            oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=10)
        assert httpx.get(s.url + "/api/version").status_code == 200  # the worker lives on


def test_errors_come_in_each_apis_shape() -> None:
    with serving() as s:
        r = httpx.post(s.url + "/v1/completions", json={"model": "nope", "prompt": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = httpx.post(s.url + "/api/generate", json={"model": "nope", "prompt": "x"})
        assert r.status_code == 404 and r.json() == {"error": "model 'nope' not found (this server runs 'fake:latest')"}
        r = httpx.post(s.url + "/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]


def test_each_request_starts_from_fresh_sampling_settings() -> None:
    model = FakeModel()
    with serving(model) as s:
        oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=1, seed=7, temperature=0.9)
        oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=1)
        ol(s.url).generate(NAME, "x", options={"num_predict": 1, "seed": 3})
        ol(s.url).generate(NAME, "x", options={"num_predict": 1})
        seeds = [(sampling.seed, sampling.temperature) for _, sampling in model.seen]
        assert seeds == [(7, 0.9), (None, 0.0), (3, 0.0), (None, 0.0)]


def test_eos_ends_the_answer_with_stop() -> None:
    with serving(FakeModel(eos_after=3)) as s:
        r = oa(s.url).completions.create(model=NAME, prompt="x", max_tokens=10)
        assert r.choices[0].text == "hel" and r.choices[0].finish_reason == "stop" and EOS


def test_a_bind_beyond_loopback_without_a_key_warns(caplog: pytest.LogCaptureFixture) -> None:
    from sophia.serve.cli import bind_is_loopback

    with caplog.at_level(logging.WARNING, logger="sophia.serve"):
        assert bind_is_loopback("127.0.0.1", None) and bind_is_loopback("::1", None)
        assert bind_is_loopback("localhost", None) and not caplog.messages
        assert not bind_is_loopback("0.0.0.0", "key") and not caplog.messages
        assert not bind_is_loopback("0.0.0.0", None)
    assert caplog.messages == ["listening on 0.0.0.0 without --api-key: anyone who can reach this address can use "
                               "the model"]


def test_context_and_gpu_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """min(training context, 4096) as Ollama does; all layers on the GPU where llama.cpp has a backend."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from sophia.serve.model import default_ctx, default_gpu_layers

    assert (default_ctx(16384), default_ctx(768), default_ctx(0)) == (4096, 768, 4096)
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    assert default_gpu_layers() == -1
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    assert default_gpu_layers() == 0
