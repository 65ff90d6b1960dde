"""The package's shape: modules and packages in the layers declared in
:mod:`trolleyfs.layers`, no import from a lower layer to a higher one, no
circle between modules or between packages (counting imports inside
functions too), the config reading no part of the core; no module over 500
lines."""

from __future__ import annotations

import ast
from pathlib import Path

import trolleyfs
from trolleyfs.layers import LAYERS, NOT_FROM_CONFIG

ROOT = Path(trolleyfs.__file__).parent
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The trolleyfs modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # ``from . import sampledata``
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_checker_sees_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_and_relative_imports_are_seen() -> None:
    graph = _graph()
    assert "trolleyfs.search.qido" in graph["trolleyfs.protocols"]  # imported inside a factory
    assert "trolleyfs.clihelp" in graph["trolleyfs.cli"]  # ``from . import clihelp as H``
    assert "trolleyfs.transport.retry" in graph["trolleyfs.transport.http"]


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


def test_no_module_over_500_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# --------------------------------------------------------------------------- the layers


def _unit(module: str) -> str:
    """The top-level module or package of trolleyfs a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_of() -> dict[str, int]:
    return {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _upward(graph: dict[str, set[str]], layer_of: dict[str, int]) -> list[str]:
    """Every import of a module from a higher layer than its own."""
    return sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of[_unit(b)] < layer_of[_unit(a)]
    )


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between packages (a top-level module is its own package)."""

    def package(m: str) -> str:
        return m if m.count(".") < 2 and not (ROOT / m.split(".")[-1]).is_dir() else m.rpartition(".")[0]

    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(package(a), set()).update(package(b) for b in targets if package(b) != package(a))
    for targets in list(out.values()):
        for t in targets:
            out.setdefault(t, set())
    return out


def test_every_module_has_one_layer() -> None:
    declared = [unit for _, units in LAYERS for unit in units]
    assert len(declared) == len(set(declared))
    assert {_unit(m) for m in _modules()} == set(declared)


def test_the_checker_sees_an_upward_arrow() -> None:
    layer_of = {"cli": 0, "tree": 1, "model": 2}
    graph = {"trolleyfs.tree.dirs": {"trolleyfs.model"}, "trolleyfs.model": {"trolleyfs.tree.base"}}
    assert _upward(graph, layer_of) == ["trolleyfs.model -> trolleyfs.tree.base"]


def test_no_layer_imports_a_higher_one() -> None:
    assert _upward(_graph(), _layer_of()) == []


def test_no_circles_between_packages() -> None:
    assert _cycles(_packages(_graph())) == []


def test_the_config_reads_no_part_of_the_core() -> None:
    graph = _graph()
    core = {m for m in graph if _unit(m) in NOT_FROM_CONFIG}
    config = {m for m in graph if _unit(m) == "config"}
    assert not {f"{a} -> {b}" for a in config for b in graph[a] if b in core}


def test_no_test_module_imports_another() -> None:
    """What tests share lives in helpers (``tests/*.py`` that are not tests,
    ``tests/fakes/``, ``tests/servers/``), never in another test module: a
    test module's fixtures and collection then stay its own."""
    tests_root = ROOT.parent / "tests"
    found = []
    for path in sorted(tests_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.rpartition(".")[2].startswith("test_"):
                    found.append(f"{path.relative_to(tests_root)}: from {'.' * node.level}{node.module}")
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.relative_to(tests_root)}: import {a.name}"
                    for a in node.names
                    if a.name.rpartition(".")[2].startswith("test_")
                ]
    assert found == []
