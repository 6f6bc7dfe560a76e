"""The code's structure: no import cycles (lazy imports inside functions included), and every pluggable kind listed
by `lfsbench ls` from its registry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "lfsbench": ROOT / "lfsbench",
    "lfsbench.methods": ROOT / "methods",
    "lfsbench.protocols": ROOT / "protocols",
}


def _modules() -> dict[str, Path]:
    """Every module of the installed package by dotted name (methods/ and protocols/ are lfsbench.methods, ...)."""
    out = {}
    for package, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            if "weights" in f.parts:
                continue
            parts = f.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            out[name] = f
    return out


def _imports(tree: ast.AST, module: str, known: dict[str, Path]) -> set[str]:
    """The lfsbench modules a module imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    found = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from lfsbench import cli`: the submodule; `from lfsbench.x import f`: x
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {}
    for name, path in known.items():
        targets = _imports(ast.parse(path.read_text()), name, known)
        # importing lfsbench.a.b runs lfsbench/a/__init__.py first, unless that package is one the importing module
        # is inside (then it is being imported already): an edge to each other package on the way
        own = set(_parents(name, known)) | {name}
        graph[name] = targets | {p for t in targets for p in _parents(t, known) if p not in own}
    return graph


def _parents(module: str, known: dict[str, Path]) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["lfsbench.runner"]  # the graph was read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_lazy_cycle():
    """The test above can fail: a cycle through an import inside a function is found."""
    graph = import_graph()
    graph["lfsbench.errors"] = graph["lfsbench.errors"] | {"lfsbench.cli"}  # as if errors.py imported cli lazily
    assert any("lfsbench.errors" in c and "lfsbench.cli" in c for c in cycles(graph))
    code = "def f():\n    from lfsbench import cli\n"
    known = _modules()
    assert _imports(ast.parse(code), "lfsbench.errors", known) == {"lfsbench.cli"}
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lfsbench import cli\n"
    assert _imports(ast.parse(guarded), "lfsbench.errors", known) == set()


@pytest.mark.parametrize(
    "kind, registered",
    [
        ("methods", "lfs"),
        ("protocols", "toy-quick"),
        ("metrics", "IAD"),
        ("executors", "submitit"),
        ("trackers", "tensorboard"),
        ("backbones", "sd-random"),
        ("evaluators", "open_clip"),
    ],
)
def test_ls_lists_every_registered_kind(kind, registered):
    from lfsbench import catalog

    code, out = invoke("ls", kind, "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert rows == catalog.LISTINGS[kind]() and any(registered in row.values() for row in rows)
    code, out = invoke("ls", kind)
    assert code == 0 and registered in out


def test_ls_lists_the_registries_themselves():
    """Each listing is its registry's contents: a new entry is listed without editing `ls`."""
    from lfsbench.evaluation.metrics import METRICS
    from lfsbench.executors import EXECUTORS
    from lfsbench.method import METHODS, _import_methods
    from lfsbench.models import BACKBONES, EVALUATORS
    from lfsbench.tracking import TRACKERS

    _import_methods()
    code, out = invoke("ls", "metrics", "--json")
    assert [r["name"] for r in json.loads(out)] == list(METRICS)
    code, out = invoke("ls", "methods", "--json")
    assert {r["name"] for r in json.loads(out)} >= set(METHODS.names())
    for kind, registry in (("executors", EXECUTORS), ("trackers", TRACKERS)):
        code, out = invoke("ls", kind, "--json")
        assert sorted(r["name"] for r in json.loads(out)) == registry.names()
    for kind, registry in (("backbones", BACKBONES), ("evaluators", EVALUATORS)):
        code, out = invoke("ls", kind, "--json")
        assert [r["kind"] for r in json.loads(out)] == [k.name for k in registry.in_order()]
    code, out = invoke("ls", "methods", "lfs")
    assert code == 0 and "context_strength" in out and "stable-diffusion" in out  # one method in full
    code, out = invoke("ls", "recipes")
    assert code == 2 and "list one of methods, protocols, metrics, executors, trackers, backbones, evaluators" in out
