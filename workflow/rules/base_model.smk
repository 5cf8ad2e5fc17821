rule base_model:
    output:
        directory("results/models/base"),
    params:
        spec=spec(config["base_model"]),
        src=source_digest("base_model", "checkpoint"),
    log:
        "results/logs/base_model.log",
    threads: config["base_model"].get("scratch", {}).get("threads", 1)
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m sophia.base_model --spec {params.spec:q} --out {output} > {log} 2>&1"
