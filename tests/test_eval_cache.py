"""One evaluate job per model variant: the per-benchmark result cache that keeps reruns cheap, and
Snakemake job benchmarks fanned out to the runs of a job's several outputs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, benchmark_script, runs_of
from sophia import job_benchmarks, provenance, tracking
from sophia.config import validate_section
from sophia.evaluate import cache, stage

FIXTURE_ROOT = ROOT / "workflow" / "resources" / "eval" / "hub"


def espec(**benchmarks: Any) -> dict[str, Any]:
    return validate_section({"dataset_root": str(FIXTURE_ROOT), "benchmarks": benchmarks,
                             "sandbox": {"timeout_s": 5}, "rerank": {"n_tests": 2, "max_gen_toks": 8}},
                            "evaluate", "evaluate")


CODE = {"limit": 2, "max_gen_toks": 8, "n_samples": 2, "k": [1, 2]}
IDENTITY = {"src": "s1", "data": "d1", "packages": {"lm_eval": "0.4.13"}, "device": "cpu",
            "inputs": {"model": "run-m", "adapter": "run-a", "verifier": "run-v"}}


def test_key_follows_exactly_what_shapes_one_benchmark() -> None:
    spec = espec(piqa={"limit": 2}, humaneval=CODE)
    piqa = cache.key(spec, "gptq+x", "piqa", IDENTITY)
    assert piqa and piqa == cache.key(espec(piqa={"limit": 2}, humaneval={**CODE, "limit": 3}), "gptq+x", "piqa",
                                      IDENTITY)  # another benchmark's setting
    assert piqa == cache.key({**spec, "sandbox": {**spec["sandbox"], "timeout_s": 9}}, "gptq+x", "piqa", IDENTITY)
    debugged = {**spec, "selfdebug": {**spec["selfdebug"], "rounds": 1}}  # code benchmarks only
    assert piqa == cache.key(debugged, "gptq+x", "piqa", IDENTITY)
    assert cache.key(debugged, "gptq+x", "humaneval", IDENTITY) != cache.key(spec, "gptq+x", "humaneval", IDENTITY)
    assert piqa == cache.key(spec, "gptq+x", "piqa", {**IDENTITY, "inputs": {**IDENTITY["inputs"], "verifier": "v2"}})
    changed = [
        cache.key(espec(piqa={"limit": 1}, humaneval=CODE), "gptq+x", "piqa", IDENTITY),  # its own setting
        cache.key({**spec, "seed": 1}, "gptq+x", "piqa", IDENTITY),  # a shared setting
        cache.key(spec, "gptq+y", "piqa", IDENTITY),
        cache.key(spec, "gptq+x", "piqa", {**IDENTITY, "src": "s2"}),  # the stage's code
        cache.key(spec, "gptq+x", "piqa", {**IDENTITY, "data": "d2"}),  # the local benchmark data
        cache.key(spec, "gptq+x", "piqa", {**IDENTITY, "inputs": {**IDENTITY["inputs"], "adapter": "a2"}}),
        cache.key(spec, "gptq+x", "piqa", {**IDENTITY, "packages": {"lm_eval": "0.4.14"}}),
        cache.key(spec, "gptq+x", "piqa", {**IDENTITY, "device": "cuda"}),
    ]
    assert None not in changed and len({piqa, *changed}) == 1 + len(changed)
    code = cache.key(spec, "gptq+x", "humaneval", IDENTITY)
    assert code != cache.key({**spec, "sandbox": {**spec["sandbox"], "timeout_s": 9}}, "gptq+x", "humaneval", IDENTITY)
    assert code != cache.key(spec, "gptq+x", "humaneval",  # LEVER reads the verifier
                             {**IDENTITY, "inputs": {**IDENTITY["inputs"], "verifier": "v2"}})
    no_record = {**IDENTITY, "inputs": {"model": "run-m", "adapter": None}}
    assert cache.key(spec, "gptq+x", "piqa", no_record) is None  # an input without a run: not cached
    assert cache.key(spec, "base", "piqa", {**IDENTITY, "inputs": {"model": "run-m"}})


def finished_folder(path: Path, value: float = 0.5) -> Path:
    path.mkdir(parents=True)
    (path / "scores.json").write_text(json.dumps({"score": {"value": value}}))
    (path / "samples.jsonl.gz").write_bytes(os.urandom(64))
    (path / tracking.RUN_RECORD).write_text(json.dumps({"run_id": "r1", "stage": "evaluate"}))
    return path


def test_only_complete_intact_entries_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "cache"
    entry = cache.store(store, "k1", finished_folder(tmp_path / "out1"))
    assert cache.lookup(store, "k1") == entry and cache.lookup(store, "k2") is None
    assert cache.restore(entry, "k1", tmp_path / "again")["score"]["value"] == 0.5
    assert json.loads((tmp_path / "again" / tracking.CACHE_HIT).read_text())["run_id"] == "r1"
    assert cache.is_hit(tmp_path / "again") and not cache.is_hit(tmp_path / "out1")

    def damaged(name: str, damage: Any) -> None:
        entry = cache.store(store, name, finished_folder(tmp_path / f"src-{name}"))
        shutil.rmtree(tmp_path / f"src-{name}")  # hard links: damage the entry alone
        damage(entry)
        assert cache.lookup(store, name) is None, name

    damaged("no-manifest", lambda e: (e / cache.MANIFEST).unlink())
    damaged("bad-manifest", lambda e: (e / cache.MANIFEST).write_text("{\"files\": "))
    damaged("truncated", lambda e: (e / "samples.jsonl.gz").write_bytes(b"\x1f"))
    damaged("same-size", lambda e: (e / "scores.json").write_text(json.dumps({"score": {"value": 0.7}})))
    damaged("missing-file", lambda e: (e / "scores.json").unlink())
    damaged("extra-file", lambda e: (e / "stray.txt").write_text("x"))
    damaged("no-record", lambda e: (e / tracking.RUN_RECORD).unlink())
    # a store interrupted half-way leaves no entry under the key, nor its scratch folder
    original = provenance.sha256_file  # what file_manifest hashes with
    calls = iter(range(100))

    def dies_on_second(path: Any) -> str:
        if next(calls) == 1:
            raise OSError("no space left on device")
        return original(path)

    monkeypatch.setattr(provenance, "sha256_file", dies_on_second)
    with pytest.raises(OSError, match="no space"):
        cache.store(store, "k3", finished_folder(tmp_path / "out3"))
    assert not (store / "k3").exists() and not list(store.glob(".k3*"))


def eval_spec(**benchmarks: Any) -> dict[str, Any]:
    return {"evaluate": {"dataset_root": str(FIXTURE_ROOT), "benchmarks": benchmarks}}


def test_a_rerun_recomputes_only_the_changed_benchmark(micro_model: Path, tmp_path: Path, mlflow_store: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    out, store = tmp_path / "eval" / "base", tmp_path / "cache"
    first = stage.run_stage(eval_spec(piqa={"limit": 2}, arc_easy={"limit": 2}), "base", micro_model, None,
                            ["piqa", "arc_easy"], out, cache_dir=store)
    assert first.computed == ["piqa", "arc_easy"] and first.cached == [] and len(list(store.iterdir())) == 2
    piqa_bytes = (out / "piqa" / "scores.json").read_bytes()
    piqa_run = tracking.read_record(out / "piqa")["run_id"]

    # Snakemake deletes every output of the job, then reruns it with one benchmark's setting changed
    shutil.rmtree(out)
    changed = eval_spec(piqa={"limit": 2}, arc_easy={"limit": 1})
    with caplog.at_level(logging.INFO, logger="sophia.evaluate.stage"):
        second = stage.run_stage(changed, "base", micro_model, None, ["piqa", "arc_easy"], out, cache_dir=store)
    assert second.cached == ["piqa"] and second.computed == ["arc_easy"]
    assert "base on piqa: cached" in caplog.text and "base on arc_easy: cached" not in caplog.text
    assert (out / "piqa" / "scores.json").read_bytes() == piqa_bytes and cache.is_hit(out / "piqa")
    assert tracking.read_record(out / "piqa")["run_id"] == piqa_run  # the run that computed it
    assert second.scores["arc_easy"]["score"]["n"] == 1 and not cache.is_hit(out / "arc_easy")
    names = [r.info.run_name for r in runs_of(mlflow_store)]
    assert names.count("evaluate:base:piqa") == 1 and names.count("evaluate:base:arc_easy") == 2

    # a damaged entry is recomputed (and replaced), never restored
    shutil.rmtree(out)
    key = cache.key(validate_section(changed["evaluate"], "evaluate", "evaluate"), "base", "piqa",
                    cache.job_identity({"model": micro_model}, FIXTURE_ROOT, "cpu"))
    (store / key / "scores.json").write_text("{}")
    third = stage.run_stage(changed, "base", micro_model, None, ["piqa", "arc_easy"], out, cache_dir=store)
    assert third.computed == ["piqa"] and third.cached == ["arc_easy"] and cache.lookup(store, key)
    piqa_bytes = (out / "piqa" / "scores.json").read_bytes()

    # nothing changed: the model is not even loaded
    shutil.rmtree(out)
    monkeypatch.setattr(stage, "load_model", lambda *a: pytest.fail("loaded the model for cached benchmarks"))
    fourth = stage.run_stage(changed, "base", micro_model, None, ["piqa", "arc_easy"], out, cache_dir=store)
    assert fourth.cached == ["piqa", "arc_easy"] and (out / "piqa" / "scores.json").read_bytes() == piqa_bytes


TSV_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_job_benchmark_goes_to_each_computed_output_of_the_job(tmp_path: Path, mlflow_store: str) -> None:
    results = tmp_path / "results"
    runs = {}
    for bench in ("piqa", "humaneval"):
        with tracking.stage_run("evaluate", f"base:{bench}", {}) as run:
            runs[bench] = run.run_id
            run.write_record(finished_folder(results / "eval" / "base" / bench), "evaluate", f"base:{bench}")
    (results / "eval" / "base" / "humaneval" / tracking.CACHE_HIT).write_text("{}")  # restored, not computed
    stale = results / "benchmarks" / "eval" / "base" / "piqa.tsv"  # the old one-job-per-benchmark layout
    stale.parent.mkdir(parents=True)
    stale.write_text(TSV_HEADER + "1.0\t0:00:01\t10\t1\t1\t1\t0\t0\t1\t1\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    (results / "benchmarks" / "eval" / "base.tsv").write_text(TSV_HEADER + "42.5\t0:00:42\t900\t1\t1\t1\t0\t0\t1\t40\n")
    jobs = {Path(j["benchmark"]).name: j for j in job_benchmarks.collect(results)}
    assert [Path(o["output"]).name for o in jobs["base.tsv"]["outputs"]] == ["humaneval", "piqa"]
    assert jobs["base.tsv"]["stage"] == "evaluate" and [o["cached"] for o in jobs["base.tsv"]["outputs"]] == [True,
                                                                                                            False]
    assert job_benchmarks.log_to_runs(results) == 1 and job_benchmarks.log_to_runs(results) == 0
    by_id = {r.info.run_id: r.data.metrics for r in runs_of(mlflow_store)}
    assert by_id[runs["piqa"]]["job.seconds"] == 42.5 and by_id[runs["piqa"]]["job.max_rss_mb"] == 900
    assert by_id[runs["piqa"]]["job.outputs"] == 2 and by_id[runs["piqa"]]["job.cached_outputs"] == 1
    assert "job.seconds" not in by_id[runs["humaneval"]]  # its run belongs to the job that computed it
    # benchmarks/stage_times.py: one job per benchmark file, with the outputs it made
    stage_times = benchmark_script("stage_times")
    fresh = [j for j in job_benchmarks.collect(results) if j["benchmark"].endswith("base.tsv")]
    assert stage_times.summarise(fresh)["evaluate"] == {"jobs": 1, "outputs": 2, "cached_outputs": 1,
                                                        "seconds": 42.5, "max_rss_mb": 900}
