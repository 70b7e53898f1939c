"""The launcher package's import graph: no cycles, and the submit/worker contract is a leaf."""

from __future__ import annotations

import ast
from pathlib import Path

import hydra_plugins.hydra_htcondor_launcher as pkg

PKG_DIR = Path(pkg.__file__).parent
PKG_NAME = pkg.__name__


def _imports(path: Path) -> set[str]:
    """The package's modules `path` imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import _x / from ._x import y
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and (node.module + ".").startswith(PKG_NAME + "."):
                rest = node.module[len(PKG_NAME) + 1 :]
                found.update([rest.split(".")[0]] if rest else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PKG_NAME + "."):
                    found.add(alias.name[len(PKG_NAME) + 1 :].split(".")[0])
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PKG_DIR.glob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that is on one (depth-first search, each path reported once)."""
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = _graph()
    assert {"_core", "_worker", "htcondor_launcher", "_contract", "sweep"} <= set(graph)  # the whole package
    assert "_contract" in graph["_worker"] and "_sweep" in graph["htcondor_launcher"]  # and lazy imports
    assert "htcondor_launcher" in graph["sweep"]  # and those under TYPE_CHECKING
    assert _cycles(graph) == []


def test_the_contract_and_the_worker_are_imported_as_they_should():
    graph = _graph()
    assert graph["_contract"] == graph["_disk"] == graph["_layout"] == set()  # leaves: standard library only
    # The remote entry point is imported by no module of the launcher (the contract lives in _contract).
    assert [name for name, deps in graph.items() if "_worker" in deps] == []
