rule base_model:
    output:
        directory("results/models/base"),
    params:
        spec=spec(config["base_model"]),
        src=stage_digest("sophia.base_model"),
    log:
        "results/logs/base_model.log",
    benchmark:
        "results/benchmarks/models/base.tsv",
    threads: config["base_model"].get("scratch", {}).get("threads", 1)
    resources:
        mem_mb=mem_mb("base_model"),
        runtime=runtime("base_model"),
        gpu=gpus("base_model"),
        gpu_model=gpu_model("base_model"),
    shell:
        PYTHON + " -m sophia.base_model --spec {params.spec:q} --out {output} > {log} 2>&1"
