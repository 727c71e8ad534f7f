"""The house rules of the package's layout, checked on the source with ``ast`` (nothing is imported):
no private names across modules, chapters independent of each other, a core that knows no chapter but its spec,
artifact names written only in specs, dependencies imported at the top of each file, and no import cycle at
module level."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "slmlab"
CORE_SUBPACKAGES = {"slmlab.models", "slmlab.backends", "slmlab.execution"}  # every other subpackage of slmlab is a chapter
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
    in_function: bool = False  # made inside a function (a lazy import), not in a TYPE_CHECKING block


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}
CHAPTERS = sorted(name for name in PACKAGES if name.count(".") == 1 and name not in CORE_SUBPACKAGES)


def is_spec(module: str) -> bool:
    """A spec module (``slmlab.spec``, ``slmlab.<chapter>.spec``): the one screen of a chapter's names and paths."""
    return module == "slmlab.spec" or module.endswith(".spec")


def chapter_of(module: str) -> str | None:
    return next((chapter for chapter in CHAPTERS if module == chapter or module.startswith(chapter + ".")), None)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: list[ast.stmt], module_level: bool, in_function: bool = False) -> Iterator[tuple[ast.stmt, bool, bool]]:
    """Every import statement under ``nodes`` with whether it runs at import time of the module and whether it sits
    in a function."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, module_level, in_function
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node.body, False, True)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False, False)
            yield from _walk(node.orelse, module_level, in_function)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _walk([c for c in children if isinstance(c, ast.AST)], module_level, in_function)


def _absolute(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module or ""
    package = importer if importer in PACKAGES else importer.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_of(path: Path, importer: str) -> Iterator[Import]:
    """The slmlab imports of one file; ``from pkg import submodule`` counts as an import of the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    for node, module_level, in_function in _walk(tree.body, True):
        source = f"{where}:{node.lineno}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "slmlab":
                    yield Import(source, alias.name, (), module_level, in_function)
            continue
        target = _absolute(node, importer)
        if target.split(".")[0] != "slmlab":
            continue
        plain = tuple(a.name for a in node.names if f"{target}.{a.name}" not in MODULES)
        if plain or not node.names:
            yield Import(source, target, plain, module_level, in_function)
        for alias in node.names:
            if f"{target}.{alias.name}" in MODULES:
                yield Import(source, f"{target}.{alias.name}", (), module_level, in_function)


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


# Chapters that read other chapters' specs: the report gathers every chapter's results; chapter 06's part two searches
# chapter 08's held-out tasks with chapter 08's trained adapter (it needs their paths, never their code)
READERS_OF_SPECS = {"slmlab.report", "slmlab.mcts"}


def test_no_chapter_imports_another_chapter():
    found = [
        f"{item.source}: {name} imports {item.module}"
        for name, item in _all_imports()
        if chapter_of(name)
        and chapter_of(item.module) not in (None, chapter_of(name))
        and not (chapter_of(name) in READERS_OF_SPECS and is_spec(item.module))
    ]
    assert not found, "a chapter imports another chapter (shared code belongs in the core):\n" + "\n".join(found)


def test_the_core_imports_no_chapter():
    found = [
        f"{item.source}: {name} imports {item.module}"
        for name, item in _all_imports()
        if chapter_of(name) is None and chapter_of(item.module) and name not in CORE_EXCEPTIONS and not is_spec(item.module)
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


# --- artifact names live in specs -------------------------------------------------------------------------------
SPEC_FILES = sorted(path for name, path in MODULES.items() if is_spec(name))
ARTIFACT_FILE = re.compile(r"^[\w.-]+\.(json|jsonl|csv|md|pt|safetensors|log|png|svg|tex|txt|bin)$")
ARTIFACT_PATH = re.compile(r"(^|[^\w/.-])(results|adapters|data)/")  # a path written out inside a tree
TREE_FOLDERS = {"results", "adapters", "data"}  # as a bare word, a path only where a path is built (see _path_parts)
STOCK_NAMES = {"config.json"}  # transformers' own model config, a stock format's name as well as a run's record
RULE_FREE = {"slmlab.settings"}  # the artifacts rule itself: the three folders of a tree


def declared_names() -> dict[str, str]:
    """Every artifact name a spec declares (a file name, or a folder constant ``*_NAME``) → the specs that declare it."""
    names = {}
    for path in SPEC_FILES:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.Assign):
                continue
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for value in values:
                text = value.value if isinstance(value, ast.Constant) else None
                if isinstance(text, str) and (ARTIFACT_FILE.match(text) or any(t.endswith("_NAME") for t in targets)):
                    names.setdefault(text, []).append(path.relative_to(ROOT).as_posix())
    return {name: ", ".join(specs) for name, specs in names.items() if name not in STOCK_NAMES}


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr)
    }


PATH_CALLS = {"Path", "PurePath", "join", "joinpath", "data_dir", "adapters_dir", "results_dir"}  # build a path
PATH_PARAMETER = re.compile(r"dir|path|root|folder|out")  # a parameter whose default is a path


def _path_parts(tree: ast.AST) -> set[int]:
    """The constants that are parts of a path being built: operands of ``/``, arguments of a call that builds a path,
    defaults of a parameter that names a folder."""
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in PATH_CALLS:
            parts |= {id(arg) for arg in node.args}
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args][-len(node.defaults) :] if node.defaults else []
            pairs = [*zip(positional, node.defaults), *zip(node.kwonlyargs, node.kw_defaults)]
            parts |= {id(default) for arg, default in pairs if default is not None and PATH_PARAMETER.search(arg.arg)}
    return parts


def literal_artifacts(path: Path, names: dict[str, str]) -> Iterator[str]:
    """The string literals of a file (docstrings aside) that spell out an artifact a spec owns, or a path in a tree."""
    shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    yield from literals_in(path.read_text(encoding="utf-8"), shown, names)


def literals_in(code: str, shown: str, names: dict[str, str]) -> Iterator[str]:
    """:func:`literal_artifacts` of a piece of source (``shown`` names it in the messages)."""
    tree = ast.parse(code)
    docstrings, path_parts = _docstrings(tree), _path_parts(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            owner = names.get(text) or next((spec for name, spec in names.items() if text.endswith("/" + name)), None)
            if owner or ARTIFACT_PATH.search(text) or (text in TREE_FOLDERS and id(node) in path_parts):
                why = f"declared in {owner}" if owner else "a path in an artifacts tree: use the spec's function"
                yield f"{shown}:{node.lineno}: {text[:70]!r} ({why})"


def test_specs_declare_the_artifacts():
    names = declared_names()
    assert {"comparison.json", "eval.json", "summary.json", "patterns-lora", "course_runs.json"} <= set(names)


def test_the_literal_check_finds_an_artifact_name(tmp_path):
    planted = tmp_path / "reader.py"
    planted.write_text(
        '"""Doc: results/comparison.json is fine here."""\nSOURCE = "results/comparison.json"\nOTHER = "eval.json"\n'
        'KEY = {"data": 1}\nScene("data")\ndef f(folder="data", kind="data"):\n    return Path("results") / "x"\n'
    )
    assert [line.split(": ", 1)[1] for line in literal_artifacts(planted, {"eval.json": "spec"})] == [
        "'results/comparison.json' (a path in an artifacts tree: use the spec's function)",
        "'eval.json' (declared in spec)",
        "'data' (a path in an artifacts tree: use the spec's function)",
        "'results' (a path in an artifacts tree: use the spec's function)",
    ]


def test_artifact_names_are_written_only_in_specs():
    names = declared_names()
    found = [
        line
        for name, path in MODULES.items()
        if not is_spec(name) and name not in RULE_FREE
        for line in literal_artifacts(path, names)
    ]
    assert not found, "artifact names or paths written outside the specs:\n" + "\n".join(found)


def test_specs_import_no_heavy_library():
    code = (
        "import sys, slmlab.chapters; heavy = [m for m in ('torch', 'pandas', 'fastapi', 'matplotlib', 'transformers')"
        " if m in sys.modules]; assert not heavy, heavy"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


SPEC_IMPORTS = {"slmlab.spec", "slmlab.errors", "slmlab.settings", "slmlab.models.registry"}  # light core, no chapter


def test_specs_import_only_light_core_modules():
    found = [
        f"{item.source}: {name} imports {item.module}"
        for name, item in _all_imports()
        if is_spec(name) and item.module not in SPEC_IMPORTS
    ]
    assert not found, f"a spec imports more than {', '.join(sorted(SPEC_IMPORTS))}:\n" + "\n".join(found)


# --- dependencies at the top of each file ------------------------------------------------------------------------
# module → how many slmlab imports it makes inside functions, each commented with why: the lazy entry points that
# keep torch, pandas and fastapi out of light imports (the CLI's verbs, optional backends, test helpers)
LAZY_IMPORTS: dict[str, int] = {
    "slmlab.ace.cli": 2,
    "slmlab.backends": 4,
    "slmlab.backends.torch_backend": 1,
    "slmlab.lora.training": 1,
    "slmlab.mcts.cli": 10,
    "slmlab.mcts.serve": 1,
    "slmlab.rl.cli": 2,
    "slmlab.rl.policy": 3,
    "slmlab.testing": 5,
    "slmlab.tinylm.cli": 6,
}
LAZY = "# lazy:"  # the comment that says why an slmlab import waits inside a function (keeps a light import light)


def function_level_imports() -> dict[str, list[tuple[int, bool]]]:
    """Module → (line, commented) of each slmlab import made inside a function (TYPE_CHECKING blocks aside)."""
    found: dict[str, list[tuple[int, bool]]] = {}
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for item in imports_of(path, name):
            if item.in_function:
                line = int(item.source.rsplit(":", 1)[1])
                commented = any(LAZY in lines[index] for index in (line - 2, line - 1) if 0 <= index < len(lines))
                found.setdefault(name, [])
                if (line, commented) not in found[name]:
                    found[name].append((line, commented))
    return found


def test_function_level_imports_say_why():
    missing = [
        f"{MODULES[name].relative_to(ROOT).as_posix()}:{line}"
        for name, imports in function_level_imports().items()
        for line, commented in imports
        if not commented
    ]
    assert not missing, f"slmlab imports inside functions without a '{LAZY} why' comment (or move them up):\n" + "\n".join(
        missing
    )


def test_function_level_imports_do_not_grow():
    counts = {name: len(imports) for name, imports in function_level_imports().items()}
    grown = [
        f"{name}: {count} (listed: {LAZY_IMPORTS.get(name, 0)})"
        for name, count in counts.items()
        if count > LAZY_IMPORTS.get(name, 0)
    ]
    assert not grown, "more function-level slmlab imports than listed (move them to the top, or list them here):\n" + "\n".join(
        grown
    )
    assert sum(counts.values()) == sum(LAZY_IMPORTS.values()), "fewer than listed: lower LAZY_IMPORTS to the new counts"


def notebook_code(path: Path) -> Iterator[tuple[int, str]]:
    """(cell number, Python source) of a notebook's code cells, IPython magics and shell lines left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for number, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            text = "".join(cell["source"])
            yield number, "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_notebooks_name_artifacts_through_specs():
    names = declared_names()
    found = [
        line
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        for number, code in notebook_code(path)
        for line in literals_in(code, f"notebooks/{path.name} cell {number}", names)
    ]
    assert not found, "artifact names or paths written in a notebook instead of read from a spec:\n" + "\n".join(found)
