"""The house rules of the package's layout, checked on the source with ``ast`` (nothing is imported):
no private names across modules, chapters independent of each other, a core that knows no chapter, and
no import cycle at module level."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "slmlab"
CORE_SUBPACKAGES = {"slmlab.models", "slmlab.backends"}  # every other subpackage of slmlab is a chapter
# The core modules that may import chapter code, and why:
CORE_EXCEPTIONS = {
    "slmlab.cli": "the command line dispatches to every chapter's verbs",
    "slmlab.course": "the course runner may name the chapters it runs",
    "slmlab.testing": "test helpers build chapter fixtures (toy_patterns needs slmlab.lora.patterns)",
}


@dataclass(frozen=True)
class Import:
    """One import of an slmlab module: where it is, the module it names and the names taken from it."""

    source: str  # "lib/slmlab/x.py:12"
    module: str  # the imported module, resolved to a file of the package
    names: tuple[str, ...]  # names taken with ``from module import ...`` (empty for ``import module``)
    module_level: bool  # runs when the importing module is imported (not in a function, not TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}
CHAPTERS = sorted(name for name in PACKAGES if name.count(".") == 1 and name not in CORE_SUBPACKAGES)


def chapter_of(module: str) -> str | None:
    return next((chapter for chapter in CHAPTERS if module == chapter or module.startswith(chapter + ".")), None)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: list[ast.stmt], module_level: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``nodes`` with whether it runs at import time of the module."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, module_level
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, module_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _walk([c for c in children if isinstance(c, ast.AST)], module_level)


def _absolute(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module or ""
    package = importer if importer in PACKAGES else importer.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_of(path: Path, importer: str) -> Iterator[Import]:
    """The slmlab imports of one file; ``from pkg import submodule`` counts as an import of the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(ROOT).as_posix()
    for node, module_level in _walk(tree.body, True):
        source = f"{where}:{node.lineno}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "slmlab":
                    yield Import(source, alias.name, (), module_level)
            continue
        target = _absolute(node, importer)
        if target.split(".")[0] != "slmlab":
            continue
        plain = tuple(a.name for a in node.names if f"{target}.{a.name}" not in MODULES)
        if plain or not node.names:
            yield Import(source, target, plain, module_level)
        for alias in node.names:
            if f"{target}.{alias.name}" in MODULES:
                yield Import(source, f"{target}.{alias.name}", (), module_level)


def python_files() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_attributes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``slmlab.x._name`` written out in full."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "slmlab":
                yield node.lineno, ".".join(["slmlab", *reversed(chain)])


def test_no_private_names_are_imported_across_modules():
    found = []
    for path in python_files():
        importer = module_name(path) if path.is_relative_to(PACKAGE) else path.stem
        for item in imports_of(path, importer):
            found += [f"{item.source}: from {item.module} import {name}" for name in item.names if _private(name)]
            if any(_private(part) for part in item.module.split(".")):
                found.append(f"{item.source}: import {item.module}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(ROOT).as_posix()}:{line}: {dotted}" for line, dotted in _private_attributes(tree)]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def _all_imports() -> Iterator[tuple[str, Import]]:
    for name, path in MODULES.items():
        for item in imports_of(path, name):
            yield name, item


def test_the_chapters_are_known():
    assert {"slmlab.lora", "slmlab.ace", "slmlab.mcts", "slmlab.tinylm", "slmlab.rl"} <= set(CHAPTERS)


def test_no_chapter_imports_another_chapter():
    found = [
        f"{item.source}: {name} imports {item.module}"
        for name, item in _all_imports()
        if chapter_of(name) and chapter_of(item.module) not in (None, chapter_of(name))
    ]
    assert not found, "a chapter imports another chapter (shared code belongs in the core):\n" + "\n".join(found)


def test_the_core_imports_no_chapter():
    found = [
        f"{item.source}: {name} imports {item.module}"
        for name, item in _all_imports()
        if chapter_of(name) is None and chapter_of(item.module) and name not in CORE_EXCEPTIONS
    ]
    assert not found, "a core module imports chapter code:\n" + "\n".join(found)


def test_the_exceptions_are_real_modules():
    assert set(CORE_EXCEPTIONS) <= set(MODULES)


def import_graph() -> dict[str, set[str]]:
    """Module → the slmlab modules it imports at module level (the edges that can form an import cycle)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, item in _all_imports():
        if item.module_level and item.module in MODULES and item.module != name:
            graph[name].add(item.module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_at_module_level():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle among slmlab modules: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module, heavy", [("slmlab.mcts.controller", "fastapi"), ("slmlab.cli", "torch")])
def test_light_imports_stay_light(module, heavy):
    code = f"import sys, {module}; assert {heavy!r} not in sys.modules, '{module} imports {heavy}'"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
