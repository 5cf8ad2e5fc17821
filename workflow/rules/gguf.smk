# llama.cpp GGUF: results/merged/{model}/ (or the base model) -> results/gguf/{model}/ (GGUF files,
# Modelfile, parity.json). `sophia serve` runs them; see README "Use it in your editor".
from sophia.gguf import pre_tokenizer

GGUF = config["gguf"]


rule gguf:
    input:
        model=float_model,
        data=expand(rules.data.output, dataset=config["datasets"]),
    output:
        directory("results/gguf/{model}"),
    params:
        spec=spec({"gguf": {k: v for k, v in GGUF.items() if k != "models"},
                   "pre_tokenizer": pre_tokenizer(GGUF["pre_tokenizer"], config["base_model"]),
                   "reference_prompts": config["reference_prompts"]}),
        src=stage_digest("sophia.gguf"),
    log:
        "results/logs/gguf/{model}.log",
    benchmark:
        "results/benchmarks/gguf/{model}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(m) for m in GGUF["models"]) or "^$",
    priority: LEAF_PRIORITY
    threads: COMPUTE["threads"]
    # the float model and one GGUF file in memory at a time (sophia/resources.py)
    resources:
        mem_mb=mem_mb("gguf"),
        runtime=runtime("gguf"),
    shell:
        PYTHON + " -m sophia.gguf --spec {params.spec:q} --model-id {wildcards.model:q} --model {input.model}"
        " --data {input.data} --threads {threads} --out {output} > {log} 2>&1"
