"""End to end: the real Snakemake DAG on the micro config, in a temporary working directory."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MicroRun, micro_config, snakemake, write_config

pytestmark = pytest.mark.e2e


def planned_jobs(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    assert result.returncode == 0, result.stderr + result.stdout
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_full_run_produces_every_output(micro_run: MicroRun) -> None:
    workdir, result = micro_run.workdir, micro_run.result
    assert result.returncode == 0, result.stderr[-3000:]
    base = workdir / "results" / "models" / "base"
    assert (base / "model.safetensors").is_file() and (base / "README.md").is_file()
    for dataset, tasks in (("alpaca", ["instruct"]), ("tiny", ["codegen", "summary"])):
        out = workdir / "results" / "data" / dataset
        assert json.loads((out / "stats.json").read_text())["dataset"] == dataset
        for task in tasks:
            assert (out / task / "train.jsonl").stat().st_size > 0
            assert (out / task / "eval.jsonl").stat().st_size > 0
    gptq = workdir / "results" / "models" / "gptq"
    assert json.loads((gptq / "config.json").read_text())["quantization_config"]["bits"] == 4
    assert json.loads((gptq / "quantize.json").read_text())["size_ratio"] > 1
    assert not (workdir / "logs").exists()  # gptqmodel's ./logs went into the output
    for chain in ("alpaca", "tiny_codegen", "tiny_codegen/tiny_summary", "alpaca/tiny_mixed",
                  "tiny_codegen/tiny_summary/alpaca"):
        summary = json.loads((workdir / "results" / "adapters" / chain / "finetune.json").read_text())
        assert summary["chain"] == chain and (workdir / "results" / "logs" / "finetune" / f"{chain}.log").is_file()
    for model, bench in (("base", "piqa"), ("base", "humaneval"), ("gptq+alpaca", "piqa"),
                         ("gptq+alpaca", "humaneval")):
        scores = json.loads((workdir / "results" / "eval" / model / bench / "scores.json").read_text())
        assert scores["model"] == model and 0 <= scores["score"]["value"] <= 1
    executions = (workdir / "results" / "eval" / "gptq+alpaca" / "humaneval" / "executions.jsonl").read_text()
    assert len(executions.splitlines()) == 2 * 3  # 2 problems x (1 greedy + 2 sampled)
    table = (workdir / "results" / "report" / "table.md").read_text()
    assert "| base |" in table and "| gptq+alpaca |" in table
    assert "[Coding](protocol.md#coding)" in table and "; cut " in table  # truncation and protocol links
    assert '<a id="humaneval"></a>' in (workdir / "results" / "report" / "protocol.md").read_text()
    # MultiPL-E through the DAG (bash in the micro study): its folder per variant and its report group
    shell = json.loads((workdir / "results" / "eval" / "gptq+alpaca" / "humaneval-sh" / "scores.json").read_text())
    assert shell["group"] == "coding_langs" and shell["protocol"]["toolchain"].startswith("GNU bash")
    assert {"pass@1", "pass@2"} <= set(shell["metrics"]) and shell["executions"]["programs"] == 1 + 2
    assert "[Coding (curriculum languages)](protocol.md#coding_langs)" in table
    assert (workdir / "results" / "report" / "benchmarks.png").stat().st_size > 0
    # the forgetting matrix: every evaluated variant's held-out loss on every curriculum dataset
    forgetting = (workdir / "results" / "report" / "forgetting.csv").read_text().splitlines()
    cells = {tuple(line.split(",")[:2]) for line in forgetting[1:]}
    splits = ("alpaca/instruct", "tiny/codegen", "tiny/summary")
    assert {(m, d) for m in ("base", "gptq+alpaca") for d in splits} <= cells
    assert (workdir / "results" / "report" / "forgetting.png").stat().st_size > 0 and "## Forgetting" in table
    for log in ("base_model.log", "data/alpaca.log", "data/tiny.log", "quantize.log", "report.log",
                "evaluate/gptq+alpaca.log"):
        assert (workdir / "results" / "logs" / log).is_file()
    # the export rule hands the converter relative paths (results/export/...) and onnx2tf runs elsewhere
    exported = workdir / "results" / "export" / "gptq+alpaca"
    assert json.loads((exported / "parity.json").read_text())["failures"] == []
    assert (exported / "window_fp32.tflite").is_file() and (exported / "kv_fp32.tflite").is_file()
    assert (workdir / "results" / "mobile" / "index.html").is_file()
    # Snakemake's benchmark: one file per job, mirroring the output's path
    for bench in ("models/base", "models/gptq", "data/alpaca", "adapters/tiny_codegen/tiny_summary/alpaca",
                  "eval/gptq+alpaca", "report", "merged/gptq+alpaca", "export/gptq+alpaca", "mobile"):
        header = (workdir / "results" / "benchmarks" / f"{bench}.tsv").read_text().splitlines()[0]
        assert header.startswith("s\th:m:s\tmax_rss"), bench
    leftovers = [p for p in (workdir / "results").rglob(".*tmp-*")]
    assert not leftovers
    # one evaluate job per variant kept each computed benchmark folder in the result cache
    from sophia.evaluate import cache

    entries = sorted((workdir / "results" / "cache" / "evaluate").iterdir())
    evaluate = micro_config()["evaluate"]
    assert len(entries) == len(evaluate["models"]) * len(evaluate["benchmarks"])
    assert all(cache.lookup(e.parent, e.name) for e in entries)
    assert not list((workdir / "results" / "eval").rglob(cache.HIT))


def test_mlflow_runs_nest_and_link(micro_run: MicroRun) -> None:
    from mlflow import MlflowClient

    workdir = micro_run.workdir
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sophia")
    assert exp.artifact_location == (workdir / "results" / "mlartifacts").resolve().as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    parent = next(r for name, r in runs.items() if name.startswith("workflow"))
    assert parent.info.status == "FINISHED"
    base = runs["base_model:scratch"]
    for name in ("base_model:scratch", "data:alpaca", "data:tiny", "quantize:w4g32"):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sophia.git_commit"]
        assert run.data.tags["sophia.config_digest"]
    for name in ("data:alpaca", "data:tiny"):
        assert runs[name].data.tags["sophia.input.base_model"] == base.info.run_id
    quantize = runs["quantize:w4g32"].data
    assert quantize.tags["sophia.input.base_model"] == base.info.run_id
    assert quantize.tags["sophia.input.data.tiny"] == runs["data:tiny"].info.run_id
    assert {"size_ratio", "ppl_before", "ppl_after", "quantize_seconds", "peak_rss_mb"} <= set(quantize.metrics)
    assert runs["data:alpaca"].data.metrics["instruct.train.rows"] == 20
    step = runs["finetune:tiny_codegen/tiny_summary/alpaca"].data
    assert step.tags["sophia.input.prefix"] == runs["finetune:tiny_codegen/tiny_summary"].info.run_id
    assert step.tags["sophia.input.model"] == runs["quantize:w4g32"].info.run_id
    assert step.tags["mlflow.parentRunId"] == parent.info.run_id
    assert len([n for n in runs if n.startswith("finetune:")]) == 5
    assert len(client.get_metric_history(base.info.run_id, "train_loss")) == 3
    # each job's Snakemake benchmark lands on the run of the output it made
    assert {"job.seconds", "job.max_rss_mb", "job.cpu_seconds"} <= set(base.data.metrics)
    assert runs["evaluate:gptq+alpaca:humaneval"].data.metrics["job.seconds"] > 0
    assert runs["evaluate:gptq+alpaca:humaneval"].data.metrics["job.outputs"] == 3  # piqa, humaneval-sh shared it
    artifacts = {a.path for a in client.list_artifacts(base.info.run_id)}
    assert {"README.md", "manifest.json", "base_model.json", "loss_curve.png"} <= artifacts
    evaluation = runs["evaluate:gptq+alpaca:humaneval"].data
    assert evaluation.tags["sophia.input.model"] == runs["quantize:w4g32"].info.run_id
    assert evaluation.tags["sophia.input.adapter"] == runs["finetune:alpaca"].info.run_id
    assert evaluation.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {"pass_at_1", "pass_at_1.ci_low", "pass_at_2"} <= set(evaluation.metrics)
    assert len([n for n in runs if n.startswith("evaluate:")]) == 6
    assert "heldout_loss.alpaca.instruct" in runs["forgetting:gptq+alpaca"].data.metrics  # forgetting matrix
    # the report lands on the invocation's own run
    assert {"report/base/commonsense", "report/gptq_alpaca/coding"} <= set(parent.data.metrics)
    assert {"report/table.md", "report/benchmarks.png"} <= {a.path for a in client.list_artifacts(
        parent.info.run_id, "report")}


def test_second_run_has_nothing_to_do(micro_run: MicroRun) -> None:
    workdir = micro_run.workdir
    assert planned_jobs(snakemake(workdir, "-n")) == {}


def test_snakemake_report_builds(micro_run: MicroRun) -> None:
    """`snakemake --report` gives one page with the table, plots and protocol cards by stage."""
    workdir = micro_run.workdir
    result = snakemake(workdir, "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    added = re.findall(r"^Adding (\S+) \(", result.stdout + result.stderr, re.M)
    assert {"table.md", "table.csv", "protocol.md", "benchmarks.png", "loss_curve.png"} <= set(added)
    page = (workdir / "results" / "report.html").read_text()
    assert all(f'"{c}"' in page for c in ("base_model", "finetune", "report")) and "Protocol cards" in page


def test_changed_data_setting_reruns_only_that_dataset(micro_run: MicroRun) -> None:
    workdir = micro_run.workdir
    cfg = micro_config()
    cfg["datasets"]["alpaca"]["tasks"]["instruct"]["n_train"] = 19
    write_config(workdir, cfg)
    try:
        result = snakemake(workdir, "-n")
        # alpaca data feeds quantize (calibration), hence every step after it, and the base's own
        # evaluate job too: its forgetting row reads the alpaca eval split
        # gptq+alpaca's merge, export, app and GGUF files follow quantize
        phone = {"merge": 1, "export": 1, "mobile": 1, "gguf": 1}
        assert planned_jobs(result) == {"data": 1, "quantize": 1, "finetune": 5, "evaluate": 2, "report": 1,
                                        "all": 1, **phone}
        assert "dataset=alpaca" in result.stdout and "dataset=tiny" not in result.stdout
        cfg["base_model"]["scratch"]["training"]["steps"] = 7
        write_config(workdir, cfg)
        assert planned_jobs(snakemake(workdir, "-n")) == {"base_model": 1, "data": 2, "quantize": 1, "finetune": 5,
                                                          "evaluate": 2, "report": 1, "all": 1, **phone}
        cfg = micro_config()
        cfg["quantize"]["damp_percent"] = 0.1
        write_config(workdir, cfg)
        assert planned_jobs(snakemake(workdir, "-n")) == {"quantize": 1, "finetune": 5, "evaluate": 1,
                                                          "report": 1, "all": 1, **phone}
        # one phase's setting: the steps that use it and their descendants, nothing else
        cfg = micro_config()
        cfg["finetune"]["phases"]["tiny_summary"]["epochs"] = 2
        write_config(workdir, cfg)
        result = snakemake(workdir, "-n")
        assert planned_jobs(result) == {"finetune": 2, "all": 1}
        assert "chain=tiny_codegen/tiny_summary\n" in result.stdout
        assert "chain=tiny_codegen/tiny_summary/alpaca" in result.stdout
        # one benchmark's setting: every model's evaluate job (its other benchmarks come back from the
        # stage's result cache: tests/test_eval_cache.py), then the report
        cfg = micro_config()
        cfg["evaluate"]["benchmarks"]["humaneval"]["limit"] = 1
        write_config(workdir, cfg)
        result = snakemake(workdir, "-n")
        assert planned_jobs(result) == {"evaluate": 2, "report": 1, "all": 1}
        assert "model=base\n" in result.stdout and "model=gptq+alpaca\n" in result.stdout
        # a verifier setting: the same jobs, whose caches then restore every benchmark that does not
        # rerank with it (tests/test_rerank.py: the variant job)
        cfg = micro_config()
        cfg["verifier"]["limit"] = 3
        write_config(workdir, cfg)
        assert planned_jobs(snakemake(workdir, "-n")) == {"evaluate": 2, "report": 1, "all": 1}
    finally:
        write_config(workdir, micro_config())


def test_bad_config_fails_before_any_job(tmp_path: Path) -> None:
    cfg = micro_config()
    cfg["datasets"]["tiny"]["tasks"]["codegen"]["n_trian"] = 3
    write_config(tmp_path, cfg)
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert "datasets.tiny.tasks.codegen.n_trian: unknown key" in result.stderr
    assert not (tmp_path / "results").exists()


def test_failing_data_job_keeps_base_model_and_leaves_no_partial_output(micro_run: MicroRun, tmp_path: Path) -> None:
    cfg = micro_config()
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "\xff"}\n')
    cfg["datasets"]["alpaca"]["path"] = str(broken)
    write_config(tmp_path, cfg)
    # the micro study's base model with Snakemake's record of it: up to date here, so it is not rebuilt
    shutil.copytree(micro_run.results / "models" / "base", tmp_path / "results" / "models" / "base")
    shutil.copytree(micro_run.workdir / ".snakemake" / "metadata", tmp_path / ".snakemake" / "metadata")
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert "rule base_model:" not in result.stdout + result.stderr
    assert f"{broken}: row 2: undecodable bytes" in result.stdout + result.stderr  # --show-failed-logs
    assert (tmp_path / "results" / "models" / "base" / "model.safetensors").is_file()
    assert not (tmp_path / "results" / "data" / "alpaca").exists()
    assert not list((tmp_path / "results" / "data").glob(".alpaca*"))
