# One job per model variant (sophia.evaluate_job): the model loads once for the variant's LEVER verifier,
# results/verifier/{model}/ (when a code benchmark reranks with it), and for each configured
# benchmark, results/eval/{model}/{benchmark}/; each output gets its own MLflow run. Snakemake reruns
# a job whole (it deletes every output first), so the job keeps finished outputs in RESULT_CACHE,
# keyed by the output's own settings, its stage's code and the input runs: a rerun caused by one
# benchmark's setting recomputes only that benchmark, and retrains no verifier
# (sophia/evaluate/cache.py). The verifier shares the job because, as a job of its own, its imports
# and model load would be most of its time (sophia/evaluate_job.py).
import re
import shlex

from sophia.config import model_variants
from sophia.evaluate.benchmarks import BENCHMARKS as SUITE
from sophia.evaluate.cache import uses_verifier
from sophia.forgetting import plan as forgetting_plan

EVALUATE = config["evaluate"]
VERIFIER = config["verifier"]
MODELS = EVALUATE["models"] or model_variants(FINETUNE["curricula"], config["distill"])
BENCHMARKS = list(EVALUATE["benchmarks"])

# The forgetting matrix: each variant job also measures its held-out answer losses on the curricula's
# eval splits (and those of the intermediate steps it owns), on the model it already loaded.
FORGETTING = config["forgetting"]
FORGETTING_SPLITS = forgetting_plan.splits(FINETUNE["phases"], FINETUNE["curricula"],
                                           [d["phase"] for d in config["distill"].values()])
FORGETTING_ROWS = forgetting_plan.job_rows(FINETUNE["curricula"], MODELS)


def eval_model_inputs(wildcards):
    """base -> base weights; gptq -> GPTQ weights; gptq+<curriculum> -> GPTQ weights + its adapter."""
    if wildcards.model == "base":
        return {"model": rules.base_model.output[0]}
    if wildcards.model.startswith(("distill+", "sft+")):
        return distill_eval_inputs(wildcards.model)
    inputs = {"model": rules.quantize.output[0]}
    if adapter_dir(wildcards.model):
        inputs["adapter"] = f"{adapter_dir(wildcards.model)}/finetune.json"
    return inputs


RESULT_CACHE = "results/cache"
CODE_BENCHMARKS = [b for b in BENCHMARKS if SUITE[b].code]
# Code benchmarks rerank with LEVER: the job then trains the variant's verifier first. The same
# condition puts the verifier's run into those benchmarks' cache keys.
LEVER = any(uses_verifier(EVALUATE, b) for b in BENCHMARKS)


def eval_spec():
    """The settings that reach an evaluate job: every benchmark's, and the sandbox and reranking only
    when a code benchmark runs. Any benchmark's change reruns the job; the cache recomputes only
    benchmarks whose own part (sophia.evaluate.cache.benchmark_spec) changed."""
    section = {k: v for k, v in EVALUATE.items() if k not in ("models", "sandbox", "rerank", "selfdebug")}
    if CODE_BENCHMARKS:
        section["sandbox"] = EVALUATE["sandbox"]
        section["rerank"] = EVALUATE["rerank"]
        section["selfdebug"] = EVALUATE["selfdebug"]
    return spec({"evaluate": section})


def verifier_spec():
    """The verifier's own settings plus what shapes its candidates' features (tests, sandbox, data)."""
    section = {k: EVALUATE[k] for k in ("dataset_root", "batch_size", "max_truncated_share", "sandbox", "rerank")}
    return spec({"verifier": VERIFIER, "evaluate": section})


def verifier_args(wildcards):
    if not LEVER:
        return ""
    return f"--verifier-spec {shlex.quote(verifier_spec())} --verifier {shlex.quote(f'results/verifier/{wildcards.model}')}"


def distill_eval_inputs(model):
    """distill+<name> / sft+<name>: the trained student (full weights), or its adapter on the student's start."""
    kind, name = model.split("+", 1)
    summary = f"results/distill/{name}/{'control/' if kind == 'sft' else ''}distill.json"
    if config["distill"][name]["lora"] is None:
        return {"model": summary}
    ref = config["distill"][name]["student"]
    return {"model": ref.get("path") or rules.base_model.output[0], "adapter": summary}


def forgetting_inputs(wildcards):
    """The data folders of the measured splits and the adapters of the intermediate steps this job owns."""
    if not FORGETTING["enabled"]:
        return {}
    steps = [r["chain"] for r in FORGETTING_ROWS[wildcards.model][1:]]
    return {"forgetting_data": [f"results/data/{d}" for d in FORGETTING_SPLITS],
            "forgetting_steps": [f"results/adapters/{c}/finetune.json" for c in steps]}


def forgetting_args(wildcards):
    if not FORGETTING["enabled"]:
        return ""
    rows = FORGETTING_ROWS[wildcards.model]
    settings = {"forgetting": {k: FORGETTING[k] for k in ("max_length", "batch_size")}, "splits": FORGETTING_SPLITS,
                "window": forgetting_plan.window(FINETUNE["phases"], FINETUNE["curricula"]), "rows": rows}
    parts = [f"--forgetting-spec {shlex.quote(spec(settings))}",
             f"--forgetting-out {shlex.quote(f'results/forgetting/{wildcards.model}')}"]
    parts += [f"--forgetting-data {d}=results/data/{d}" for d in FORGETTING_SPLITS]
    parts += [f"--forgetting-step {shlex.quote(r['label'] + '=results/adapters/' + r['chain'])}" for r in rows[1:]]
    return " ".join(parts)


def eval_args(wildcards, input):
    adapter = f" --adapter {Path(input.adapter).parent}" if "adapter" in input.keys() else ""
    model = Path(input.model)
    return f"--model {model.parent if model.name == 'distill.json' else model}{adapter}"


rule evaluate:
    input:
        unpack(eval_model_inputs),
        unpack(forgetting_inputs),
        data=[EVALUATE["dataset_root"]] if EVALUATE["dataset_root"] else [],
    output:
        # {{model}}: the job's wildcard, kept through expand(); one folder per configured benchmark
        [directory(p) for p in expand("results/eval/{{model}}/{benchmark}", benchmark=BENCHMARKS)],
        [directory("results/verifier/{model}")] if LEVER else [],
        [directory("results/forgetting/{model}")] if FORGETTING["enabled"] else [],
    params:
        spec=eval_spec(),
        src=stage_digest("sophia.evaluate_job"),
        args=eval_args,
        verifier_args=verifier_args,
        forgetting_args=forgetting_args,
        benchmarks=" ".join(f"--benchmark {b}" for b in BENCHMARKS),
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/eval/{model}.tsv"
    wildcard_constraints:
        # engine vllm: every variant is made by its base model's job (evaluate_vllm.smk)
        model="|".join(re.escape(m) for m in MODELS) if EVALUATE["engine"] == "hf" else "(?!)",
    threads: 1  # lm-eval scores one request batch at a time; two jobs share two cores better
    resources:
        mem_mb=mem_mb("evaluate"),  # one model in memory, benchmarks (and the verifier) one after the other
        runtime=eval_runtime(len(BENCHMARKS) + LEVER),  # the verifier samples and runs code like a benchmark
        gpu=gpus("evaluate"),
        gpu_model=gpu_model("evaluate"),
    shell:
        PYTHON + " -m sophia.evaluate_job --spec {params.spec:q} --model-id {wildcards.model:q} {params.args}"
        " {params.benchmarks} {params.verifier_args} {params.forgetting_args}"
        " --cache " + RESULT_CACHE + " --threads {threads}"
        " --out results/eval/{wildcards.model:q} > {log} 2>&1"


include: "evaluate_vllm.smk"
