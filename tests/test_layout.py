"""The package's layout: no import cycle, dependencies pointing one way, small leaf modules.

Read from the source with ``ast`` (nothing is imported): every ``import`` of a tasktrace
module, at the top or inside a function, except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

import tasktrace

ROOT = Path(tasktrace.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["tasktrace", *parts])


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> Optional[str]:
    if node.level == 0:
        return node.module
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: Set[str]) -> None:
        self.module = module
        self.is_package = is_package
        self.known = known
        self.found: Set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, name: str) -> None:
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if name and name != self.module:
            self.found.add(name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("tasktrace"):
                self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = _resolve(self.module, node, self.is_package)
        if not target or not target.startswith("tasktrace"):
            return
        for alias in node.names:
            full = f"{target}.{alias.name}"
            self._add(full if full in self.known else target)


def _graph() -> Dict[str, Set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(files)
    graph: Dict[str, Set[str]] = {}
    for name, path in files.items():
        visitor = _Imports(name, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = visitor.found
    return graph


GRAPH = _graph()


def _reachable(start: str, graph: Dict[str, Set[str]]) -> Set[str]:
    seen: Set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _is_own_package(importer: str, imported: str) -> bool:
    """A package's ``__init__`` imports its own modules to re-export them: not a cycle."""
    return importer.startswith(imported + ".") or imported.startswith(importer + ".")


def test_no_import_cycle() -> None:
    """No tasktrace module can reach itself through imports (lazy ones included), apart
    from a package re-exporting its own modules."""
    graph = {
        module: {dep for dep in deps if not _is_own_package(module, dep)}
        for module, deps in GRAPH.items()
    }
    cycles: List[str] = []
    for module in sorted(graph):
        if module in _reachable(module, graph):
            cycles.append(module)
    assert cycles == []


#: Modules that import nothing of tasktrace (leaves), or only the leaves listed.
LEAVES = {
    "tasktrace._clock": set(),
    "tasktrace._compat": set(),
    "tasktrace._config_cache": set(),
    "tasktrace._files": set(),
    "tasktrace._fork": set(),
    "tasktrace._rng": {"tasktrace._fork"},
    "tasktrace._running": set(),
    "tasktrace._host": set(),
    "tasktrace._sanitize": set(),
    "tasktrace._suggest": set(),
    "tasktrace._suppress": set(),
    "tasktrace._version": set(),
    "tasktrace.environment": set(),
    "tasktrace.exceptions": set(),
    "tasktrace.records": set(),
}


@pytest.mark.parametrize("module", sorted(LEAVES))
def test_leaf_modules_stay_leaves(module: str) -> None:
    """The small modules everything builds on depend on nothing above them."""
    assert GRAPH[module] <= LEAVES[module]


#: What each layer must never import (directly or not): dependencies point one way,
#: config -> targets -> transaction -> hooks -> recorder -> reporters -> store.
FORBIDDEN = {
    "tasktrace.config": {"tasktrace.transaction", "tasktrace.recorder", "tasktrace.reporters"},
    "tasktrace.store": {
        "tasktrace.reporters",
        "tasktrace.recorder",
        "tasktrace.transaction",
        "tasktrace.hooks",
        "tasktrace._state",
    },
    "tasktrace.records": {"tasktrace.transaction", "tasktrace.reporters", "tasktrace.store"},
    "tasktrace.recorder": {"tasktrace.transaction", "tasktrace._state", "tasktrace.hooks"},
    "tasktrace.targets": {"tasktrace.transaction", "tasktrace.recorder", "tasktrace.reporters"},
    # The live transaction knows nothing of how it is opened, or of the API forms on top.
    "tasktrace.transaction": {
        "tasktrace._scopes",
        "tasktrace.blocks",
        "tasktrace.current",
        "tasktrace.segments",
        "tasktrace.api",
        "tasktrace.wrappers",
    },
    "tasktrace._scopes": {
        "tasktrace.blocks",
        "tasktrace.current",
        "tasktrace.segments",
        "tasktrace.api",
        "tasktrace.wrappers",
    },
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_one_way(layer: str) -> None:
    """A layer reaches none of the layers above it, through any import."""
    modules = [m for m in GRAPH if m == layer or m.startswith(layer + ".")]
    reached: Set[str] = set()
    for module in modules:
        reached |= _reachable(module, GRAPH)
    above = {m for m in reached for bad in FORBIDDEN[layer] if m == bad or m.startswith(bad + ".")}
    assert above == set()


def test_the_bootstrap_path_does_not_load_the_admin_display_code() -> None:
    """``describe`` and the starter config belong to the admin commands: the config
    package, which every instrumented process loads, does not import them."""
    reached = _reachable("tasktrace.config", GRAPH)
    assert not {m for m in reached if m.startswith("tasktrace.admin")}
    assert "tasktrace.config._describe" not in GRAPH


def test_every_registry_is_reset_between_tests() -> None:
    """Each module with module-level state and a ``_reset_for_tests()`` is reset by the
    autouse fixture (directly, or by the package that owns it)."""
    # Read from the file: "conftest" may name tests/integration's one in a full run.
    fixture = ast.parse((Path(__file__).parent / "conftest.py").read_text(encoding="utf-8"))
    registries = next(
        ast.literal_eval(node.value)
        for node in fixture.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "_REGISTRIES" for t in node.targets)
    )
    reset = {*registries, "tasktrace.apps"}
    # Reset by their owners: hooks resets its tracer and the import machinery.
    reset |= {"tasktrace.hooks._main", "tasktrace._importlib_bootstrap"}
    # recorder._process is the recorder package's (which re-exports its reset).
    reset |= {"tasktrace.recorder._process"}
    defining = set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "_reset_for_tests"
            for node in tree.body
        ):
            defining.add(_module_name(path))
    assert defining - reset == set()


def test_one_did_you_mean() -> None:
    """Only tasktrace._suggest uses difflib: one way to suggest a name, worded alike."""
    users = sorted(
        _module_name(path)
        for path in ROOT.rglob("*.py")
        if "difflib" in path.read_text(encoding="utf-8").replace("``difflib``", "")
    )
    assert users == ["tasktrace._suggest"]


def test_every_test_says_what_it_pins() -> None:
    """Each test function has a docstring: the behaviour it pins, in a sentence."""
    tests_dir = Path(__file__).resolve().parent
    bare = []
    for path in sorted(tests_dir.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name.startswith("test_")
                and not ast.get_docstring(node)
            ):
                bare.append(f"{path.relative_to(tests_dir)}:{node.lineno} {node.name}")
    assert bare == []
