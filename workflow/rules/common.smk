# Shared by every stage: config validation, MLflow wiring, helpers for thin rules.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from sophia.cluster import hints as slurm_hints
from sophia import config as sophia_config
from sophia import job_benchmarks, tracking
from sophia.errors import ConfigError
from sophia.provenance import stage_digest

try:
    config.update(sophia_config.validate(config))
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# Jobs inherit these; MLFLOW_TRACKING_URI set by the user (a team server) wins over config.
os.environ["MLFLOW_TRACKING_URI"] = tracking.resolve_uri(
    os.environ.get("MLFLOW_TRACKING_URI") or config["mlflow"]["tracking_uri"]
)
os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", config["mlflow"]["experiment"])
os.environ.setdefault(tracking.ENV_ARTIFACTS, config["mlflow"]["artifact_location"])


# Jobs run the interpreter Snakemake itself runs in (the project's .venv), whatever the user's PATH:
# a bare `python` would be the system one unless an environment happens to be activated.
PYTHON = shlex.quote(sys.executable)


def spec(section):
    """A stage's settings as one JSON string: passed to its CLI and tracked by `params:`."""
    return json.dumps(section, sort_keys=True)


onstart:
    os.environ[tracking.ENV_PARENT] = tracking.start_invocation(config, sys.argv)


onsuccess:
    # Snakemake writes each job's benchmark file after the job's own MLflow run has ended.
    try:
        job_benchmarks.log_to_runs("results")
    except Exception as exc:  # every output is already made: say so loudly, but do not fail them
        print(f"warning: job benchmarks not logged to MLflow: {exc}", file=sys.stderr)
    if tracking.ENV_PARENT in os.environ:
        tracking.end_invocation(os.environ[tracking.ENV_PARENT], ok=True)


onerror:
    if tracking.ENV_PARENT in os.environ:
        tracking.end_invocation(os.environ[tracking.ENV_PARENT], ok=False)
    # on SLURM: jobs killed for their memory or time, with the rule and the resource to raise
    for hint in slurm_hints(log):
        print(hint, file=sys.stderr)


# Scheduler requests of the heavy rules, scaled by the model's size (config: compute).
COMPUTE = config["compute"]
# The fine-tuned model's chain (quantize -> finetune steps -> merge -> export -> app) is the DAG's
# longest. Without a priority, Snakemake fills free cores with evaluate and verifier jobs first and
# the chain waits: on the 2-core default run, quantize started 77 s and the second finetune step
# 218 s after their inputs were ready. With it (quantize, finetune, merge) the five finetune steps
# ran back to back and merge started 202 s earlier. Not export: the rule also exports the base
# model, which then jumped ahead of data and quantize (112 s).
CRITICAL_PATH_PRIORITY = 10
# stage: (memory MB: fixed + per GB of fp16 weights, runtime min: fixed + per GB)
_SCALE = {
    "base_model": ((4000, 3000), (60, 10)),
    "quantize": ((8000, 6000), (60, 30)),
    "finetune": ((8000, 6000), (120, 60)),
    "evaluate": ((4000, 2000), (120, 40)),
    "merge": ((8000, 8000), (30, 10)),
    "export": ((8000, 12000), (120, 60)),
}
GPU_STAGES = ("base_model", "quantize", "finetune", "evaluate")


def mem_mb(stage):
    fixed, per_gb = _SCALE[stage][0]
    return int(fixed + per_gb * COMPUTE["model_gb"])


def runtime(stage):
    fixed, per_gb = _SCALE[stage][1]
    return int(fixed + per_gb * COMPUTE["model_gb"])


# One evaluate job runs all of a variant's benchmarks one after the other, loading the model once:
# of each benchmark's budget (_SCALE["evaluate"], what a job per benchmark asked), this part is the
# model load, paid once; the rest is paid per benchmark. One benchmark asks exactly that budget.
_EVAL_LOAD = (20, 10)  # minutes: fixed + per GB of fp16 weights


def eval_runtime(n_benchmarks):
    fixed, per_gb = _SCALE["evaluate"][1]
    load = _EVAL_LOAD[0] + _EVAL_LOAD[1] * COMPUTE["model_gb"]
    return int(load + n_benchmarks * (fixed + per_gb * COMPUTE["model_gb"] - load))


def gpus(stage):
    return COMPUTE["gpus"] if stage in GPU_STAGES else 0


def gpu_model(stage):
    return COMPUTE["gpu_model"] if gpus(stage) and COMPUTE["gpu_model"] else ""
