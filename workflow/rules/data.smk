rule data:
    input:
        tokenizer=rules.base_model.output,
        source=lambda wc: config["datasets"][wc.dataset].get("path") or [],
    output:
        directory("results/data/{dataset}"),
    params:
        spec=lambda wc: spec(config["datasets"][wc.dataset]),
        src=stage_digest("sophia.data"),
    log:
        "results/logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/data/{dataset}.tsv",
    wildcard_constraints:
        dataset="|".join(config["datasets"]),
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        PYTHON + " -m sophia.data --name {wildcards.dataset} --spec {params.spec:q}"
        " --tokenizer {input.tokenizer} --out {output} > {log} 2>&1"
