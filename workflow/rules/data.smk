rule data:
    input:
        tokenizer=rules.base_model.output,
        source=lambda wc: config["datasets"][wc.dataset].get("path") or [],
    output:
        directory("results/data/{dataset}"),
    params:
        spec=lambda wc: spec(config["datasets"][wc.dataset]),
        src=source_digest("data", "prompt"),
    log:
        "results/logs/data/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(config["datasets"]),
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        PYTHON + " -m sophia.data --name {wildcards.dataset} --spec {params.spec:q}"
        " --tokenizer {input.tokenizer} --out {output} > {log} 2>&1"
