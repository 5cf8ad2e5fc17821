# The comparison of every evaluated variant: results/report/.
REPORT_ADAPTERS = {m.split("+", 1)[1]: adapter_dir(m) for m in MODELS if adapter_dir(m)}
NEEDS_GPTQ = any(m != "base" for m in MODELS)
# Students in the report come with their control (the comparison needs both).
REPORT_STUDENTS = [n for n in config["distill"] if f"distill+{n}" in MODELS or f"sft+{n}" in MODELS]


def report_args(wildcards, input):
    gptq = f" --gptq {input.gptq}" if NEEDS_GPTQ else ""
    adapters = "".join(f" --adapter {name}={path}" for name, path in REPORT_ADAPTERS.items())
    students = "".join(f" --distill {n}=results/distill/{n}" for n in REPORT_STUDENTS)
    forgetting = "".join(f" --forgetting {shlex.quote(f)}" for f in input.forgetting)
    return f"--base {input.base}{gptq}{adapters}{students}{forgetting}"


def report_spec():
    """What shapes the report: intervals, the variants, published rows, and for the forgetting
    matrix its bootstrap and the curricula (which step follows which, on which data)."""
    phases = {name: {k: p[k] for k in ("dataset", "tasks")} for name, p in FINETUNE["phases"].items()}
    return spec({"confidence": EVALUATE["confidence"], "models": MODELS, "reference": config["report"]["reference"],
                 "forgetting": {k: FORGETTING[k] for k in ("bootstrap", "seed")} if FORGETTING["enabled"] else None,
                 "curricula": FINETUNE["curricula"], "phases": phases})


rule report:
    localrule: True  # cheap: on a cluster it runs on the submitting host
    input:
        evals=expand("results/eval/{model}/{benchmark}", model=MODELS, benchmark=BENCHMARKS),  # rule evaluate
        base=rules.base_model.output[0],
        gptq=[rules.quantize.output[0]] if NEEDS_GPTQ else [],
        adapters=[f"{path}/finetune.json" for path in REPORT_ADAPTERS.values()],
        students=[f"results/distill/{n}/{c}distill.json" for n in REPORT_STUDENTS for c in ("", "control/")],
        forgetting=expand("results/forgetting/{model}", model=MODELS) if FORGETTING["enabled"] else [],  # evaluate
    output:
        # Snakemake's own report (snakemake --report results/report.html) shows these files.
        report(directory("results/report"), category="report", caption="../report/results.rst",
               patterns=["{name,table|protocol}.md", "{name,table|forgetting}.csv", "{name,benchmarks|forgetting}.png"],
               labels={"file": "{name}"}),
    params:
        spec=report_spec(),
        src=stage_digest("sophia.report"),
        args=report_args,
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        PYTHON + " -m sophia.report --spec {params.spec:q} --eval {input.evals} {params.args} --out {output} > {log} 2>&1"
