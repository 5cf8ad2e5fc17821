"""What a config names and the checks that need no job: dataset formats and the tasks each can
build, and model references (a workflow variant, a hub id, a local path, a scratch architecture)
with their vocabulary sizes. Config validation and the stages that read these names share this
module; it imports no stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sophia.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Format:
    required: tuple[str, ...]  # must be present and non-empty strings
    optional: tuple[str, ...]  # must be present, may be empty
    language_field: str | None
    tasks: frozenset[str]  # the tasks `example` can build from its rows (config validation reads it)


FORMATS = {
    "code_alpaca": Format(required=("instruction", "output"), optional=("input",), language_field=None,
                          tasks=frozenset({"instruct"})),
    "tiny_codes": Format(
        required=("prompt", "response", "programming_language"), optional=(), language_field="programming_language",
        tasks=frozenset({"codegen", "summary"}),
    ),
}


KINDS = ("variant", "hub", "path", "scratch")


def kind(ref: Mapping[str, Any]) -> str:
    return next(k for k in KINDS if ref.get(k) is not None)


def describe(ref: Mapping[str, Any]) -> str:
    """One line naming a model reference, for messages, tags and the model card."""
    k = kind(ref)
    if k == "scratch":
        arch = ref["scratch"]["architecture"]
        return f"scratch (hidden {arch['hidden_size']}, {arch['num_hidden_layers']} layers)"
    if k == "hub":
        return f"hub:{ref['hub']}@{ref.get('revision', 'main')}"
    return ref[k] if k == "variant" else f"path:{ref['path']}"


def check_reference(ref: Mapping[str, Any], where: str, variants: Sequence[str], student: bool) -> None:
    allowed = KINDS if student else KINDS[:3]
    present = [k for k in KINDS if ref.get(k) is not None]
    if len(present) != 1 or present[0] not in allowed:
        raise ConfigError(f"{where}: set exactly one of {', '.join(allowed)} (found: {', '.join(present) or 'none'})")
    if "variant" in present and ref["variant"] not in variants:
        raise ConfigError(f"{where}.variant: '{ref['variant']}' unknown (allowed: {', '.join(variants)})")
    if "path" in present and not (Path(ref["path"]) / "config.json").is_file():
        raise ConfigError(f"{where}.path: {ref['path']} has no config.json (not a Hugging Face model directory)")


def vocab_of(model: str | Path, revision: str = "main", local_only: bool = False) -> int | None:
    """Rows of the output embedding (the logits' width) from a model's config; None if unknown
    without downloading (a hub model not in the local cache)."""
    path = Path(model)
    if (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text())
        return int(cfg.get("text_config", cfg)["vocab_size"])
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(model), revision=revision, local_files_only=local_only)
    except OSError:
        if local_only:
            return None
        raise
    return int(cfg.get_text_config().vocab_size)


def before_any_job(ref: Mapping[str, Any], base_model: Mapping[str, Any], read: Callable[..., T]) -> T | None:
    """What `read(model, revision, local_only)` tells of the model a reference will be, where that
    needs no job and no download: a path as it is, a hub id from the local cache only. The
    workflow's own variants and scratch students carry the base model's tokenizer."""
    source = ref if kind(ref) in ("path", "hub") else base_model
    if source.get("path"):
        return read(source["path"])
    if source.get("hub"):
        return read(source["hub"], source.get("revision", "main"), local_only=True)
    return None


def known_vocab(ref: Mapping[str, Any], base_model: Mapping[str, Any]) -> int | None:
    """The vocabulary size a reference will have, where it can be read before any job runs."""
    return before_any_job(ref, base_model, vocab_of)


def token_map_of(model: str | Path, revision: str = "main", local_only: bool = False) -> dict[str, int] | None:
    """A model's token -> id map from its tokenizer (a folder, or the hub: only the local cache with
    `local_only`); None where it cannot be read without downloading."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model), revision=revision, local_files_only=local_only)
    except (OSError, ValueError):
        if local_only or Path(model).is_dir():
            return None
        raise
    return dict(tok.get_vocab())


def known_token_map(ref: Mapping[str, Any], base_model: Mapping[str, Any]) -> dict[str, int] | None:
    """The token -> id map a reference will have, where it can be read before any job runs."""
    return before_any_job(ref, base_model, token_map_of)


def check_token_maps(teacher: Mapping[str, int] | None, student: Mapping[str, int] | None, where: str,
                     teacher_ref: Mapping[str, Any], student_ref: Mapping[str, Any]) -> None:
    """Token-level KD compares the two distributions id by id: equal sizes are not enough, every
    token must have the same id in both tokenizers."""
    if teacher is None or student is None or teacher == student:
        return
    differ = sorted(t for t in set(teacher) | set(student) if teacher.get(t) != student.get(t))
    example = ", ".join(f"{t!r}: {teacher.get(t)} vs {student.get(t)}" for t in differ[:3])
    raise ConfigError(
        f"{where}.method: token-level KD needs one vocabulary (the same token -> id map), but teacher "
        f"{describe(teacher_ref)} ({len(teacher)} tokens) and student {describe(student_ref)} ({len(student)} tokens) "
        f"disagree on {len(differ)} tokens (teacher id vs student id: {example}); use method: sequence")


def check_vocabularies(teacher: int | None, student: int | None, where: str, teacher_ref: Mapping[str, Any],
                       student_ref: Mapping[str, Any]) -> None:
    if teacher is not None and student is not None and teacher != student:
        raise ConfigError(
            f"{where}.method: token-level KD needs one vocabulary, but teacher {describe(teacher_ref)} has "
            f"{teacher} tokens and student {describe(student_ref)} has {student}; use method: sequence")
