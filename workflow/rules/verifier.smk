# One LEVER verifier per evaluated variant: results/verifier/{model}/ (read by its code evaluations).
VERIFIER = config["verifier"]


def verifier_spec(wildcards):
    """The verifier's own settings plus what shapes its candidates' features (tests, sandbox, data)."""
    section = {k: EVALUATE[k] for k in ("dataset_root", "batch_size", "sandbox", "rerank")}
    return spec({"verifier": VERIFIER, "evaluate": section})


rule verifier:
    input:
        unpack(eval_model_inputs),
        data=[EVALUATE["dataset_root"]] if EVALUATE["dataset_root"] else [],
    output:
        directory("results/verifier/{model}"),
    params:
        spec=verifier_spec,
        src=stage_digest("sophia.verifier"),
        args=eval_args,
    log:
        "results/logs/verifier/{model}.log",
    benchmark:
        "results/benchmarks/verifier/{model}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(m) for m in MODELS),
    threads: 1
    resources:
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        gpu=gpus("evaluate"),
        gpu_model=gpu_model("evaluate"),
    shell:
        PYTHON + " -m sophia.verifier --spec {params.spec:q} --model-id {wildcards.model:q} {params.args}"
        " --threads {threads} --out {output} > {log} 2>&1"
