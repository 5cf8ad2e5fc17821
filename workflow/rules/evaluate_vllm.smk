# evaluate.engine vllm: one job per base model (sophia.evaluate_vllm_job). Its vLLM server loads the
# base weights once and serves the base and every LoRA adapter on it; each variant still gets its
# verifier, benchmark folders, MLflow runs, cache entries and forgetting losses exactly as the hf
# engine's per-variant job (rule evaluate) makes them. Why one job and not a server job that variant
# jobs call: a server must outlive its callers, which neither a SLURM job nor a Snakemake job does
# cleanly (docs/evaluation.md, engines).
from types import SimpleNamespace


def vllm_groups():
    """base model input -> its variants, in MODELS order; a group is named by its first variant."""
    groups = {}
    for m in MODELS:
        model = str(eval_model_inputs(SimpleNamespace(model=m))["model"])
        groups.setdefault(model, []).append(m)
    return {members[0]: {"model": model, "members": members} for model, members in groups.items()}


def vllm_variant(m):
    """One member of a group as sophia.evaluate_vllm_job takes it."""
    inputs = eval_model_inputs(SimpleNamespace(model=m))
    v = {"model_id": m, "adapter": str(Path(inputs["adapter"]).parent) if "adapter" in inputs else None,
         "out": f"results/eval/{m}", "verifier": f"results/verifier/{m}" if LEVER else None, "forgetting": None}
    if FORGETTING["enabled"]:
        rows = FORGETTING_ROWS[m]
        v["forgetting"] = {
            "spec": {"forgetting": {k: FORGETTING[k] for k in ("max_length", "batch_size")},
                     "splits": FORGETTING_SPLITS,
                     "window": forgetting_plan.window(FINETUNE["phases"], FINETUNE["curricula"]), "rows": rows},
            "steps": {r["label"]: f"results/adapters/{r['chain']}" for r in rows[1:]},
            "data": {d: f"results/data/{d}" for d in FORGETTING_SPLITS},
            "out": f"results/forgetting/{m}"}
    return v


def vllm_model_dir(model):
    return str(Path(model).parent) if Path(model).name == "distill.json" else model


if EVALUATE["engine"] == "vllm":
    for _name, _group in vllm_groups().items():

        rule:
            name:
                f"evaluate_vllm_{re.sub('[^A-Za-z0-9_]', '_', _name)}"
            input:
                model=_group["model"],
                adapters=[eval_model_inputs(SimpleNamespace(model=m)).get("adapter") for m in _group["members"]
                          if "adapter" in eval_model_inputs(SimpleNamespace(model=m))],
                forgetting=[p for m in _group["members"]
                            for p in sum(forgetting_inputs(SimpleNamespace(model=m)).values(), [])],
                data=[EVALUATE["dataset_root"]] if EVALUATE["dataset_root"] else [],
            output:
                [directory(f"results/eval/{m}/{b}") for m in _group["members"] for b in BENCHMARKS],
                [directory(f"results/verifier/{m}") for m in _group["members"]] if LEVER else [],
                [directory(f"results/forgetting/{m}") for m in _group["members"]] if FORGETTING["enabled"] else [],
            params:
                spec=eval_spec(),
                src=stage_digest("sophia.evaluate_vllm_job"),
                model=vllm_model_dir(_group["model"]),
                variants=json.dumps([vllm_variant(m) for m in _group["members"]], sort_keys=True),
                verifier=f"--verifier-spec {shlex.quote(verifier_spec())}" if LEVER else "",
                benchmarks=" ".join(f"--benchmark {b}" for b in BENCHMARKS),
                engine_log=f"results/logs/evaluate/vllm-server-{_name}.log",
            log:
                f"results/logs/evaluate/vllm-{_name}.log",
            benchmark:
                f"results/benchmarks/eval/vllm-{_name}.tsv"
            threads: 1
            resources:
                mem_mb=mem_mb("evaluate"),
                runtime=eval_runtime((len(BENCHMARKS) + LEVER) * len(_group["members"])),
                gpu=gpus("evaluate"),
                gpu_model=gpu_model("evaluate"),
            shell:
                PYTHON + " -m sophia.evaluate_vllm_job --spec {params.spec:q} --model {params.model:q}"
                " --variants {params.variants:q} {params.benchmarks} {params.verifier}"
                " --cache " + RESULT_CACHE + " --engine-log {params.engine_log:q}"
                " --threads {threads} --out results/eval > {log} 2>&1"
