rule base_model:
    output:
        report(directory("results/models/base"), category="base_model", caption="../report/loss.rst",
               patterns=["{plot,loss_curve}.png"], labels={"plot": "pretraining loss"}),
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
