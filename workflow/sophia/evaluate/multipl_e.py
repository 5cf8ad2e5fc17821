"""MultiPL-E (Cassano et al. 2023): HumanEval and MBPP translated to C++, Java, Rust, Ruby and Bash,
generated through lm-eval and run in the project's sandbox with each language's Debian toolchain.

lm-eval ships no MultiPL-E task, so the task is built here, as MultiPL-E runs it: the prompt is the
row's `prompt` as is (zero-shot), completions stop at the row's `stop_tokens` (read from the data,
as MultiPL-E's harness does) and are cut there once more per row, the program is
`prompt + completion + "\\n" + tests`, and it passes when it compiles and its tests exit 0
(`languages`, `toolchain`). pass@1 is the greedy completion; pass@k uses the sampled ones, as for
the Python benchmarks. Identical programs (a small model repeats itself) run once per benchmark.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sophia.errors import DataError, EvalError
from sophia.evaluate import sandbox, toolchain
from sophia.evaluate.languages import language

HUB_ID = "nuprl/MultiPL-E"
SPLIT = "test"
# MultiPL-E's completion budget (its generation scripts' --max-tokens default).
MAX_GEN_TOKS = 512


def config_name(benchmark: str) -> str:
    """`humaneval-cpp` is both the benchmark's name and the hub dataset's config."""
    return benchmark


def dataset_path(root: str | None) -> str:
    return HUB_ID if root is None else root


def dataset_kwargs(path: str) -> dict[str, Any]:
    """`datasets` keys its cache of a local folder by the folder's and the config's names, not by
    the files' content, so an edited or another copy with the same names would be read stale: a
    local copy is read afresh (it is a few rows)."""
    return {"download_mode": "force_redownload"} if path != HUB_ID else {}


@functools.cache
def stop_tokens(path: str, name: str) -> tuple[str, ...]:
    """The stop sequences the data gives its rows (one list per language in MultiPL-E); a dataset
    whose rows disagree cannot be generated with one list, so that is an error."""
    import datasets

    rows = datasets.load_dataset(path, name, split=SPLIT, **dataset_kwargs(path))
    found = {tuple(r) for r in rows["stop_tokens"]}
    if len(found) != 1:
        raise DataError(f"{path} ({name}): rows give {len(found)} different stop_tokens lists; expected one")
    return found.pop()


def _text(doc: dict[str, Any]) -> str:
    return doc["prompt"]


def _target(doc: dict[str, Any]) -> str:
    return doc["tests"]


def _keep_all(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str]]:
    return resps


def _generated(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """lm-eval's per-document metric: the share of non-empty completions (scores come from the sandbox)."""
    completions = results[0] if results and isinstance(results[0], list) else results
    return {"non_empty": sum(bool(c.strip()) for c in completions) / max(1, len(completions))}


def task_config(benchmark: str, mode: str, repeats: int, generation: dict[str, Any], path: str) -> dict[str, Any]:
    """An inline lm-eval task: `mode` greedy (pass@1) or sampled (n = repeats, pass@k)."""
    name = config_name(benchmark)
    gen = {"until": list(stop_tokens(path, name)), "max_gen_toks": MAX_GEN_TOKS, **generation}
    return {
        "task": f"sophia_{benchmark.replace('-', '_')}_{mode}",
        "dataset_path": path, "dataset_name": name, "dataset_kwargs": dataset_kwargs(path), "test_split": SPLIT,
        "output_type": "generate_until", "doc_to_text": _text, "doc_to_target": _target,
        "target_delimiter": "", "num_fewshot": 0, "unsafe_code": True,
        "generation_kwargs": gen, "repeats": repeats,
        "process_results": _generated,
        "metric_list": [{"metric": "non_empty", "aggregation": "mean", "higher_is_better": True}],
        "filter_list": [{"name": "all", "filter": [{"function": "custom", "filter_fn": _keep_all}]}],
        "metadata": {"version": 1.0, "source": f"{HUB_ID} {name}"},
    }


def task_specs(benchmark: str, spec: dict[str, Any], root: str | None) -> list[dict[str, Any]]:
    path = dataset_path(root)
    specs = [task_config(benchmark, "greedy", 1, {"do_sample": False}, path)]
    if spec["n_samples"] > 1:
        sampling = {"do_sample": True, "temperature": spec["temperature"], "top_p": spec["top_p"]}
        specs.append(task_config(benchmark, "sampled", spec["n_samples"], sampling, path))
    return specs


def cut(completion: str, stops: list[str]) -> str:
    """The completion up to its first stop sequence (MultiPL-E cuts every completion so)."""
    end = len(completion)
    for s in stops:
        i = completion.find(s)
        if i != -1:
            end = min(end, i)
    return completion[:end]


def program(doc: dict[str, Any], completion: str) -> str:
    return doc["prompt"] + cut(completion, doc["stop_tokens"]) + "\n" + doc["tests"]


def run_programs(code: str, samples: dict[str, list[dict[str, Any]]], box: sandbox.Sandbox,
                 workers: int) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """Every generated program in the language's sandbox, one record per (problem, mode, sample);
    each distinct program runs once. Returns the records, seconds and what deduplication saved."""
    jobs = []
    for task, rows in samples.items():
        mode = "greedy" if task.endswith("_greedy") else "sampled"
        for row in rows:
            resps = row["resps"][0] if row["resps"] and isinstance(row["resps"][0], list) else row["resps"]
            for i, completion in enumerate(resps):
                jobs.append((str(row["doc"]["name"]), mode, i, program(row["doc"], completion)))
    distinct = list(dict.fromkeys(j[3] for j in jobs))
    lang = language(code)
    start = time.perf_counter()
    outcomes = dict(zip(distinct, toolchain.run_many(lang, box, distinct, workers), strict=True))
    seconds = time.perf_counter() - start
    records = [{"problem": p, "mode": m, "sample": i, **outcomes[prog].to_dict()} for p, m, i, prog in jobs]
    return records, seconds, {"programs": len(jobs), "distinct": len(distinct)}


def self_test(codes: list[str], box: sandbox.Sandbox,
              fixture: Callable[[str], list[tuple[str, str, bool]]]) -> None:
    """Each language's first fixture problem, solved correctly, before any generation is spent: a
    toolchain the sandbox cannot run would otherwise score every program as an error. Only the
    correct solution: a compile is the costly part, and a broken toolchain fails every program;
    that wrong ones fail is the tests' concern (tests/test_multipl_e_toolchains.py)."""
    langs = {code: language(code) for code in codes}
    good = {code: next(prog for _, prog, ok in fixture(code) if ok) for code in codes}
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda c: box.run(good[c], launch=toolchain.launch(langs[c], box)), codes))
    for code, o in zip(codes, outcomes, strict=True):
        if not o.passed:
            raise sandbox.SandboxError(f"{code} toolchain self-test failed in the sandbox: a correct program gave "
                                       f"{o.status} ({o.reason or 'ok'}); stderr: {o.stderr[-300:]}")


def check_rows(benchmark: str, samples: dict[str, list[dict[str, Any]]], code: str) -> None:
    """Rows of another language than the benchmark's would be compiled with the wrong toolchain."""
    for rows in samples.values():
        for row in rows:
            if row["doc"].get("language") != code:
                raise EvalError(f"{benchmark}: row {row['doc'].get('name')} is in language "
                                f"{row['doc'].get('language')!r}, not {code!r}")
