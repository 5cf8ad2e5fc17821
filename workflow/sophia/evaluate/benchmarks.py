"""The paper's benchmark suite as lm-eval sees it: which built-in task(s) each benchmark is, the
metric the paper reports, and the group it counts towards (BBH, commonsense, math, coding), plus
MultiPL-E's HumanEval and MBPP in the curriculum's languages (group coding_langs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sophia.errors import ConfigError

GROUPS = ("bbh", "commonsense", "math", "coding", "coding_langs")
MULTIPL_E_LANGUAGES = ("cpp", "java", "rs", "rb", "sh")  # MultiPL-E's codes of C++, Java, Rust, Ruby, Bash


@dataclass(frozen=True)
class Benchmark:
    name: str
    group: str
    tasks: tuple[str, ...]  # lm-eval task names; BBH's come from its subtask list
    metric: str
    filter: str
    task_dir: str  # folder under lm_eval/tasks holding the built-in YAMLs
    code: bool = False
    language: str | None = None  # MultiPL-E's language code; None: Python through lm-eval's own task

    @property
    def key(self) -> str:
        return f"{self.metric},{self.filter}"


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    # BBH 3-shot chain of thought; the answer is extracted after "the answer is".
    Benchmark("bbh", "bbh", (), "exact_match", "get-answer", "bbh/cot_fewshot"),
    Benchmark("piqa", "commonsense", ("piqa",), "acc", "none", "piqa"),
    Benchmark("winogrande", "commonsense", ("winogrande",), "acc", "none", "winogrande"),
    Benchmark("arc_easy", "commonsense", ("arc_easy",), "acc", "none", "arc"),
    Benchmark("arc_challenge", "commonsense", ("arc_challenge",), "acc", "none", "arc"),
    Benchmark("siqa", "commonsense", ("social_iqa",), "acc", "none", "siqa"),
    # GSM8k 8-shot chain of thought (Wei et al. exemplars); strict = "The answer is N." as taught.
    Benchmark("gsm8k", "math", ("gsm8k_cot",), "exact_match", "strict-match", "gsm8k"),
    Benchmark("humaneval", "coding", ("humaneval",), "pass@1", "greedy", "humaneval", code=True),
    Benchmark("mbpp", "coding", ("mbpp",), "pass@1", "greedy", "mbpp", code=True),
    # MultiPL-E: inline tasks (sophia.evaluate.multipl_e); task_dir only keeps lm-eval's task index small.
    *(Benchmark(f"{suite}-{lang}", "coding_langs", (), "pass@1", "greedy", "humaneval", code=True, language=lang)
      for suite in ("humaneval", "mbpp") for lang in MULTIPL_E_LANGUAGES),
)}


def tasks_root() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def bbh_subtasks() -> list[str]:
    """Every BBH subtask lm-eval ships (27), read from its task folder."""
    folder = tasks_root() / BENCHMARKS["bbh"].task_dir
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def lm_eval_tasks(bench: Benchmark, subtasks: list[str] | None) -> list[str]:
    if bench.name != "bbh":
        return list(bench.tasks)
    known = bbh_subtasks()
    chosen = subtasks if subtasks is not None else known
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ConfigError(f"evaluate.benchmarks.bbh.subtasks: {', '.join(unknown)} unknown to lm-eval "
                          f"(known: {', '.join(known)})")
    return [f"bbh_cot_fewshot_{s}" for s in chosen]
