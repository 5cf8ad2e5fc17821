# One job per model variant x benchmark: results/eval/{model}/{benchmark}/.
import re

from sophia.config import model_variants
from sophia.evaluate.benchmarks import BENCHMARKS as SUITE

EVALUATE = config["evaluate"]
MODELS = EVALUATE["models"] or model_variants(FINETUNE["curricula"], config["distill"])
BENCHMARKS = list(EVALUATE["benchmarks"])


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


def eval_spec(wildcards):
    """Only what shapes this job's result, so changing one benchmark's setting reruns only its jobs."""
    section = {k: v for k, v in EVALUATE.items() if k not in ("models", "benchmarks", "sandbox", "rerank")}
    section["benchmarks"] = {wildcards.benchmark: EVALUATE["benchmarks"][wildcards.benchmark]}
    if SUITE[wildcards.benchmark].code:
        section["sandbox"] = EVALUATE["sandbox"]
        section["rerank"] = EVALUATE["rerank"]
    return spec({"evaluate": section})


def eval_verifier(wildcards):
    """Code benchmarks rerank with LEVER: they need the variant's verifier (rule verifier)."""
    bench = EVALUATE["benchmarks"][wildcards.benchmark]
    if SUITE[wildcards.benchmark].code and EVALUATE["rerank"]["enabled"] and bench["n_samples"] > 1:
        return {"verifier": f"results/verifier/{wildcards.model}"}
    return {}


def distill_eval_inputs(model):
    """distill+<name> / sft+<name>: the trained student (full weights), or its adapter on the student's start."""
    kind, name = model.split("+", 1)
    summary = f"results/distill/{name}/{'control/' if kind == 'sft' else ''}distill.json"
    if config["distill"][name]["lora"] is None:
        return {"model": summary}
    ref = config["distill"][name]["student"]
    return {"model": ref.get("path") or rules.base_model.output[0], "adapter": summary}


def eval_args(wildcards, input):
    adapter = f" --adapter {Path(input.adapter).parent}" if "adapter" in input.keys() else ""
    model = Path(input.model)
    verifier = f" --verifier {input.verifier}" if "verifier" in input.keys() else ""
    return f"--model {model.parent if model.name == 'distill.json' else model}{adapter}{verifier}"


rule evaluate:
    input:
        unpack(eval_model_inputs),
        unpack(eval_verifier),
        data=[EVALUATE["dataset_root"]] if EVALUATE["dataset_root"] else [],
    output:
        directory("results/eval/{model}/{benchmark}"),
    params:
        spec=eval_spec,
        src=stage_digest("sophia.evaluate"),
        args=eval_args,
    log:
        "results/logs/evaluate/{model}/{benchmark}.log",
    benchmark:
        "results/benchmarks/eval/{model}/{benchmark}.tsv",
    wildcard_constraints:
        model="|".join(re.escape(m) for m in MODELS),
        benchmark="|".join(BENCHMARKS),
    threads: 1  # lm-eval scores one request batch at a time; two jobs share two cores better
    resources:
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        gpu=gpus("evaluate"),
        gpu_model=gpu_model("evaluate"),
    shell:
        PYTHON + " -m sophia.evaluate --spec {params.spec:q} --model-id {wildcards.model:q} {params.args}"
        " --benchmark {wildcards.benchmark} --threads {threads} --out {output} > {log} 2>&1"
