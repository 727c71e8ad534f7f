"""Task items with gold answers, shared by every chapter that scores answers: the item type, a validating
JSONL / JSON-list loader that names every problem as ``file:line: why``, the registry of committed task
files under ``data/tasks``, and answer scoring (choice letters, IoT verdicts, normalized exact match).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from slmlab import metrics
from slmlab.errors import ProblemListError, SlmLabError
from slmlab.settings import project_root
from slmlab.spec import task_sets_dir

LETTERS = "ABCDEFGHIJ"
FIELDS = ("id", "domain", "context", "question", "choices", "answer")


class TaskFileError(ProblemListError):
    """A task file that is missing or holds invalid items; lists every problem as ``file:line: why``."""


class UnknownTaskError(SlmLabError, ValueError):
    """A task name that is neither in the registry nor a JSON / JSONL file."""


@dataclass(frozen=True)
class TaskItem:
    id: str
    question: str
    answer: str
    domain: str
    context: str = ""
    choices: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        row = {
            "id": self.id,
            "domain": self.domain,
            "context": self.context,
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
        }
        return {key: value for key, value in row.items() if value}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    domain: str
    path: Path  # relative to the project root (absolute for a file outside the registry)
    description: str

    def full_path(self) -> Path:
        return self.path if self.path.is_absolute() else project_root() / self.path


# --- loading -----------------------------------------------------------------------------------------------
def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def _json_list_lines(text: str) -> list[int]:
    """Line number where each top-level element of a (valid) JSON list starts."""
    decoder, pos, lines = json.JSONDecoder(), text.index("[") + 1, []
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        if text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        pos = decoder.raw_decode(text, pos)[1]


def _records(text: str, is_json: bool) -> tuple[list[tuple[int, object]], list[str]]:
    """(line, decoded item) pairs and "line: why" problems of undecodable lines."""
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [f"{exc.lineno}: invalid JSON ({exc.msg})"]
        if not isinstance(data, list):
            return [], ["1: a .json task file must hold a list of objects"]
        return list(zip(_json_list_lines(text), data)), []
    records, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(f"{number}: invalid JSON ({exc.msg})")
    return records, problems


def _check(row: object) -> list[str]:
    """Problems of one decoded item, each naming the field."""
    if not isinstance(row, dict):
        return ["item is not a JSON object"]
    problems = [f"unknown field '{key}'" for key in row if key not in FIELDS]
    for name in ("id", "domain", "question", "answer"):
        if name not in row:
            problems.append(f"field '{name}' is missing")
        elif not isinstance(row[name], str) or not row[name].strip():
            problems.append(f"field '{name}' must be a non-empty string")
    if not isinstance(row.get("context", ""), str):
        problems.append("field 'context' must be a string")
    choices, answer = row.get("choices", []), row.get("answer")
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        problems.append("field 'choices' must be a list of strings")
    elif choices and not 2 <= len(choices) <= len(LETTERS):
        problems.append(f"field 'choices' must have 2 to {len(LETTERS)} entries")
    elif choices and isinstance(answer, str) and answer.strip() not in LETTERS[: len(choices)]:
        problems.append(f"field 'answer' must be a letter A-{LETTERS[len(choices) - 1]} for {len(choices)} choices")
    return problems


def load_tasks(path: str | Path) -> list[TaskItem]:
    """Read and validate a JSONL or JSON-list task file; raises :class:`TaskFileError` naming every problem."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError([f"{_shown(path)}: no such task file"])
    text = path.read_text(encoding="utf-8")
    records, problems = _records(text, path.suffix == ".json" or text.lstrip().startswith("["))
    items, seen = [], {}
    for line, row in records:
        found = _check(row)
        if not found and row["id"] in seen:
            found = [f"field 'id' duplicates '{row['id']}' from line {seen[row['id']]}"]
        problems += [f"{line}: {problem}" for problem in found]
        if not found:
            seen[row["id"]] = line
            items.append(
                TaskItem(
                    row["id"],
                    row["question"],
                    row["answer"].strip(),
                    row["domain"],
                    row.get("context", ""),
                    tuple(row.get("choices", ())),
                )
            )
    if not records and not problems:
        problems = ["1: no task items"]
    if problems:
        problems.sort(key=lambda problem: int(problem.split(":")[0]))
        raise TaskFileError([f"{_shown(path)}:{problem}" for problem in problems])
    return items


# --- registry ----------------------------------------------------------------------------------------------
def _spec(name: str, domain: str, description: str) -> TaskSpec:
    return TaskSpec(name, domain, task_sets_dir(Path()) / f"{name}.jsonl", description)  # relative to the checkout


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _spec("finance_train", "finance", "Generated company tables: lookup, difference, % change, ratio (train)"),
        _spec("finance_test", "finance", "Generated company tables: lookup, difference, % change, ratio (test)"),
        _spec("medical_train", "medical", "Clinical calculations and multiple-choice textbook facts (train)"),
        _spec("medical_test", "medical", "Clinical calculations and multiple-choice facts held out from train (test)"),
        _spec("iot_train", "iot", "Windows of 5 NASA Shuttle sensor readings: which one is anomalous? (train)"),
        _spec("iot_test", "iot", "Windows of 5 NASA Shuttle sensor readings: which one is anomalous? (test)"),
        _spec("tatqa_tiny", "finance", "3 hand-written table QA items in TAT-QA style (smoke test)"),
        _spec("medqa_tiny", "medical", "3 hand-written medical items in MedQA style (smoke test)"),
        _spec("iot_tiny", "iot", "5 hand-picked Shuttle windows (smoke test)"),
    )
}
SPLITS: dict[str, tuple[str, str]] = {
    "finance": ("finance_train", "finance_test"),
    "medical": ("medical_train", "medical_test"),
    "iot": ("iot_train", "iot_test"),
    **{tiny: (tiny, tiny) for tiny in ("tatqa_tiny", "medqa_tiny", "iot_tiny")},
}


def task_split(domain: str) -> tuple[TaskSpec, TaskSpec]:
    """The (train, test) pair of a domain ("finance", "medical", "iot"); a tiny set serves as both."""
    if domain not in SPLITS:
        raise UnknownTaskError(f"No task split '{domain}': use one of {', '.join(SPLITS)}")
    train, test = SPLITS[domain]
    return TASKS[train], TASKS[test]


def resolve_task(name_or_path: str | Path) -> TaskSpec:
    """A registry name, or any JSON / JSONL task file (domain read from its items, "mixed" if several)."""
    if str(name_or_path) in TASKS:
        return TASKS[str(name_or_path)]
    path = next((p for p in (Path(name_or_path), project_root() / name_or_path) if p.is_file()), None)
    if path is None and Path(name_or_path).suffix in (".json", ".jsonl"):
        raise TaskFileError([f"{name_or_path}: no such task file"])
    if path is None:
        raise UnknownTaskError(f"No task '{name_or_path}': give a task file or one of {', '.join(TASKS)}")
    domains = {item.domain for item in load_tasks(path)}
    return TaskSpec(path.stem, domains.pop() if len(domains) == 1 else "mixed", path.resolve(), f"task file {path}")


def load_task(name_or_path: str | Path) -> list[TaskItem]:
    return load_tasks(resolve_task(name_or_path).full_path())


# --- scoring -----------------------------------------------------------------------------------------------
def parse_iot(text: str) -> str | None:
    """Canonical "no" / "yes, reading N" from a lenient reply ("Yes - reading 3.", "no anomaly"), else None."""
    text = text.strip().lower()
    if re.match(r"^\W*(no|none|nope)\b", text):
        return "no"
    number = re.search(r"\breading\s*(?:#|no\.?|number)?\s*(\d+)", text) or re.match(r"^\W*yes\W+(\d+)\b", text)
    if number:
        return f"yes, reading {int(number.group(1))}"
    if re.search(r"\bno anomal|\bnot anomalous|\ball (the )?(readings )?(are |look )?normal|\bnone\b", text):
        return "no"
    return None


def score_answer(item: TaskItem, prediction: str) -> bool:
    """Letter or choice text for multiple choice, "no" / "yes, reading N" for IoT, else normalized exact match."""
    if item.choices:
        right = item.choices[LETTERS.index(item.answer)]
        return metrics.choice_match(prediction, item.answer) or metrics.exact_match(prediction, right)
    if item.domain == "iot":
        parsed = parse_iot(prediction)
        return parsed is not None and parsed == parse_iot(item.answer)
    return metrics.exact_match(prediction, item.answer)
