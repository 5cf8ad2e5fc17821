# One job per curriculum step; a step's chain of phases is its path under results/adapters/.
from sophia.finetune import curricula

FINETUNE = config["finetune"]
STEPS = curricula.steps(FINETUNE["curricula"])


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
    params:
        spec=lambda wc: finetune_spec(wc.chain),
        src=source_digest("finetune", "lm", "generate", "prompt", "records"),
        prefix=lambda wc, input: f"--prefix {Path(input.prefix).parent}" if input.prefix else "",
        out=lambda wc, output: Path(output.summary).parent,
        variants=finetune_variants,
    log:
        "results/logs/finetune/{chain}.log",
    wildcard_constraints:
        chain="|".join(STEPS),
    threads: COMPUTE["threads"]
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("finetune"),
        gpu_model=gpu_model("finetune"),
    shell:
        PYTHON + " -m sophia.finetune --spec {params.spec:q} --model {input.model} --data {input.data}"
        " {params.prefix} {params.variants} --threads {threads} --out {params.out} > {log} 2>&1"
