"""HumanEval and MBPP through lm-eval, scored in the project's sandbox.

lm-eval's own `humaneval`/`mbpp` tasks load `evaluate.load("code_eval")` from the hub when their
YAML is read, and execute code with `code_eval`'s in-process guard. So the task configs are built
here from the *installed* built-in YAMLs (prompt, stop strings, few-shot examples and split come
from lm-eval itself, so they cannot drift), with only the metric replaced: lm-eval generates and
reports how many completions compile; the programs then run in parallel in `sandbox` and pass@k
is computed from their outcomes.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sophia.evaluate.benchmarks import Benchmark, tasks_root

BUILTIN_YAML = {"humaneval": "humaneval/humaneval.yaml", "mbpp": "mbpp/mbpp.yaml"}
# Keys taken over unchanged from the built-in task.
INHERITED = ("dataset_path", "dataset_name", "test_split", "output_type", "doc_to_text", "doc_to_target",
             "target_delimiter", "num_fewshot", "unsafe_code")


def builtin_config(name: str) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(tasks_root() / BUILTIN_YAML[name], resolve_func=False)


def builtin_fewshot_samples(name: str) -> list[dict[str, Any]] | None:
    """MBPP's three few-shot examples live in a function of the built-in utils.py, which cannot
    be imported offline (it loads code_eval); read the literal it returns without running it."""
    cfg = builtin_config(name).get("fewshot_config") or {}
    ref = cfg.get("samples")
    if not isinstance(ref, str):
        return ref
    module, _, func = ref.rpartition(".")
    tree = ast.parse(Path(module + ".py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == func:
            for stmt in node.body:
                if isinstance(stmt, ast.Return) and stmt.value is not None:
                    return ast.literal_eval(stmt.value)
    raise ValueError(f"{module}.py: no literal return in {func}()")


def compiles(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """lm-eval's per-document metric: share of completions whose program parses."""
    completions = results[0] if results and isinstance(results[0], list) else results
    ok = 0
    for completion in completions:
        try:
            compile(_source(doc, completion), "<completion>", "exec")
            ok += 1
        except (SyntaxError, ValueError):
            pass
    return {"compiles": ok / max(1, len(completions))}


def _keep_all(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str]]:
    return resps


def task_config(bench: Benchmark, mode: str, repeats: int, generation: dict[str, Any],
                dataset: dict[str, Any]) -> dict[str, Any]:
    """An inline lm-eval task: `mode` greedy (pass@1) or sampled (n = repeats, pass@k)."""
    base = builtin_config(bench.name)
    cfg: dict[str, Any] = {k: base[k] for k in INHERITED if k in base}
    cfg.update(dataset)
    gen = dict(base["generation_kwargs"])
    gen.update(generation)
    cfg.update({
        "task": f"sophia_{bench.name}_{mode}",
        "generation_kwargs": gen,
        "repeats": repeats,
        "process_results": compiles,
        "metric_list": [{"metric": "compiles", "aggregation": "mean", "higher_is_better": True}],
        "filter_list": [{"name": "all", "filter": [{"function": "custom", "filter_fn": _keep_all}]}],
        "metadata": {"version": 1.0, "builtin": BUILTIN_YAML[bench.name]},
    })
    samples = builtin_fewshot_samples(bench.name)
    if samples is not None:
        few = dict(base.get("fewshot_config") or {})
        few["samples"] = _constant(samples)
        cfg["fewshot_config"] = few
    return cfg


def _constant(value: list[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    return lambda: value


def _source(doc: dict[str, Any], completion: str) -> str:
    """The candidate code alone: HumanEval completes the prompt's signature, MBPP writes all of it."""
    return doc["prompt"] + completion if "entry_point" in doc else completion


def program(doc: dict[str, Any], completion: str) -> str:
    """Candidate plus its tests, as the benchmark defines them."""
    if "entry_point" in doc:  # HumanEval: tests define check(candidate)
        return f"{doc['prompt']}{completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"
    setup = doc.get("test_setup_code") or ""
    tests = "\n".join(doc["test_list"])
    return f"{completion}\n\n{setup}\n{tests}\n"


def problem_id(doc: dict[str, Any]) -> str:
    return str(doc["task_id"])
