# One job per curriculum step; a step's chain of phases is its path under results/adapters/.
from sophia.finetune import curricula

FINETUNE = config["finetune"]
STEPS = curricula.steps(FINETUNE["curricula"])
FINALS = curricula.finals(FINETUNE["curricula"])


def adapter_dir(model):
    """The adapter a variant serves with: gptq+<curriculum> -> results/adapters/<its last step>; None
    for base and gptq. Every rule that loads a variant asks here."""
    if not model.startswith("gptq+"):
        return None
    return f"results/adapters/{FINALS[model.split('+', 1)[1]]}"


def finetune_spec(chain):
    return spec(
        {
            "chain": chain,
            "phase": FINETUNE["phases"][curricula.phase_of(chain)],
            "lora": FINETUNE["lora"],
            "training": FINETUNE["training"],
            "reference_prompts": config["reference_prompts"],
            "generation": config["generation"],
        }
    )


def finetune_prefix(wildcards):
    parent = curricula.parent(wildcards.chain)
    return [] if parent is None else f"results/adapters/{parent}/finetune.json"


def finetune_variants(wildcards):
    """The curricula this step completes name its MLflow model (gptq+<curriculum>)."""
    finals = curricula.finals(FINETUNE["curricula"])
    return " ".join(f"--variant {shlex.quote('gptq+' + c)}" for c, final in finals.items() if final == wildcards.chain)


rule finetune:
    input:
        model=rules.quantize.output,
        data=lambda wc: f"results/data/{FINETUNE['phases'][curricula.phase_of(wc.chain)]['dataset']}",
        prefix=finetune_prefix,
    output:
        adapter="results/adapters/{chain}/adapter_model.safetensors",
        summary="results/adapters/{chain}/finetune.json",
        loss=report("results/adapters/{chain}/loss_curve.png", category="finetune", caption="../report/loss.rst",
                    labels={"chain": "{chain}"}),
    params:
        spec=lambda wc: finetune_spec(wc.chain),
        src=stage_digest("sophia.finetune"),
        prefix=lambda wc, input: f"--prefix {Path(input.prefix).parent}" if input.prefix else "",
        out=lambda wc, output: Path(output.summary).parent,
        variants=finetune_variants,
    log:
        "results/logs/finetune/{chain}.log",
    benchmark:
        "results/benchmarks/adapters/{chain}.tsv",
    wildcard_constraints:
        chain="|".join(STEPS),
    priority: CRITICAL_PATH_PRIORITY
    threads: COMPUTE["threads"]
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("finetune"),
        gpu_model=gpu_model("finetune"),
    shell:
        PYTHON + " -m sophia.finetune --spec {params.spec:q} --model {input.model} --data {input.data}"
        " {params.prefix} {params.variants} --threads {threads} --out {params.out} > {log} 2>&1"
