"""The package's imports run one way: no module of workflow/sophia/ reaches itself through its
imports (function-level ones included), and config.py, which every stage and the Snakefile read,
imports no stage. Read from the source (ast), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sophia import provenance

# Cycles still being taken apart, by level; the test fails on any other, and on one of these that
# is gone (delete it here then).
KNOWN_CYCLES: dict[str, set[frozenset[str]]] = {"module": set(), "subpackage": set()}


def module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. `from a import b` names module a.b when that is a
    module, else a (its __init__); a package's own __init__ is never implied by importing below it."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for base, names in provenance.imports_in(node, package):
                found.update([f"{base}.{n}" if f"{base}.{n}" in files else base for n in names] or [base])
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        if (m := todo.pop()) not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def stage_packages(root: Path) -> set[str]:
    """Subpackages a rule or the command line runs: they have a stage.py or a __main__.py."""
    return {f"{root.name}.{p.name}" for p in root.iterdir()
            if p.is_dir() and ((p / "stage.py").is_file() or (p / "__main__.py").is_file())}


def by_unit(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between units: the package's top-level modules and its subpackages (stages)."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])
    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        out.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return out


@pytest.mark.parametrize("level", ["module", "subpackage"])
def test_the_package_has_no_import_cycle(level: str) -> None:
    graph = imports(provenance.PACKAGE_DIR)
    found = cycles(graph if level == "module" else by_unit(graph))
    new = sorted(sorted(c) for c in found - KNOWN_CYCLES[level])
    gone = sorted(sorted(c) for c in KNOWN_CYCLES[level] - found)
    assert not new, f"import cycles between {level}s: {new}"
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES: {gone}"


def test_config_imports_no_stage() -> None:
    root = provenance.PACKAGE_DIR
    stages = stage_packages(root)
    assert {"sophia.data", "sophia.distill", "sophia.evaluate", "sophia.export"} <= stages
    reached = closure(imports(root), "sophia.config")
    assert not sorted(m for m in reached if m.rpartition(".")[0] in stages or m in stages)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"a.py": "from . import b\n", "b.py": "def f():\n    from sophia import a\n"}, {"sophia.a", "sophia.b"}),
    # a submodule reading its package's re-exports while the package is still importing it
    ({"t/__init__.py": "from sophia.t.runs import run\n", "t/runs.py": "from sophia.t import store\nrun = 1\n",
      "t/store.py": "from sophia.t import run\n"}, {"sophia.t", "sophia.t.runs", "sophia.t.store"}),
    ({"t/__init__.py": "from sophia.t.runs import run\n", "t/runs.py": "from sophia.t.store import x\nrun = 1\n",
      "t/store.py": "x = 1\n", "config.py": "from sophia.t import store\n"}, None),
])
def test_the_walker_finds_cycles_and_only_cycles(tmp_path: Path, files: dict[str, str],
                                                 expected: set[str] | None) -> None:
    root = write(tmp_path / "sophia", {"__init__.py": "", **files})
    assert cycles(imports(root)) == ({frozenset(expected)} if expected else set())


def test_two_stages_that_import_each_other_are_a_cycle_of_subpackages(tmp_path: Path) -> None:
    root = write(tmp_path / "sophia", {"__init__.py": "", "ev/__init__.py": "", "ve/__init__.py": "",
                                       "ev/rerank.py": "from sophia.ve.model import V\n", "ev/lever.py": "F = 1\n",
                                       "ve/model.py": "from sophia.ev.lever import F\nV = 1\n"})
    graph = imports(root)
    assert cycles(graph) == set() and cycles(by_unit(graph)) == {frozenset({"sophia.ev", "sophia.ve"})}


def test_the_walker_sees_a_stage_below_config(tmp_path: Path) -> None:
    root = write(tmp_path / "sophia", {"__init__.py": "", "config.py": "from sophia import references\n",
                                       "references.py": "def f():\n    from sophia.data.formats import F\n",
                                       "data/__init__.py": "", "data/stage.py": "", "data/formats.py": "F = 1\n"})
    graph = imports(root)
    assert "sophia.data.formats" in closure(graph, "sophia.config") and "sophia.data" in stage_packages(root)
