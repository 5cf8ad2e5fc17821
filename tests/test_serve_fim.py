"""`sophia serve` with fill-in-the-middle for real: a micro GGUF whose vocabulary has FIM tokens
(built here: a byte-level BPE with <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|> as special tokens,
a randomly initialised tiny Phi, llama.cpp's converter), served by the real CLI in its own process,
driven through the official clients. Also: SIGTERM with streams in flight."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from conftest import ROOT

pytestmark = pytest.mark.server

EOS = "<|endoftext|>"
FIM = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
NAME = "fim:f16"


@pytest.fixture(scope="module")
def fim_gguf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny random Phi with FIM special tokens, as an f16 GGUF (and its HF tokenizer)."""
    import torch
    from sophia.gguf.tools import convert, converter_src
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("fim")
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS, *FIM], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([inspect.getsource(m) for m in (json.decoder, json.encoder, textwrap)], trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
                                 model_max_length=4096)
    torch.manual_seed(0)
    cfg = PhiConfig(vocab_size=len(hf), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                    num_attention_heads=4, max_position_embeddings=4096, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    hf_dir = root / "hf"
    PhiForCausalLM(cfg).save_pretrained(hf_dir)
    hf.save_pretrained(hf_dir)
    out = root / "model-f16.gguf"
    convert(converter_src(None), hf_dir, out, "gpt-2", root / "convert.log")
    return {"path": out, "tokenizer": hf, "ids": [hf.convert_tokens_to_ids(t) for t in FIM]}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(path: Path, log_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "sophia", "serve", "--model", str(path), "--name", NAME, "--port", str(port),
           "--threads", "1", *extra]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/api/version", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sophia serve did not start:\n{log_path.read_text()}")
            time.sleep(0.3)


CTX = 64


@pytest.fixture(scope="module")
def server(fim_gguf: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    log_path = tmp_path_factory.mktemp("fim-serve") / "serve.log"
    proc, url = start(fim_gguf["path"], log_path, "--ctx", str(CTX))
    try:
        yield {"url": url, "log": log_path, **fim_gguf}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def greedy(path: Path, tokens: list[int], n: int) -> list[int]:
    """llama.cpp's own greedy continuation of `tokens`, outside the server."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=CTX, n_threads=1, verbose=False)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        out = []
        for t in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(vocab, t) or len(out) == n:
                break
            out.append(int(t))
        return out
    finally:
        llm.close()


def bos(server: dict[str, Any]) -> list[int]:
    """The BOS this GGUF asks for (none, or one), as llama.cpp reads the file."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(server["path"]).encode(), params)
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        return [llama_cpp.llama_vocab_bos(vocab)] if llama_cpp.llama_vocab_get_add_bos(vocab) else []
    finally:
        llama_cpp.llama_model_free(model)


def test_show_offers_fill_in_the_middle(server: dict[str, Any]) -> None:
    shown = ollama.Client(host=server["url"]).show(NAME)
    assert shown.capabilities == ["completion", "insert"]
    assert "{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>" in shown.template


def test_fill_in_the_middle_completes_with_llama_cpps_greedy_tokens(server: dict[str, Any]) -> None:
    tok, (pre, suf, mid) = server["tokenizer"], server["ids"]
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    want_prompt = [*bos(server), pre, *tok.encode(prefix), suf, *tok.encode(suffix), mid]
    n = 6
    want = greedy(server["path"], want_prompt, n)
    r = ollama.Client(host=server["url"]).generate(NAME, prefix, suffix=suffix, options={"num_predict": n})
    assert r.context == want_prompt + want and r.done and r.done_reason == ("length" if len(want) == n else "stop")
    c = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    o = c.completions.create(model=NAME, prompt=prefix, suffix=suffix, max_tokens=n, temperature=0)
    assert o.choices[0].text == r.response and o.usage.prompt_tokens == len(want_prompt)
    assert o.usage.completion_tokens == len(want)


def test_user_text_cannot_forge_fim_tokens(server: dict[str, Any]) -> None:
    pre, suf, mid = server["ids"]
    r = ollama.Client(host=server["url"]).generate(NAME, "x = '<|fim_suffix|>'", suffix="<|fim_middle|>",
                                                   options={"num_predict": 1})
    prompt = r.context[: r.prompt_eval_count]
    assert prompt.count(pre) == prompt.count(suf) == prompt.count(mid) == 1 and prompt[-1] == mid


def test_a_long_file_keeps_the_text_around_the_cursor(server: dict[str, Any]) -> None:
    tok, (pre, suf, mid) = server["tokenizer"], server["ids"]
    prefix = "".join(f"line_{i} = {i}\n" for i in range(40)) + "def near_cursor("
    suffix = "):\n    pass\n" + "".join(f"after_{i} = {i}\n" for i in range(40))
    n = 4
    r = ollama.Client(host=server["url"]).generate(NAME, prefix, suffix=suffix, options={"num_predict": n})
    prompt = r.context[: r.prompt_eval_count]
    b = bos(server)
    assert prompt[: len(b) + 1] == [*b, pre] and prompt[-1] == mid and len(prompt) == CTX - n
    kept_prefix, kept_suffix = prompt[len(b) + 1: prompt.index(suf)], prompt[prompt.index(suf) + 1: -1]
    full_prefix, full_suffix = tok.encode(prefix), tok.encode(suffix)
    assert 0 < len(kept_prefix) < len(full_prefix) and full_prefix[-len(kept_prefix):] == kept_prefix
    assert 0 < len(kept_suffix) < len(full_suffix) and full_suffix[: len(kept_suffix)] == kept_suffix
    assert tok.decode(kept_prefix).endswith("def near_cursor(") and tok.decode(kept_suffix).startswith("):\n")


def test_sigterm_with_streams_in_flight_exits_within_5_s(fim_gguf: dict[str, Any], tmp_path: Path) -> None:
    """Three clients reading long streams (one generating, two queued): SIGTERM ends the process
    within 5 s (uvicorn gives requests 2 s, then the engine cancels every job)."""
    import threading

    proc, url = start(fim_gguf["path"], tmp_path / "serve.log")  # default context: the model's 4096
    body = {"model": NAME, "prompt": "def", "raw": True, "options": {"num_predict": 100000}}
    streaming = threading.Event()
    done: list[str] = []  # the done_reason of every stream that got its last chunk

    def read() -> None:
        try:
            with httpx.stream("POST", url + "/api/generate", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    streaming.set()
                    if not line.strip():
                        continue
                    chunk = json.loads(line)
                    if chunk.get("done"):
                        done.append(chunk.get("done_reason"))
        except (httpx.HTTPError, ValueError):  # the connection cut mid-line by the shutdown
            pass

    readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
    try:
        for t in readers:
            t.start()
        assert streaming.wait(timeout=30)
        time.sleep(0.1)  # the others reach the queue; the tiny model fills its context in seconds
        start_s = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - start_s < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "serve.log").read_text()
    # it is the shutdown that ended them, not the answers running out: the one generating and those
    # queued behind it (a third client may not have reached the queue yet on a busy machine)
    ended = re.search(r"shutting down: (\d+) running and (\d+) queued requests cancelled", log)
    # (the tiny model may fill its short context before the signal: that stream ends by length)
    assert ended and ended[1] == "1" and int(ended[2]) >= 1, log[-3000:]
    assert all(reason in ("cancelled", "length") for reason in done) and len(done) < len(readers), done
