"""The optional environments a workflow config uses, one name a line, for the Makefile's set-up:
`litert` when the export stage converts with litert-torch (.venv-litert, envs/litert.txt), `vllm` when
evaluate.engine is vllm (.venv-vllm, envs/vllm.txt).

Usage: .venv/bin/python envs/needs.py CONFIG
A config that does not validate is reported here, before any environment is built for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from sophia.config import validate
from sophia.errors import ConfigError


def needs(config: dict[str, Any]) -> list[str]:
    cfg = validate(config)
    out = ["litert"] if cfg["export"]["models"] and cfg["export"]["backend"] == "litert_torch" else []
    return out + (["vllm"] if cfg["evaluate"]["engine"] == "vllm" else [])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        config = yaml.safe_load(path.read_text())
        print("\n".join(needs(config)))
    except (OSError, yaml.YAMLError, ConfigError) as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
