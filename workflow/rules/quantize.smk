rule quantize:
    input:
        base=rules.base_model.output,
        data=expand(rules.data.output, dataset=config["datasets"]),
    output:
        directory("results/models/gptq"),
    params:
        spec=spec(
            {
                "quantize": config["quantize"],
                "reference_prompts": config["reference_prompts"],
                "generation": config["generation"],
            }
        ),
        src=stage_digest("sophia.quantize"),
    log:
        "results/logs/quantize.log",
    benchmark:
        "results/benchmarks/models/gptq.tsv",
    priority: CRITICAL_PATH_PRIORITY
    threads: COMPUTE["threads"]
    resources:
        mem_mb=mem_mb("quantize"),
        runtime=runtime("quantize"),
        gpu=gpus("quantize"),
        gpu_model=gpu_model("quantize"),
    shell:
        PYTHON + " -m sophia.quantize --spec {params.spec:q} --base {input.base} --data {input.data}"
        " --threads {threads} --out {output} > {log} 2>&1"
