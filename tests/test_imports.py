"""The package's import graph has no cycle: read from the source (ast), every ``import`` counted — at the top of a
module, inside a function (a lazy import still ties the two modules together) or under ``TYPE_CHECKING``.

A module importing one of its own parent packages is not counted: Python runs a package's ``__init__`` before any of
its modules anyway, so that edge is implied (it is how a package's ``__init__`` registers the builders its modules
define)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "harness"


def module_names() -> dict[str, Path]:
    """Return ``{dotted module name: file}`` of every module of the package (a package as its ``__init__``)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """Return the package's modules that the module at ``path`` imports (``from X import y`` counts ``X.y`` when it
    is a module, else ``X``; an absolute import only: the package uses no relative ones)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}"
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            names = submodules + ([node.module] if len(submodules) < len(node.names) else [])
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import harness.x.y` of a function or class: its module
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def import_graph() -> nx.DiGraph:
    """Return the package's import graph: an edge A -> B when module A imports module B (not B an ancestor of A)."""
    modules = module_names()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from((name, target) for target in imported_modules(path, modules)
                             if target != name and not name.startswith(target + "."))
    return graph


def test_the_package_has_no_import_cycle() -> None:
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == [], f"import cycles between modules: {cycles}"


def test_the_graph_sees_lazy_imports() -> None:
    """The check can fail: the worker's lazy import of the torchrun launcher is an edge."""
    assert import_graph().has_edge("harness.runner.worker", "harness.runner.torchrun")
