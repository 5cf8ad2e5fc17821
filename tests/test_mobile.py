"""mobile/: the app built with the micro model's bundle, driven in headless Chromium against the
Python reference for the same bundle; the node unit tests of the decoding loop and tokenizer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SOPHIA_EXPORT

MOBILE = ROOT / "mobile"
ARTIFACTS = ROOT / "test-artifacts"
REQUEST = "Give me a program that checks if a number is prime."
SHORT = "Reverse a string."
CODE = "def square(x):\n    return x * x"
TOKENIZER_CASES = ["def add(a, b):\n    return a + b", "Write a function that reverses a string.",
                   "  tabs\tand\r\nCRLF", "ünïcödé ✓ 中文 🙂", "<|endoftext|> special", "x = {'k': [1, 2.5e-3]}",
                   "echo $$ $& $` $'"]
# JavaScript's String.replace expands these in a string replacement; the app must fill them literally
PROMPT_CASES = ["kill -9 $$", "perl -pe 's/x/[$&]/'", "echo \"$`\" and $' $1 $<name>", "{instruction} $$"]
NEW_TOKENS = 24


def node(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    import os

    if not (MOBILE / "node_modules").is_dir():
        pytest.fail("mobile/node_modules missing: `make setup` runs npm ci in mobile/")
    return subprocess.run(["node", *args], cwd=MOBILE, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def python_answer(bundle: Path, request: str, graph: str) -> dict[str, Any]:
    """The Python runner (LiteRT, tested equal to PyTorch generate) on the same bundle."""
    proc = subprocess.run([str(SOPHIA_EXPORT), "run", "--bundle", str(bundle), "--prompt", request, "--graph", graph,
                           "--max-new-tokens", str(NEW_TOKENS), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def app(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_app(micro_export / "bundle", tmp_path_factory.mktemp("mobile"))


def build_app(bundle: Path, root: Path) -> tuple[Path, Path]:
    """The app built with `bundle` in root/app, and root/ref.json: what the Python runner answers on it."""
    from tokenizers import Tokenizer

    built = node("build.mjs", "--bundle", str(bundle), "--out", str(root / "app"))
    assert built.returncode == 0, built.stderr
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    template = json.loads((bundle / "prompt.json").read_text())["template"]
    kv = python_answer(bundle, REQUEST, "kv")
    # the micro model's 32-token window is shorter than REQUEST's prompt: compare the graphs on SHORT
    kv_short, window = python_answer(bundle, SHORT, "kv"), python_answer(bundle, SHORT, "window")
    # the window graph stops once prompt + answer outgrow its 32 positions (its last step reads a full
    # window and adds one token); up to there it is the KV graph's answer
    assert window["tokens"] and kv_short["tokens"][: len(window["tokens"])] == window["tokens"], (kv_short, window)
    assert window["finish"] != "context" or window["prompt_tokens"] + len(window["tokens"]) == 32 + 1, window
    summary = python_answer(bundle, CODE, "kv")
    ref = {
        "bundle": str(bundle),
        "cases": [{"text": t, "ids": tok.encode(t).ids, "decoded": tok.decode(tok.encode(t).ids,
                                                                               skip_special_tokens=False)}
                  for t in TOKENIZER_CASES],
        "generate": {"request": REQUEST, "max_new_tokens": NEW_TOKENS, "tokens": kv["tokens"],
                     "prompt_ids": tok.encode(template.format(instruction=REQUEST)).ids},
        "window": {"request": SHORT, "max_new_tokens": NEW_TOKENS, "tokens": window["tokens"]},
        "summarise": {"request": CODE, "max_new_tokens": NEW_TOKENS, "tokens": summary["tokens"]},
    }
    ref["prompt_cases"] = [{"request": r, "ids": tok.encode(template.format(instruction=r.strip())).ids}
                           for r in PROMPT_CASES]
    ref["tokenizer_cases"] = [{"text": c["text"], "ids": c["ids"]} for c in ref["cases"]]
    assert kv["tokens"], kv
    path = root / "ref.json"
    path.write_text(json.dumps(ref), encoding="utf-8")
    return root / "app", path


def test_unit_tests_of_the_decoding_loop_and_tokenizer(app: tuple[Path, Path]) -> None:
    result = node("--test", "tests/unit/", env={"SOPHIA_TOKENIZER_REF": str(app[1])})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "# fail 0" in out and "# skipped 0" in out, out[-1500:]


def in_chromium(app: tuple[Path, Path], artifacts: Path = ARTIFACTS) -> dict[str, Any]:
    """mobile/tests/e2e.mjs on the built app (headless Chromium, phone viewport): its report, every check passed."""
    if not shutil.which("chromium") and not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is missing: `make setup` installs it (apt-get install chromium)")
    result = node("tests/e2e.mjs", "--app", str(app[0]), "--ref", str(app[1]), "--artifacts", str(artifacts))
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-3000:]
    report = json.loads(lines[-1])
    failed = [(r["name"], r["detail"]) for r in report["results"] if not r["ok"]]
    assert failed == [] and result.returncode == 0, failed
    return report


def test_app_in_headless_chromium_on_a_phone(app: tuple[Path, Path]) -> None:
    report = in_chromium(app)
    names = {r["name"] for r in report["results"]}
    assert {"summarise mode answers given code with the reference ids",
            "a second start works offline, with no request reaching the server",
            "a corrupt model is refused with a clear message",
            "a failed generation shows the error and leaves the page usable",
            "prompts with $$ and $& are filled literally, as in Python"} <= names
    assert (ARTIFACTS / "mobile-390x844.png").stat().st_size > 10_000


def test_build_refuses_a_corrupt_bundle(micro_export: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(micro_export / "bundle", bundle)
    (bundle / "tokenizer.json").write_text("{}")
    result = node("build.mjs", "--bundle", str(bundle), "--out", str(tmp_path / "app"))
    assert result.returncode == 2
    assert f"error: {bundle / 'tokenizer.json'}: sha256 differs from manifest.json (corrupt)" in result.stderr
    assert not (tmp_path / "app").exists()


def test_browser_benchmark_runs_both_graphs_to_a_fixed_length(app: tuple[Path, Path]) -> None:
    result = node("bench.mjs", "--app", str(app[0]), "--new-tokens", "4", "--repeats", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["graphs"]) == {"kv", "kv-steps", "window"}
    for graph, s in report["graphs"].items():
        assert [r["graph"] for r in s["runs"]] == [graph] * 3
        # EOS and stop strings are off, so every answer runs to the cap (or the window's end)
        assert all(r["tokens"] == 4 or r["finish"] == "context" for r in s["runs"]), s["runs"]
        timed = [r for r in s["runs"] if r["tokens"] > 0]
        assert s["timed_runs"] == len(timed) and s["load_ms"] > 0
        assert all(r["first_token_ms"] > 0 and r["tokens_per_s"] > 0 for r in timed), timed
        # a run that hit the window's end before its first token is left out of the figures, not counted as 0
        assert (s["first_token_ms"] is None) == (not timed)
    # the micro model's KV cache holds every prompt; its fixed window may not
    assert report["graphs"]["kv"]["timed_runs"] == report["graphs"]["kv-steps"]["timed_runs"] == 3


def test_browser_benchmark_times_a_prompt_of_a_given_length(app: tuple[Path, Path]) -> None:
    """The real-width figures: first token for a prompt of N tokens, then decode ms per token."""
    result = node("bench.mjs", "--app", str(app[0]), "--new-tokens", "3", "--repeats", "1", "--prompt-tokens", "40",
                  "--graphs", "kv,kv-steps")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for graph in ("kv", "kv-steps"):
        (run,) = report["graphs"][graph]["runs"]
        assert (run["graph"], run["tokens"]) == (graph, 3) and 37 <= run["prompt_tokens"] <= 40, run
        assert run["decode_ms_per_token"] > 0 and report["graphs"][graph]["decode_ms_per_token"] > 0
    bad = node("bench.mjs", "--app", str(app[0]), "--graphs", "kv,prefill")
    assert bad.returncode != 0 and "--graphs: unknown prefill" in bad.stderr


def test_two_signature_bundle_in_the_browser(micro_merged: Path, tmp_path: Path, mlflow_store: str) -> None:
    """litert_torch's bundle (one file, prefill and decode signatures, what the real-width model
    ships) in int4 (blockwise 4-bit linear weights, the bundle full Phi-2 needs): the app opens the
    file once, runs both signatures, and its greedy ids equal the Python runner's, with the prompt
    through prefill and one step per token alike."""
    import copy

    from conftest import EXPORT_SPEC
    from sophia.export import stage

    spec = copy.deepcopy(EXPORT_SPEC)
    spec["export"].update({"backend": "litert_torch", "precisions": ["int4"], "bundle_precision": "int4"})
    stage.run_stage(spec, "gptq+alpaca", micro_merged, tmp_path / "export")
    bundle = tmp_path / "export" / "bundle"
    generation = json.loads((bundle / "generation.json").read_text())
    assert generation["signatures"] == {"window": "prefill", "kv": "decode"}
    assert generation["models"] == {"window": "model_int4.tflite", "kv": "model_int4.tflite"}
    built = node("build.mjs", "--bundle", str(bundle), "--out", str(tmp_path / "app"))
    assert built.returncode == 0, built.stderr
    result = node("bench.mjs", "--app", str(tmp_path / "app"), "--new-tokens", "4", "--repeats", "1",
                  "--graphs", "kv,kv-steps")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    first = "Give me a program that checks if a number is prime."  # bench.mjs's first prompt
    proc = subprocess.run([str(SOPHIA_EXPORT), "run", "--bundle", str(bundle), "--prompt", first, "--no-stop",
                           "--max-new-tokens", "4", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = json.loads(proc.stdout.strip().splitlines()[-1])["tokens"]
    assert len(want) == 4
    for graph in ("kv", "kv-steps"):
        run = report["graphs"][graph]["runs"][0]
        assert run["graph"] == graph and run["ids"] == want, (graph, run, want)

