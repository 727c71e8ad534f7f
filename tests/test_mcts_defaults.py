"""Chapter 06's sizes are written once, in :mod:`slmlab.mcts.spec`: no other module of the chapter, nor the report
or the chapter's notebook, types a budget, a simulation count, a span length (or the other sizes the spec names) as
a number where it sets one: a keyword argument, a parameter's default, a dataclass field, a command-line default."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

from slmlab.mcts import spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "lib" / "slmlab" / "mcts" / "spec.py"
SOURCES = sorted(p for p in [*(ROOT / "lib/slmlab/mcts").rglob("*.py"), *(ROOT / "lib/slmlab/report").rglob("*.py")] if p != SPEC)
NOTEBOOK = ROOT / "notebooks" / "06_mcts_controller.ipynb"
# parameter or field name → the spec's constant for it
SIZES = {
    "budget": "BUDGET",
    "max_budget": "MAX_BUDGET",
    "span_tokens": "SPAN_TOKENS",
    "simulations": "SIMULATIONS",
    "num_simulations": "SIMULATIONS",
    "parallel_leaves": "PARALLEL_LEAVES",
    "best_of": "BEST_OF",
    "max_resamples": "MAX_RESAMPLES",
    "hidden": "HIDDEN",
}
OPTIONS = {"--budget", "--max-budget", "--span-tokens", "--sims", "--leaves", "--best-of"}  # the CLI's names for them


def _number(node: ast.AST | None) -> bool:
    """A number other than 0: every size is at least 1, so a 0 starts a tally (simulations run so far), not a size."""
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value != 0


def _defaults(arguments: ast.arguments) -> Iterator[tuple[str, ast.AST | None]]:
    positional = [*arguments.posonlyargs, *arguments.args]
    yield from zip((a.arg for a in positional[len(positional) - len(arguments.defaults) :]), arguments.defaults)
    yield from zip((a.arg for a in arguments.kwonlyargs), arguments.kw_defaults)


def _option_default(call: ast.Call) -> tuple[str, ast.AST | None]:
    """``add_argument("--budget", default=48)`` → ``("--budget", <48>)``."""
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    default = next((k.value for k in call.keywords if k.arg == "default"), None)
    return next((n for n in names if n in OPTIONS), ""), default


def sized_literals(code: str) -> Iterator[tuple[int, str]]:
    """(line, name) of every size set to a number in ``code``."""
    for node in ast.walk(ast.parse(code)):
        found: list[tuple[str, ast.AST | None]] = []
        if isinstance(node, ast.Call):
            found += [(k.arg, k.value) for k in node.keywords if k.arg]
            if getattr(node.func, "attr", None) == "add_argument":
                found.append(_option_default(node))
        elif isinstance(node, ast.arguments):
            found += list(_defaults(node))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.append((node.target.id, node.value))
        yield from ((value.lineno, name) for name, value in found if (name in SIZES or name in OPTIONS) and _number(value))


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_the_spec_names_every_size():
    assert all(isinstance(getattr(spec, constant), int) for constant in SIZES.values())


def test_the_scan_finds_a_size_typed_as_a_number():
    planted = (
        "def answer(prompt, budget=48, *, span_tokens=8.0, name='x'):\n"
        "    return EnvConfig(budget=BUDGET, simulations=64, seed=3)\n"
        "class Sizes:\n    hidden: int = 128\n    simulations: int = 0\n"
        "parser.add_argument('--sims', dest='simulations', type=int, default=8)\n"
        "parser.add_argument('--port', type=int, default=8000)\n"
        "flag = Options(best_of=True)\n"  # a bool is not a size
    )
    assert sorted(sized_literals(planted)) == [
        (1, "budget"),
        (1, "span_tokens"),
        (2, "simulations"),
        (4, "hidden"),
        (6, "--sims"),
    ]


def test_chapter_06_writes_its_sizes_only_in_its_spec():
    found = [
        f"{path.relative_to(ROOT).as_posix()}:{line}: {name}"
        for path in SOURCES
        for line, name in sized_literals(path.read_text(encoding="utf-8"))
    ]
    found += [f"{NOTEBOOK.name} (code cells) line {line}: {name}" for line, name in sized_literals(notebook_code(NOTEBOOK))]
    assert not found, "a size of chapter 06 typed as a number outside slmlab.mcts.spec (use its constant):\n" + "\n".join(found)
