from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, config_error, micro_config
from sophia import config
from sophia.errors import ConfigError


@pytest.mark.parametrize("path", [ROOT / "config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))])
def test_shipped_configs_are_valid(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    cfg = config.validate(raw)
    assert cfg["mlflow"]["tracking_uri"] == raw.get("mlflow", {}).get("tracking_uri", "sqlite:///results/mlflow.db")


def test_defaults_are_filled() -> None:
    cfg = config.validate(micro_config())
    assert cfg["datasets"]["alpaca"]["invalid_rows"] == "error"
    assert cfg["datasets"]["alpaca"]["seed"] == 0
    assert cfg["mlflow"]["experiment"] == "sophia"
    assert cfg["base_model"]["scratch"]["training"]["learning_rate"] == 0.002


def test_validate_does_not_mutate_input() -> None:
    raw = micro_config()
    before = copy.deepcopy(raw)
    config.validate(raw)
    assert raw == before


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(bogus=1), "bogus: unknown key"),
        (lambda c: c["base_model"]["scratch"]["training"].update(stepz=3),
         "base_model.scratch.training.stepz: unknown key"),
        (lambda c: c["datasets"]["alpaca"]["tasks"]["instruct"].update(n_train="x"),
         "datasets.alpaca.tasks.instruct.n_train: 'x' is not of type 'integer'"),
        (lambda c: c["datasets"]["tiny"].update(invalid_rows="ignore"), "datasets.tiny.invalid_rows"),
        (lambda c: c["base_model"].update(hub="microsoft/phi-2"), "base_model: set exactly one of hub, path, scratch"),
        (lambda c: c["base_model"]["scratch"]["training"].update(seq_len=1024),
         "base_model.scratch.training.seq_len: 1024 exceeds architecture.max_position_embeddings 768"),
        (lambda c: c["base_model"]["scratch"]["architecture"].update(num_attention_heads=5),
         "base_model.scratch.architecture: hidden_size 64 is not divisible by num_attention_heads 5"),
        (lambda c: c["datasets"]["tiny"].update(hub="x/y"), "datasets.tiny: set exactly one of hub, path"),
        (lambda c: c["datasets"]["tiny"].pop("languages"), "datasets.tiny.languages: required"),
        (lambda c: c["datasets"]["alpaca"]["tasks"].update(summary={"n_train": 1}),
         "datasets.alpaca.tasks: summary not available for format code_alpaca"),
        (lambda c: c["datasets"].update(BadName=c["datasets"]["alpaca"]), "datasets: 'BadName' does not match"),
        (lambda c: c.pop("datasets"), "'datasets' is a required property"),
    ],
)
def test_errors_name_the_key(mutate, expected: str) -> None:
    assert expected in config_error(mutate)


def test_all_errors_reported_at_once() -> None:
    cfg = micro_config()
    cfg["one"] = 1
    cfg["two"] = 2
    with pytest.raises(ConfigError) as err:
        config.validate(cfg)
    assert "one: unknown key" in str(err.value) and "two: unknown key" in str(err.value)


def test_every_schema_property_has_description_or_default() -> None:
    """Users read the schema as the reference of every key."""

    def walk(node: dict, path: str) -> list[str]:
        missing = []
        for name, prop in node.get("properties", {}).items():
            if "$ref" not in prop and "description" not in prop and "default" not in prop:
                missing.append(f"{path}.{name}")
            missing += walk(prop, f"{path}.{name}")
        return missing

    schema = config.schema()
    missing = walk(schema, "")
    for name, node in schema["$defs"].items():
        missing += walk(node, f"$defs.{name}")
    assert not missing
