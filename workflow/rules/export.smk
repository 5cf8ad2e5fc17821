# On-device export: results/merged/{model}/ (float weights) -> results/export/{model}/ (TFLite + bundle).
EXPORT = config["export"]


def merge_inputs(wildcards):
    inputs = {"model": rules.quantize.output[0]}
    if adapter_dir(wildcards.model):
        inputs["adapter"] = f"{adapter_dir(wildcards.model)}/finetune.json"
    return inputs


rule merge:
    input:
        unpack(merge_inputs),
    output:
        directory("results/merged/{model}"),
    params:
        spec=spec({"merge_max_abs": EXPORT["parity"]["merge_max_abs"]}),
        src=stage_digest("sophia.export.merge"),
        adapter=lambda wc, input: f"--adapter {Path(input.adapter).parent}" if "adapter" in input.keys() else "",
    log:
        "results/logs/merge/{model}.log",
    benchmark:
        "results/benchmarks/merged/{model}.tsv",
    wildcard_constraints:
        model=r"gptq(\+[A-Za-z0-9_.-]+)?",
    priority: CRITICAL_PATH_PRIORITY
    threads: COMPUTE["threads"]
    resources:
        mem_mb=mem_mb("merge"),
        runtime=runtime("merge"),
    shell:
        PYTHON + " -m sophia.export.merge --spec {params.spec:q} --model-id {wildcards.model:q} --gptq {input.model}"
        " {params.adapter} --out {output} > {log} 2>&1"


def float_model(wildcards):
    return rules.base_model.output[0] if wildcards.model == "base" else f"results/merged/{wildcards.model}"


rule export:
    input:
        model=float_model,
    output:
        directory("results/export/{model}"),
    params:
        spec=spec({"export": {k: v for k, v in EXPORT.items() if k != "models"},
                   "reference_prompts": config["reference_prompts"]}),
        src=stage_digest("sophia.export"),
    log:
        "results/logs/export/{model}.log",
    benchmark:
        "results/benchmarks/export/{model}.tsv",
    wildcard_constraints:
        model="|".join(re.escape(m) for m in EXPORT["models"]) or "^$",
    priority: BEFORE_EVALUATE_PRIORITY
    threads: COMPUTE["threads"]
    resources:
        mem_mb=mem_mb("export"),
        runtime=runtime("export"),
    shell:
        PYTHON + " -m sophia.export --spec {params.spec:q} --model-id {wildcards.model:q} --model {input.model}"
        " --threads {threads} --out {output} > {log} 2>&1"
