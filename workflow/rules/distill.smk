# Knowledge distillation, per student name: results/distill/{name}/ (distilled) and
# results/distill/{name}/control/ (its SFT control: same student, data and budget, no teacher).
import re
import shlex

DISTILL = config["distill"]
DISTILL_FINALS = curricula.finals(FINETUNE["curricula"])


def distill_teacher_inputs(name):
    """The teacher's files when it is one of this workflow's variants (a hub id or path is passed as is)."""
    variant = DISTILL[name]["teacher"].get("variant")
    if variant is None:
        return {}
    if variant == "base":
        return {"teacher": rules.base_model.output[0]}
    inputs = {"teacher": rules.quantize.output[0]}
    if variant.startswith("gptq+"):
        inputs["teacher_adapter"] = f"results/adapters/{DISTILL_FINALS[variant.split('+', 1)[1]]}/finetune.json"
    return inputs


def distill_student_source(name):
    """Where the student starts: the base model (also the tokenizer of a scratch student), a path or a hub id."""
    ref = DISTILL[name]["student"]
    return ref.get("path") or ref.get("hub") or rules.base_model.output[0]


def distill_inputs(wildcards):
    d = DISTILL[wildcards.name]
    inputs = {"data": f"results/data/{FINETUNE['phases'][d['phase']]['dataset']}",
              **distill_teacher_inputs(wildcards.name)}
    if not d["student"].get("hub"):
        inputs["student"] = distill_student_source(wildcards.name)
    return inputs


def distill_spec(name):
    d = DISTILL[name]
    return spec({"name": name, "distill": d, "phase": FINETUNE["phases"][d["phase"]],
                 "reference_prompts": config["reference_prompts"], "generation": config["generation"]})


def distill_args(wildcards, input):
    ref = DISTILL[wildcards.name]["teacher"]
    teacher = input.teacher if "teacher" in input.keys() else (ref.get("hub") or ref["path"])
    adapter = f" --teacher-adapter {Path(input.teacher_adapter).parent}" if "teacher_adapter" in input.keys() else ""
    student = distill_student_source(wildcards.name)
    return f"--teacher {shlex.quote(str(teacher))}{adapter} --student {shlex.quote(str(student))} --data {input.data}"


def distill_gb(name):
    """(teacher, student) fp16 weights in GB: size_gb where set, else the base model's size."""
    d = DISTILL[name]
    return (d["teacher"]["size_gb"] or COMPUTE["model_gb"], d["student"]["size_gb"] or COMPUTE["model_gb"])


def distill_mem_mb(wildcards):
    # The teacher only runs forward passes (weights + activations, ~2 GB per fp16 GB); the student
    # trains: finetune's LoRA scale, or weights + gradients + AdamW moments in full fine-tuning.
    teacher, student = distill_gb(wildcards.name)
    per_student_gb = 6000 if DISTILL[wildcards.name]["lora"] is not None else 10000
    return int(8000 + 2000 * teacher + per_student_gb * student)


def distill_runtime(wildcards):
    teacher, student = distill_gb(wildcards.name)
    return int(120 + 30 * teacher + 60 * student)


DISTILL_RULE = dict(
    params=dict(spec=lambda wc: distill_spec(wc.name), args=distill_args),
    resources=dict(mem_mb=distill_mem_mb, runtime=distill_runtime, gpu=COMPUTE["gpus"],
                   gpu_model=COMPUTE["gpu_model"] or "" if COMPUTE["gpus"] else ""),
)


rule distill:
    input:
        unpack(distill_inputs),
    output:
        summary="results/distill/{name}/distill.json",
    params:
        **DISTILL_RULE["params"],
        src=stage_digest("sophia.distill"),
        out=lambda wc, output: Path(output.summary).parent,
    log:
        "results/logs/distill/{name}.log",
    benchmark:
        "results/benchmarks/distill/{name}.tsv"
    wildcard_constraints:
        name="|".join(re.escape(n) for n in DISTILL),
    priority: CRITICAL_PATH_PRIORITY
    threads: COMPUTE["threads"]
    resources:
        **DISTILL_RULE["resources"],
    shell:
        PYTHON + " -m sophia.distill --spec {params.spec:q} {params.args} --threads {threads}"
        " --out {params.out} > {log} 2>&1"


rule distill_control:
    input:
        unpack(distill_inputs),
    output:
        summary="results/distill/{name}/control/distill.json",
    params:
        **DISTILL_RULE["params"],
        src=stage_digest("sophia.distill"),
        out=lambda wc, output: Path(output.summary).parent,
    log:
        "results/logs/distill/{name}.control.log",
    benchmark:
        "results/benchmarks/distill_control/{name}.tsv"
    wildcard_constraints:
        name="|".join(re.escape(n) for n in DISTILL),
    priority: CRITICAL_PATH_PRIORITY
    threads: COMPUTE["threads"]
    resources:
        **DISTILL_RULE["resources"],
    shell:
        PYTHON + " -m sophia.distill --spec {params.spec:q} {params.args} --control --threads {threads}"
        " --out {params.out} > {log} 2>&1"
