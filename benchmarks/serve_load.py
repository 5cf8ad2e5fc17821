"""Benchmark: `sophia serve` under editor-like load. Concurrent clients send a mix of Ollama and
OpenAI requests (completion and chat, streamed and not) through the official `ollama` and `openai`
clients; some clients give up mid-stream and some while their request still waits in the queue, as
editors do when the user types on. Every request that stayed must get a complete answer (nothing
lost). Reports latency and queue time (p50/p95; queue time from the server's per-request log), then
sends SIGTERM while streams are in flight and times the exit. Writes a JSON + markdown record.

    .venv/bin/python benchmarks/serve_load.py --model results/gguf/gptq+tiny-alpaca
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
from record import save

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Write a function that reverses a string.", "Give me a program that checks if a number is prime.",
           "Summarize what a for loop does.", "def fibonacci(n):"]
KINDS = [(api, endpoint, stream) for api in ("ollama", "openai") for endpoint in ("completion", "chat")
         for stream in (False, True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "sophia", "serve", "--model", str(args.model), "--type", args.type,
           "--port", str(port), "--max-queue", str(args.clients * 2)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1).raise_for_status()
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sophia serve did not start:\n{log_path.read_text()}") from None
            time.sleep(0.3)


def model_name(url: str) -> str:
    return ollama.Client(host=url).list().models[0].model


def complete(clients: tuple[ollama.Client, openai.OpenAI], name: str, kind: tuple[str, str, bool], prompt: str,
             max_tokens: int) -> dict[str, Any]:
    """One request that stays to the end, through the official client; what came back, checked."""
    api, endpoint, stream = kind
    if api == "ollama":
        c = clients[0]
        opts = {"num_predict": max_tokens, "temperature": 0}
        if endpoint == "completion":
            res: Any = c.generate(name, prompt, options=opts, stream=stream)
        else:
            res = c.chat(name, [{"role": "user", "content": prompt}], options=opts, stream=stream)
        parts = list(res) if stream else [res]
        last = parts[-1]
        texts = [p.response if endpoint == "completion" else p.message.content for p in parts]
        done = bool(last.done) and last.done_reason in ("stop", "length")
        return {"complete": done and (last.done_reason == "stop" or last.eval_count == max_tokens),
                "tokens": last.eval_count, "text_chars": sum(len(t or "") for t in texts)}
    o = clients[1]
    if endpoint == "completion":
        r = o.completions.create(model=name, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=stream,
                                 **({"stream_options": {"include_usage": True}} if stream else {}))
    else:
        r = o.chat.completions.create(model=name, messages=[{"role": "user", "content": prompt}], temperature=0,
                                      max_tokens=max_tokens, stream=stream,
                                      **({"stream_options": {"include_usage": True}} if stream else {}))
    chunks = list(r) if stream else [r]
    finish = [ch.finish_reason for c_ in chunks for ch in c_.choices if ch.finish_reason]
    usage = chunks[-1].usage
    ok = len(finish) == 1 and finish[0] in ("stop", "length") and usage is not None
    return {"complete": ok and (finish[0] == "stop" or usage.completion_tokens == max_tokens),
            "tokens": usage.completion_tokens if usage else None}


def leave(url: str, name: str, when: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """A client that gives up: after the first streamed chunk ('stream'), or before any answer ('queued')."""
    body = {"model": name, "prompt": prompt, "stream": True, "options": {"num_predict": max_tokens}}
    timeout = httpx.Timeout(30.0, read=0.05 if when == "queued" else 30.0)
    try:
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=timeout) as r:
            r.raise_for_status()
            first = next(r.iter_lines())
            return {"left": "stream", "got_first_chunk": bool(first)}
    except httpx.ReadTimeout:
        return {"left": "queued", "got_first_chunk": False}


def client(i: int, args: argparse.Namespace, url: str, name: str, rows: list[dict[str, Any]]) -> None:
    rng = random.Random(args.seed * 1000 + i)
    # one client object of each kind per simulated editor, kept across its requests as an editor does
    clients = (ollama.Client(host=url, timeout=300),
               openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=300, max_retries=0))
    for n in range(args.requests):
        roll = rng.random()
        kind = KINDS[rng.randrange(len(KINDS))]
        prompt = PROMPTS[rng.randrange(len(PROMPTS))]
        start = time.perf_counter()
        row: dict[str, Any] = {"client": i, "request": n}
        try:
            if roll < args.leave_stream:
                row.update(plan="leave_stream", **leave(url, name, "stream", prompt, args.leaver_tokens))
            elif roll < args.leave_stream + args.leave_queued:
                row.update(plan="leave_queued", **leave(url, name, "queued", prompt, args.max_tokens))
            else:
                row.update(plan="stay", api=kind[0], endpoint=kind[1], stream=kind[2],
                           **complete(clients, name, kind, prompt, args.max_tokens))
        except Exception as exc:
            row.update(error=f"{type(exc).__name__}: {exc}")
        row["latency_s"] = time.perf_counter() - start
        rows.append(row)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"n": len(values), "p50": q[49], "p95": q[94], "max": max(values)}


def queue_times(log_text: str) -> tuple[list[float], dict[str, int]]:
    """Queue seconds of every request the engine ran, and how each ended, from the server log."""
    found = re.findall(r"request: prompt \d+ tokens, generated \d+, queued ([\d.]+) s, first token [^,]+, "
                       r"[\d.]+ tokens/s, ([\w ]+)$", log_text, re.M)
    ends: dict[str, int] = {}
    for _, end in found:
        ends[end] = ends.get(end, 0) + 1
    return [float(q) for q, _ in found], ends


def sigterm_exit(url: str, name: str, proc: subprocess.Popen[bytes], streams: int,
                 log_path: Path) -> dict[str, Any]:
    """Streams asking for the whole context, SIGTERM once the first one flows and the others wait:
    seconds until the process is gone, how many streams still ran to their end, what the server cancelled."""
    flowing = threading.Event()
    completed: list[bool] = []

    def stream() -> None:
        body = {"model": name, "prompt": "def", "raw": True, "stream": True, "options": {"num_predict": 100000}}
        try:
            with httpx.stream("POST", url + "/api/generate", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    flowing.set()
                    if '"done": true' in line:
                        completed.append(True)
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=stream, daemon=True) for _ in range(streams)]
    for t in threads:
        t.start()
    flowing.wait(timeout=60)
    time.sleep(0.3)  # the other streams reach the queue
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    exit_s = time.perf_counter() - start
    cancelled = re.findall(r"shutting down: (\d+) running and (\d+) queued requests cancelled", log_path.read_text())
    running, queued = (int(x) for x in cancelled[-1]) if cancelled else (0, 0)
    return {"streams": streams, "exit_s": exit_s, "exit_code": code, "streams_completed": len(completed),
            "cancelled_running": running, "cancelled_queued": queued}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a .gguf file or a gguf stage folder")
    p.add_argument("--type", default="Q4_K_M", help="which GGUF of a stage folder")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=25, help="per client")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per answer of a client that stays")
    p.add_argument("--leaver-tokens", type=int, default=2000, help="tokens asked by a client that leaves mid-stream")
    p.add_argument("--leave-stream", type=float, default=0.1, help="share of requests left after the first chunk")
    p.add_argument("--leave-queued", type=float, default=0.1, help="share of requests left before any answer")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: llama.cpp's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = p.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="serve_load-")) / "server.log"
    load_before = os.getloadavg()
    proc = start_server(args, port, log_path)
    try:
        name = model_name(url)
        rows: list[dict[str, Any]] = []
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i, args, url, name, rows)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        time.sleep(1.0)  # the last cancelled jobs reach the log
        queued_s, ends = queue_times(log_path.read_text())
        shutdown = sigterm_exit(url, name, proc, 2 * args.clients, log_path)  # a full queue
    finally:
        if proc.poll() is None:
            proc.kill()
    stayed = [r for r in rows if r["plan"] == "stay"]
    lost = [r for r in stayed if "error" in r or not r.get("complete")]
    errors_leaving = [r for r in rows if r["plan"] != "stay" and "error" in r]
    result = {
        "model": str(args.model), "type": args.type, "clients": args.clients, "requests_per_client": args.requests,
        "max_tokens": args.max_tokens, "threads": args.threads, "seed": args.seed, "wall_s": wall,
        "requests": len(rows), "stayed": len(stayed), "lost": len(lost),
        "left_mid_stream": sum(r.get("left") == "stream" for r in rows),
        "left_while_queued": sum(r.get("left") == "queued" for r in rows),
        "errors_of_leavers": len(errors_leaving),
        "latency_s": percentiles([r["latency_s"] for r in stayed]),
        "latency_s_streamed": percentiles([r["latency_s"] for r in stayed if r.get("stream")]),
        "queue_s": percentiles(queued_s), "engine_ends": ends,
        "requests_per_s": len(rows) / wall, "sigterm": shutdown, "server_log": str(log_path),
        "load_average_before": load_before,  # other work on the machine: the latencies include it
        "lost_requests": lost[:20], "kinds": {f"{a}/{e}/{'stream' if s else 'once'}": sum(
            1 for r in stayed if (r.get("api"), r.get("endpoint"), r.get("stream")) == (a, e, s)) for a, e, s in KINDS},
    }
    lat, qs = result["latency_s"], result["queue_s"]
    which = f"`{args.model}` ({args.type})" if args.model.is_dir() else f"`{args.model}`"
    table = (f"{args.clients} clients x {args.requests} requests against {which}, "
             f"{args.max_tokens} tokens per answer, mixed Ollama/OpenAI, completion/chat, streamed or not.\n\n"
             "| measure | value |\n|---|---|\n"
             f"| requests (stayed / left mid-stream / left before any answer) | {len(rows)} ({len(stayed)} / "
             f"{result['left_mid_stream']} / {result['left_while_queued']}) |\n"
             f"| of those left before any answer, still queued (dropped ungenerated) | "
             f"{ends.get('cancelled in the queue', 0)} |\n"
             f"| lost (a request that stayed without a complete answer) | {len(lost)} |\n"
             f"| latency p50 / p95 (s) | {lat.get('p50', 0):.3f} / {lat.get('p95', 0):.3f} |\n"
             f"| queue time p50 / p95 (s, server log, {qs['n']} jobs) | {qs.get('p50', 0):.3f} / "
             f"{qs.get('p95', 0):.3f} |\n"
             f"| engine ends | {', '.join(f'{k} {v}' for k, v in sorted(ends.items()))} |\n"
             f"| throughput (requests/s) | {result['requests_per_s']:.1f} |\n"
             f"| SIGTERM while {shutdown['streams']} streams ran or waited: exit (s) | {shutdown['exit_s']:.2f} "
             f"(signal exit code {shutdown['exit_code']}; {shutdown['streams_completed']} streams had finished, "
             f"{shutdown['cancelled_running']} running and {shutdown['cancelled_queued']} queued cancelled) |\n")
    metrics = {"lost": len(lost), "latency_p50_s": lat.get("p50", 0), "latency_p95_s": lat.get("p95", 0),
               "queue_p50_s": qs.get("p50", 0), "queue_p95_s": qs.get("p95", 0), "sigterm_exit_s": shutdown["exit_s"]}
    save(args.out, result, name="serve_load", params={k: str(v) for k, v in vars(args).items()}, metrics=metrics,
         markdown_body=table)
    print(table)
    if lost or shutdown["exit_s"] > 5:
        raise SystemExit(f"{len(lost)} requests lost; SIGTERM exit took {shutdown['exit_s']:.2f} s")


if __name__ == "__main__":
    main()
