"""Config validation against workflow/schemas/config.schema.yaml, with defaults filled in.

Snakemake's own `validate` reports a schema dump; users need one line per problem naming the
key, so errors are collected and formatted here (jsonschema still does the checking).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sophia import references
from sophia.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"



@cache
def schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _with_defaults(cls: type[jsonschema.protocols.Validator]) -> type[jsonschema.protocols.Validator]:
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub_schema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from validate_properties(validator, properties, instance, sub_schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key_path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts if p != "") or "<top level>"


def _format(error: jsonschema.ValidationError, where: str) -> str:
    path = [where, *error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return "\n  ".join(f"{_key_path([*path, k])}: unknown key{hint}" for k in extra)
    return f"{_key_path(path)}: {error.message}"


def _check(instance: Any, sub_schema: Mapping[str, Any], where: str) -> None:
    validator = _Validator({**sub_schema, "$defs": schema()["$defs"]})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(_format(e, where) for e in errors)
        raise ConfigError(f"invalid configuration:\n  {lines}")


def _exactly_one(section: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    present = [k for k in keys if section.get(k) is not None]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        raise ConfigError(f"{where}: set exactly one of {', '.join(keys)} (found: {found})")


def check_base_model(spec: Mapping[str, Any], where: str = "base_model") -> None:
    _exactly_one(spec, ("hub", "path", "scratch"), where)
    if spec.get("scratch"):
        check_scratch(spec["scratch"], f"{where}.scratch")


def check_scratch(spec: Mapping[str, Any], where: str) -> None:
    """What the schema cannot say about a scratch model: checked before the DAG runs and again by
    the stage, before any corpus is read or run started."""
    arch = spec["architecture"]
    if arch["hidden_size"] % arch["num_attention_heads"]:
        raise ConfigError(f"{where}.architecture: hidden_size {arch['hidden_size']} is not divisible "
                          f"by num_attention_heads {arch['num_attention_heads']}")
    family = spec.get("family", "phi")
    # the keys only one family's config reads (sophia.base_model.families, which config.py cannot import)
    for key, families in (("partial_rotary_factor", ("phi",)), ("num_key_value_heads", ("llama", "qwen2"))):
        if key in arch and family not in families:
            raise ConfigError(f"{where}.architecture.{key}: applies to the {' and '.join(families)} family only "
                              f"({where}.family is {family})")
    kv_heads = arch.get("num_key_value_heads")
    if kv_heads is not None and arch["num_attention_heads"] % kv_heads:
        raise ConfigError(f"{where}.architecture.num_key_value_heads: {kv_heads} does not divide "
                          f"num_attention_heads {arch['num_attention_heads']}")
    seq_len = spec["training"]["seq_len"]
    if seq_len > arch["max_position_embeddings"]:
        raise ConfigError(f"{where}.training.seq_len: {seq_len} exceeds architecture.max_position_embeddings "
                          f"{arch['max_position_embeddings']}")


def check_dataset(name: str, spec: Mapping[str, Any], where: str | None = None) -> None:
    where = where or f"datasets.{name}"
    _exactly_one(spec, ("hub", "path"), where)
    fmt = spec["format"]
    unknown = sorted(set(spec["tasks"]) - references.FORMATS[fmt].tasks)
    if unknown:
        raise ConfigError(
            f"{where}.tasks: {', '.join(unknown)} not available for format {fmt} "
            f"(available: {', '.join(sorted(references.FORMATS[fmt].tasks))})"
        )
    if fmt == "tiny_codes" and not spec.get("languages"):
        raise ConfigError(f"{where}.languages: required for format tiny_codes")
    if fmt == "code_alpaca" and spec.get("languages"):
        raise ConfigError(f"{where}.languages: code_alpaca rows carry no language; remove this key")


def _check_tasks_exist(
    where: str, dataset: str, tasks: list[str], datasets: Mapping[str, Any], task_key: str = "tasks"
) -> None:
    """A later stage's reference to data the data stage builds (`<where>.dataset`, `<where>.<task_key>`)."""
    if dataset not in datasets:
        raise ConfigError(f"{where}.dataset: '{dataset}' is not in datasets ({', '.join(datasets)})")
    built = datasets[dataset]["tasks"]
    missing = [t for t in tasks if t not in built]
    if missing:
        raise ConfigError(
            f"{where}.{task_key}: {', '.join(missing)} not built for dataset '{dataset}' ({', '.join(built)})"
        )


def check_quantize(spec: Mapping[str, Any], datasets: Mapping[str, Any]) -> None:
    """What can be checked before any job: the calibration data exists and is big enough."""
    cal = spec["calibration"]
    _check_tasks_exist("quantize.calibration", cal["dataset"], [cal["task"]], datasets, task_key="task")
    available = datasets[cal["dataset"]]["tasks"][cal["task"]]["n_train"]
    if cal["n_samples"] > available:
        raise ConfigError(
            f"quantize.calibration.n_samples: {cal['n_samples']} exceeds the {available} training rows of "
            f"{cal['dataset']}/{cal['task']} (datasets.{cal['dataset']}.tasks.{cal['task']}.n_train)"
        )
    if spec["group_size"] != -1 and spec["group_size"] < 1:
        raise ConfigError(f"quantize.group_size: {spec['group_size']} must be -1 or a positive integer")


def check_finetune(spec: Mapping[str, Any], datasets: Mapping[str, Any]) -> None:
    for name, phase in spec["phases"].items():
        _check_tasks_exist(f"finetune.phases.{name}", phase["dataset"], phase["tasks"], datasets)
    for name, phases in spec["curricula"].items():
        unknown = [p for p in phases if p not in spec["phases"]]
        if unknown:
            raise ConfigError(f"finetune.curricula.{name}: unknown phase {', '.join(unknown)} "
                              f"(phases: {', '.join(spec['phases'])})")


def model_variants(curricula: Mapping[str, Any], distill: Mapping[str, Any] | None = None) -> list[str]:
    """Every evaluable variant: base, gptq, each curriculum's adapter on the GPTQ model, and each
    distilled student with its SFT control."""
    students = [v for name in (distill or {}) for v in (f"distill+{name}", f"sft+{name}")]
    return ["base", "gptq", *(f"gptq+{name}" for name in curricula), *students]


def check_pass_at_k(name: str, bench: Mapping[str, Any]) -> None:
    """pass@k is estimated from n sampled programs per problem: every k needs n >= k."""
    ks, n = bench.get("k", []), bench.get("n_samples", 1)
    if n > 1 and ks and max(ks) > n:
        raise ConfigError(f"evaluate.benchmarks.{name}.k: pass@{max(ks)} needs n_samples >= {max(ks)}, got {n}")


def check_export_precisions(spec: Mapping[str, Any]) -> None:
    if spec["backend"] == "litert_torch" and "fp16" in spec["precisions"]:
        raise ConfigError("export.precisions: fp16 is not available with export.backend litert_torch "
                          "(fp32, int8 and int4 are)")
    if spec["backend"] == "onnx2tf" and "int4" in spec["precisions"]:
        raise ConfigError("export.precisions: int4 needs export.backend litert_torch (onnx2tf makes fp32, fp16 "
                          "and int8)")


def check_evaluate(spec: Mapping[str, Any], curricula: Mapping[str, Any],
                   distill: Mapping[str, Any] | None = None) -> None:
    known = model_variants(curricula, distill)
    unknown = [m for m in spec["models"] or [] if m not in known]
    if unknown:
        raise ConfigError(f"evaluate.models: {', '.join(unknown)} unknown (variants: {', '.join(known)})")
    for name, bench in spec["benchmarks"].items():
        check_pass_at_k(name, bench)
    root = spec["dataset_root"]
    if root is not None and not Path(root).is_dir():
        raise ConfigError(f"evaluate.dataset_root: {root} is not a directory (null reads the hub)")


def check_report(spec: Mapping[str, Any], curricula: Mapping[str, Any]) -> None:
    known = model_variants(curricula)
    for i, row in enumerate(spec["reference"] or []):
        if row.get("model") is not None and row["model"] not in known:
            raise ConfigError(f"report.reference[{i}].model: '{row['model']}' unknown (variants: {', '.join(known)})")
        for field in ("items", "differs"):
            stray = sorted(set(row.get(field) or {}) - set(row["scores"]))
            if stray:
                raise ConfigError(f"report.reference[{i}].{field}: {', '.join(stray)} not among its scores "
                                  f"({', '.join(row['scores'])})")


def check_export(spec: Mapping[str, Any], curricula: Mapping[str, Any]) -> None:
    known = model_variants(curricula)
    unknown = [m for m in spec["models"] if m not in known]
    if unknown:
        raise ConfigError(f"export.models: {', '.join(unknown)} unknown (variants: {', '.join(known)})")
    check_export_precisions(spec)
    if spec["bundle_precision"] not in spec["precisions"]:
        raise ConfigError(f"export.bundle_precision: {spec['bundle_precision']} is not among export.precisions "
                          f"({', '.join(spec['precisions'])})")


def check_mobile(spec: Mapping[str, Any], export: Mapping[str, Any]) -> None:
    if spec["model"] is not None and spec["model"] not in export["models"]:
        raise ConfigError(f"mobile.model: '{spec['model']}' is not exported (export.models: "
                          f"{', '.join(export['models']) or 'none'})")


def check_gguf(spec: dict[str, Any], export: Mapping[str, Any], curricula: Mapping[str, Any]) -> None:
    """Resolve gguf.models (null = export.models) and check what the gguf stage will be asked for."""
    if spec["models"] is None:
        spec["models"] = list(export["models"])
    known = model_variants(curricula)
    unknown = [m for m in spec["models"] if m not in known]
    if unknown:
        raise ConfigError(f"gguf.models: {', '.join(unknown)} unknown (variants: {', '.join(known)})")
    if spec["modelfile_type"] not in spec["types"]:
        raise ConfigError(f"gguf.modelfile_type: {spec['modelfile_type']} is not among gguf.types "
                          f"({', '.join(spec['types'])})")


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a validated copy of `config` with every default filled in; raise ConfigError."""
    cfg = copy.deepcopy(dict(config))
    _check(cfg, schema(), "")
    check_base_model(cfg["base_model"])
    for name, spec in cfg["datasets"].items():
        check_dataset(name, spec)
    check_quantize(cfg["quantize"], cfg["datasets"])
    check_finetune(cfg["finetune"], cfg["datasets"])
    check_distill(cfg)
    check_evaluate(cfg["evaluate"], cfg["finetune"]["curricula"], cfg["distill"])
    check_export(cfg["export"], cfg["finetune"]["curricula"])
    check_report(cfg["report"], cfg["finetune"]["curricula"])
    check_mobile(cfg["mobile"], cfg["export"])
    check_gguf(cfg["gguf"], cfg["export"], cfg["finetune"]["curricula"])
    return cfg


def check_distill(cfg: Mapping[str, Any]) -> None:
    """What can be known before any job: references resolve, and token KD's shared vocabulary
    wherever both sizes can be read without downloading anything (the stage checks again)."""
    for name, spec in cfg["distill"].items():
        where = f"distill.{name}"
        if spec["phase"] not in cfg["finetune"]["phases"]:
            raise ConfigError(f"{where}.phase: '{spec['phase']}' is not in finetune.phases "
                              f"({', '.join(cfg['finetune']['phases'])})")
        teachers = model_variants(cfg["finetune"]["curricula"])
        references.check_reference(spec["teacher"], f"{where}.teacher", teachers, student=False)
        references.check_reference(spec["student"], f"{where}.student", ["base"], student=True)
        if spec["student"].get("scratch") is not None and spec["lora"] is not None:
            raise ConfigError(f"{where}.lora: a scratch student has no pretrained weights to adapt; "
                              f"set lora: null (full fine-tuning)")
        if spec["student"].get("hub") and spec["lora"] is not None:
            raise ConfigError(f"{where}.lora: a LoRA student is evaluated on top of a local model directory; "
                              f"set student.path to a download of {spec['student']['hub']}, or lora: null")
        if spec["method"] == "token":
            references.check_vocabularies(references.known_vocab(spec["teacher"], cfg["base_model"]),
                                          references.known_vocab(spec["student"], cfg["base_model"]), where,
                                          spec["teacher"], spec["student"])
            # the workflow's own variants and scratch students share the base's tokenizer by construction
            if {references.kind(spec["teacher"]), references.kind(spec["student"])} & {"hub", "path"}:
                references.check_token_maps(references.known_token_map(spec["teacher"], cfg["base_model"]),
                                            references.known_token_map(spec["student"], cfg["base_model"]), where,
                                            spec["teacher"], spec["student"])


def validate_section(spec: Mapping[str, Any], definition: str, where: str) -> dict[str, Any]:
    """Validate one stage's section (a `$defs` entry) for a stage run alone from its CLI."""
    out = copy.deepcopy(dict(spec))
    _check(out, schema()["$defs"][definition], where)
    return out


def base_model_schema() -> dict[str, Any]:
    return schema()["properties"]["base_model"]


def validate_base_model(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    _check(out, base_model_schema(), "base_model")
    check_base_model(out)
    return out


def validate_dataset(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    out = validate_section(spec, "dataset", f"datasets.{name}")
    check_dataset(name, out)
    return out
