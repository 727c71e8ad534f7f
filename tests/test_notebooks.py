"""The rules every course notebook keeps, checked on the committed files without running them: parameters,
outputs, metadata, which slmlab modules a chapter imports, and where its artifacts go."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_OUTPUT = "# NBVAL_CHECK_OUTPUT"
QUICK_DEFAULT = "slmlab.quick_mode()"
CORE_MODULES = {"slmlab", "slmlab.io", "slmlab.settings", "slmlab.execution"}  # execution: code tasks, sandbox, scorer
CHAPTER_PACKAGES = {  # chapter number -> the slmlab entry points it may import (each also with its .views)
    "00": ("playground", "environment"),
    "01": ("lora",),
    "02": ("lora",),
    "03": ("lora",),
    "04": ("lora",),
    "05": ("ace",),
    "06": ("mcts",),
    "07": ("tinylm",),
    "08": ("rl",),
    "09": ("report",),
}
ARTIFACT_FUNCTIONS = {"artifacts_root", "data_dir", "adapters_dir", "results_dir", "default_run_dir", "run_dir_of"}
ARTIFACT_LITERALS = ("../data", "../adapters", "../results")


def code_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def source(cell: dict) -> str:
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def python_source(cell: dict) -> str:
    """The cell's code with IPython magics and shell escapes blanked (line numbers kept)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source(cell).splitlines())


# --- the checks: each returns problems as "<notebook>: <where>: <what>" -----------------------------------------
def _allowed_value(node: ast.expr, parameters: set[str]) -> bool:
    """A literal, a named constant that is not another parameter, or the environment-read QUICK default."""
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        pass
    if isinstance(node, ast.Name):
        return node.id not in parameters
    if isinstance(node, ast.Attribute):
        base = node
        while isinstance(base, ast.Attribute):
            base = base.value
        return isinstance(base, ast.Name) and base.id not in parameters
    return ast.unparse(node) == QUICK_DEFAULT


def parameter_problems(notebook: dict, name: str) -> list[str]:
    """The ``parameters`` cell assigns only literals, named constants and ``slmlab.quick_mode()``: papermill
    injects its values after that cell, so anything computed there from another parameter would miss them."""
    cells = [c for c in code_cells(notebook) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        return [f"{name}: needs exactly one code cell tagged 'parameters', found {len(cells)}"]
    problems, parameters = [], set()
    for node in ast.parse(python_source(cells[0])).body:
        where = f"{name}: parameters cell line {node.lineno}"
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if not targets or not all(isinstance(t, ast.Name) for t in targets) or node.value is None:
            problems.append(f"{where}: only NAME = value assignments belong here, not `{ast.unparse(node)}`")
            continue
        if not _allowed_value(node.value, parameters):
            problems.append(
                f"{where}: `{ast.unparse(node)}` is computed; give a literal default here "
                f"(e.g. None) and derive the value in the next cell"
            )
        parameters.update(t.id for t in targets)
    return problems


def output_problems(notebook: dict, name: str) -> list[str]:
    """No stored outputs or execution counts, except cells marked ``# NBVAL_CHECK_OUTPUT`` (without stderr)."""
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        if CHECK_OUTPUT in source(cell):
            if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outputs):
                problems.append(f"{name}: cell {index} ({cell.get('id')}): its checked output holds stderr")
        elif outputs or cell.get("execution_count") is not None:
            problems.append(f"{name}: cell {index} ({cell.get('id')}): committed with outputs or an execution count")
    return problems


def metadata_problems(notebook: dict, name: str) -> list[str]:
    metadata = notebook.get("metadata", {})
    problems = []
    if metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append(f"{name}: metadata.kernelspec.name must be python3")
    if not metadata.get("language_info"):
        problems.append(f"{name}: metadata.language_info is missing")
    return problems


def allowed_modules(name: str) -> set[str]:
    packages = CHAPTER_PACKAGES.get(name[:2])
    if packages is None:
        raise KeyError(f"{name}: add chapter {name[:2]} and its slmlab entry points to CHAPTER_PACKAGES")
    chapter = {f"slmlab.{p}{part}" for p in packages for part in ("", ".views", ".spec")}  # entry points, views, spec
    return CORE_MODULES | {"slmlab.spec"} | chapter


def import_problems(notebook: dict, name: str) -> list[str]:
    """A chapter imports slmlab only through its entry points (``slmlab.<chapter>``, its ``views`` and its ``spec``)
    and the core's ``slmlab``, ``slmlab.io``, ``slmlab.settings`` and ``slmlab.spec``."""
    allowed, problems = allowed_modules(name), []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse(python_source(cell))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if (module == "slmlab" or module.startswith("slmlab.")) and module not in allowed:
                    problems.append(
                        f"{name}: cell {index} line {node.lineno}: imports {module}; use one of {', '.join(sorted(allowed))}"
                    )
    return problems


def artifact_problems(notebook: dict, name: str) -> list[str]:
    """Generated data, adapters and results come from :func:`slmlab.settings.artifacts_root`'s rule, each call
    told the notebook's mode (``quick=QUICK``), never from a path written into the notebook."""
    problems = []
    for index, cell in enumerate(code_cells(notebook)):
        for node in ast.walk(ast.parse(python_source(cell))):
            where = f"{name}: code cell {index} line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(ARTIFACT_LITERALS):
                problems.append(
                    f"{where}: the path {node.value!r} bypasses slmlab.settings (data_dir, adapters_dir, results_dir)"
                )
            called = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
            if called in ARTIFACT_FUNCTIONS and not any(k.arg == "quick" for k in node.keywords):
                problems.append(f"{where}: {called}(...) needs quick=QUICK so quick runs keep to their own tree")
    return problems


CHECKS = (parameter_problems, output_problems, metadata_problems, import_problems, artifact_problems)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- the committed notebooks ------------------------------------------------------------------------------------
def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_rules(path, check):
    problems = check(load(path), path.name)
    assert not problems, "\n".join(problems)


def test_entry_points_stay_light():
    """Importing a chapter package loads none of torch, pandas or fastapi: its names are imported on first use."""
    code = (
        "import sys, slmlab.ace, slmlab.mcts, slmlab.tinylm, slmlab.rl; "
        "print(sorted(m for m in ('torch', 'pandas', 'fastapi') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


@pytest.mark.parametrize("package", ["slmlab.ace", "slmlab.mcts", "slmlab.lora", "slmlab.tinylm", "slmlab.rl"])
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing and set(module.__all__) <= set(dir(module))


# --- the checker itself, on notebooks built in memory -----------------------------------------------------------
def notebook(*cells: dict, metadata: dict | None = None) -> dict:
    default = {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "language_info": {"name": "python"}}
    return {"cells": list(cells), "metadata": default if metadata is None else metadata, "nbformat": 4}


def code(text: str, tags: tuple[str, ...] = (), outputs: list | None = None, count: int | None = None) -> dict:
    return {
        "cell_type": "code",
        "id": "x",
        "metadata": {"tags": list(tags)} if tags else {},
        "source": text,
        "outputs": outputs or [],
        "execution_count": count,
    }


def test_computed_parameter_is_reported_with_notebook_and_line():
    bad = notebook(
        code("QUICK = slmlab.quick_mode()\nSEED = 0\n# sizes\nEPOCHS = 1 if QUICK else 2\nSTEPS = SEED\n", tags=("parameters",))
    )
    problems = parameter_problems(bad, "05_bad.ipynb")
    assert len(problems) == 2
    assert problems[0].startswith("05_bad.ipynb: parameters cell line 4:") and "EPOCHS = 1 if QUICK else 2" in problems[0]
    assert problems[1].startswith("05_bad.ipynb: parameters cell line 5:") and "STEPS = SEED" in problems[1]


def test_literals_constants_and_the_quick_default_are_accepted():
    good = notebook(
        code(
            'QUICK = slmlab.quick_mode()\nMODEL = slmlab.DEFAULT_MODEL\nNAMES = ["a", "b"]\nLIMIT = None\n'
            "SCALE = -0.5  # a comment\nSIZE: int = 3\n",
            tags=("parameters",),
        )
    )
    assert parameter_problems(good, "good.ipynb") == []


@pytest.mark.parametrize(
    "text", ["QUICK = slmlab.quick_mode(True)", "N = len([1])", "print(1)", "import slmlab", "A = B = {'k': slmlab.quick_mode()}"]
)
def test_anything_else_in_the_parameters_cell_is_reported(text):
    assert parameter_problems(notebook(code(text, tags=("parameters",))), "bad.ipynb")


def test_missing_parameters_cell_is_reported():
    assert parameter_problems(notebook(code("QUICK = True")), "none.ipynb") == [
        "none.ipynb: needs exactly one code cell tagged 'parameters', found 0"
    ]


def test_outputs_are_reported_except_in_checked_cells():
    stdout = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    stderr = [{"output_type": "stream", "name": "stderr", "text": "FutureWarning"}]
    bad = notebook(
        code("1", outputs=stdout, count=1),
        code("2", count=3),
        code(f"{CHECK_OUTPUT}\n3", outputs=stdout, count=1),
        code(f"{CHECK_OUTPUT}\n4", outputs=stderr, count=1),
    )
    problems = output_problems(bad, "o.ipynb")
    assert [p.split(":")[1].strip() for p in problems] == ["cell 0 (x)", "cell 1 (x)", "cell 3 (x)"]
    assert "stderr" in problems[2]


def test_metadata_is_required():
    assert len(metadata_problems(notebook(metadata={}), "m.ipynb")) == 2


def test_imports_outside_the_entry_points_are_reported():
    bad = notebook(
        code(
            "import json\nfrom slmlab.mcts import run_chapter\nfrom slmlab.mcts.views import trace_table\n"
            "from slmlab.mcts.runs import ChapterSettings\nimport slmlab.tasks\n%matplotlib inline"
        )
    )
    problems = import_problems(bad, "06_bad.ipynb")
    assert len(problems) == 2 and "line 4: imports slmlab.mcts.runs" in problems[0] and "slmlab.tasks" in problems[1]
    with pytest.raises(KeyError, match="CHAPTER_PACKAGES"):
        import_problems(bad, "99_new.ipynb")


def test_artifact_paths_outside_the_rule_are_reported():
    bad = notebook(code('DATA = "../data"\nOUT = results_dir("x")\nOK = results_dir("x", quick=QUICK)'))
    problems = artifact_problems(bad, "a.ipynb")
    assert len(problems) == 2 and "'../data'" in problems[0] and "results_dir(...)" in problems[1]
