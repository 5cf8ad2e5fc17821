"""Digests and version facts that tie every output to the code and settings that made it."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
_MODULE_NAME = re.compile(r"sophia(\.\w+)+")


def digest(obj: Any, length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# Modules whose edits cannot change what a stage writes to disk, so no stage's digest holds them
# (editing them reruns nothing); a package here covers its submodules. Every other module a stage
# imports, directly or not, is in its digest: tests/test_provenance.py checks each rule against this list.
NO_OUTPUT_EFFECT = {
    "sophia.tracking": "talks to MLflow only; files on disk never depend on it",
    "sophia.cli": "parses the JSON spec Snakemake passes and turns errors into exit codes",
}


def no_output_effect(module: str) -> bool:
    """Whether `module` is, or lies inside, one of NO_OUTPUT_EFFECT."""
    return any(module == m or module.startswith(m + ".") for m in NO_OUTPUT_EFFECT)


def module_file(module: str) -> Path | None:
    """The source file of `sophia.x.y` (a module or a package's __init__), None if there is none."""
    rel = Path(*module.split(".")[1:])
    for candidate in (PACKAGE_DIR / rel / "__init__.py", (PACKAGE_DIR / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(module: str, path: Path) -> set[str]:
    """The sophia modules one file imports, anywhere in it (function-level imports too), or names
    as a string (a module another interpreter runs with `-m`)."""
    named = _imported_from_source(module, path.name == "__init__.py", path.read_text(encoding="utf-8"), str(path))
    return {m for m in named if module_file(m) is not None}


@functools.cache
def _imported_from_source(module: str, is_package: bool, source: str, filename: str) -> frozenset[str]:
    # Cached on the source text: Snakemake digests every entry point, their closures share most
    # modules, and each file is parsed once instead of once per closure.
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        for base, names in imports_in(node, package):
            found.add(base)
            # `from sophia.evaluate import scoring` imports the submodule scoring
            found.update(f"{base}.{name}" for name in names)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
            found.add(node.value)  # `[python, "-m", "sophia.export.convert"]`: code run in another process
    return frozenset(m for m in found if m.split(".")[0] == "sophia")


def imports_in(node: ast.AST, package: str) -> list[tuple[str, tuple[str, ...]]]:
    """What an import statement imports: (module, names taken from it), relative imports resolved
    against `package` (the package the file is in); [] for any other node."""
    if isinstance(node, ast.Import):
        return [(alias.name, ()) for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    return [(base, tuple(alias.name for alias in node.names))]


def import_closure(entry: str) -> set[str]:
    """Every sophia module that running `python -m <entry>` can execute: its transitive imports,
    the packages above each of them, minus NO_OUTPUT_EFFECT (whose own imports are not followed)."""
    main = f"{entry}.__main__"
    todo = [main if module_file(main) else entry]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or no_output_effect(module):
            continue
        path = module_file(module)
        if path is None:
            raise FileNotFoundError(f"no source for {module} under {PACKAGE_DIR}")
        seen.add(module)
        parents = [".".join(module.split(".")[:i]) for i in range(2, len(module.split(".")))]
        todo.extend([*_imported(module, path), *parents])
    return seen


def stage_digest(entry: str) -> str:
    """Hash of the source a stage's entry point (`sophia.evaluate`, `sophia.export.merge`) can run.

    Rules pass this as a `params:` value, so Snakemake reruns a stage exactly when code that can
    shape its output changes: the module list comes from the imports, never from a hand-kept list.
    """
    h = hashlib.sha256()
    for module in sorted(import_closure(entry)):
        f = module_file(module)
        assert f is not None
        h.update(str(f.relative_to(PACKAGE_DIR)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_manifest(root: str | Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under `root`, keyed by relative path."""
    root = Path(root)
    return {
        str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def git_commit(cwd: str | Path = PACKAGE_DIR) -> str:
    """HEAD commit of the checkout, suffixed `-dirty` when tracked files differ; `unknown` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → dotted keys, the shape MLflow params want."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
