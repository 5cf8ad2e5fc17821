# Shared by every stage: config validation, MLflow wiring, helpers for thin rules.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from sophia.cluster import hints as slurm_hints
from sophia import config as sophia_config
from sophia import job_benchmarks, resources, tracking
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
# longest: without a priority, Snakemake fills free cores with evaluate jobs first and the chain
# waits. data feeds quantize and every finetune step. The distillation pair waits for its teacher,
# the last fine-tuned model, and two variants' evaluate jobs wait for it, so it shares the priority.
CRITICAL_PATH_PRIORITY = 10
# export (and so the app) ahead of evaluate jobs, behind the critical path: above it, the base
# model's export would delay data and quantize; with none, it would run last, alone on one core.
BEFORE_EVALUATE_PRIORITY = 1
# GGUF files are leaves (nothing in the DAG reads them), evaluate jobs are not (the report waits for
# all of them): the GGUF jobs go last, beside the last evaluate job, instead of leaving it alone on
# one core at the end of the run.
LEAF_PRIORITY = -1


def mem_mb(stage):
    return resources.mem_mb(stage, COMPUTE)


def runtime(stage):
    return resources.runtime(stage, COMPUTE)


def eval_runtime(n_benchmarks):
    return resources.eval_runtime(n_benchmarks, COMPUTE)


def gpus(stage):
    return resources.gpus(stage, COMPUTE)


def gpu_model(stage):
    return COMPUTE["gpu_model"] if gpus(stage) and COMPUTE["gpu_model"] else ""
