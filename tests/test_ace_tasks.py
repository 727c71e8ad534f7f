"""Chapter 05 task sets: schema checks, registry, the committed files, gold answers, scoring."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from slmlab.ace.tasks import (
    FACTS,
    IOT_QUESTION,
    build_items,
    build_task_sets,
    dump_tasks,
    fmt,
    iot_features,
    iot_windows,
)
from slmlab.tasks import (
    TASKS,
    TaskFileError,
    TaskItem,
    UnknownTaskError,
    load_task,
    load_tasks,
    parse_iot,
    resolve_task,
    score_answer,
    task_split,
)

ROOT = Path(__file__).resolve().parents[1]
GENERATED = [f"{d}_{s}" for d in ("finance", "medical", "iot") for s in ("train", "test")]
# Shuttle row indices of the hand-picked iot_tiny windows, in reading order.
IOT_TINY_ROWS = {
    "iot-tiny-01": (1, 2, 3, 4, 5),
    "iot-tiny-02": (12, 13, 14, 15, 17),
    "iot-tiny-03": (23, 24, 25, 27, 28),
    "iot-tiny-04": (40, 41, 42, 43, 44),
    "iot-tiny-05": (49, 50, 52, 53, 54),
}


@pytest.fixture(autouse=True)
def _root(monkeypatch):
    monkeypatch.setenv("SLMLAB_ROOT", str(ROOT))


@pytest.fixture(scope="module")
def river_rows():
    """Shuttle read straight from river (not through slmlab), as (features dict, label)."""
    from river import datasets

    return [(x, y) for x, y in datasets.Shuttle()]


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


GOOD = {"id": "a", "domain": "finance", "question": "q?", "answer": "1"}


# --- registry and committed files --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TASKS))
def test_registry_files_exist_and_load(name):
    spec = TASKS[name]
    assert not spec.path.is_absolute() and spec.full_path() == ROOT / spec.path and spec.full_path().is_file()
    items = load_task(name)
    assert items and {item.domain for item in items} == {spec.domain}
    assert len({item.id for item in items}) == len(items)


def test_sizes():
    sizes = {name: len(load_task(name)) for name in TASKS}
    for domain in ("finance", "medical", "iot"):
        assert sizes[f"{domain}_train"] == 100 and sizes[f"{domain}_test"] == 50
        assert sizes[f"{domain}_train"] + sizes[f"{domain}_test"] >= 100
    assert (sizes["tatqa_tiny"], sizes["medqa_tiny"], sizes["iot_tiny"]) == (3, 3, 5)
    assert sum(bool(item.choices) for item in load_task("medqa_tiny")) >= 1


def test_generator_is_deterministic_and_matches_the_committed_files(tmp_path):
    first, second = build_task_sets(tmp_path / "a", seed=0), build_task_sets(tmp_path / "b", seed=0)
    assert sorted(first) == sorted(GENERATED)
    for name in GENERATED:
        assert first[name].read_bytes() == second[name].read_bytes()
        assert first[name].read_bytes() == (ROOT / "data" / "tasks" / f"{name}.jsonl").read_bytes(), name
    assert build_task_sets(tmp_path / "c", seed=1)["finance_train"].read_bytes() != first["finance_train"].read_bytes()


def test_sizes_are_parameters():
    items = build_items(seed=3, n_train=20, n_test=10)
    assert {name: len(rows) for name, rows in items.items()} == {n: 20 if n.endswith("train") else 10 for n in GENERATED}
    assert items["finance_train"][0].id == "fin-train-0001" and items["iot_test"][-1].id == "iot-test-0010"


def test_task_split_and_resolve():
    assert task_split("finance") == (TASKS["finance_train"], TASKS["finance_test"])
    assert task_split("iot_tiny") == (TASKS["iot_tiny"], TASKS["iot_tiny"])
    with pytest.raises(UnknownTaskError, match="finance"):
        task_split("chemistry")
    with pytest.raises(UnknownTaskError, match="finance_train.*iot_tiny"):
        resolve_task("no_such_task")
    with pytest.raises(TaskFileError, match="no such task file"):
        resolve_task("missing/file.jsonl")


def test_resolve_task_by_path(tmp_path):
    single = _write(tmp_path / "mine.jsonl", [GOOD, {**GOOD, "id": "b"}])
    spec = resolve_task(single)
    assert (spec.name, spec.domain, spec.full_path()) == ("mine", "finance", single.resolve())
    mixed = _write(tmp_path / "mixed.jsonl", [GOOD, {**GOOD, "id": "b", "domain": "iot"}])
    assert resolve_task(str(mixed)).domain == "mixed" and len(load_task(mixed)) == 2
    assert resolve_task("data/tasks/iot_tiny.jsonl").domain == "iot"  # relative to the project root


# --- loader ------------------------------------------------------------------------------------------------
def test_json_list_format_is_accepted(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "id": "b", "choices": ["x", "y"], "answer": "B"}], indent=2))
    items = load_tasks(path)
    assert items[1] == TaskItem("b", "q?", "B", "finance", "", ("x", "y"))
    path.write_text(json.dumps([GOOD, {**GOOD, "id": "a"}], indent=2))
    with pytest.raises(TaskFileError, match=r"list\.json:8: field 'id' duplicates 'a' from line 2"):
        load_tasks(path)


def test_round_trip(tmp_path):
    items = load_task("medqa_tiny") + load_task("iot_tiny")
    path = tmp_path / "x.jsonl"
    path.write_text(dump_tasks(items), encoding="utf-8")
    assert load_tasks(path) == items


@pytest.mark.parametrize(
    "row, message",
    [
        ({k: v for k, v in GOOD.items() if k != "answer"}, "field 'answer' is missing"),
        ({**GOOD, "question": 3}, "field 'question' must be a non-empty string"),
        ({**GOOD, "choices": "A or B"}, "field 'choices' must be a list of strings"),
        ({**GOOD, "choices": ["x", 2]}, "field 'choices' must be a list of strings"),
        ({**GOOD, "choices": ["x", "y", "z"], "answer": "D"}, "field 'answer' must be a letter A-C for 3 choices"),
        ({**GOOD, "choices": ["x"], "answer": "A"}, "field 'choices' must have 2 to 10 entries"),
        ({**GOOD, "context": ["t"]}, "field 'context' must be a string"),
        ({**GOOD, "gold": "1"}, "unknown field 'gold'"),
        ([1, 2], "item is not a JSON object"),
    ],
)
def test_loader_names_file_line_and_field(tmp_path, row, message):
    path = _write(tmp_path / "x.jsonl", [{**GOOD, "id": "first"}, "", row])
    with pytest.raises(TaskFileError) as error:
        load_tasks(path)
    assert str(error.value) == f"{path}:3: {message}"


def test_loader_reports_every_problem_at_once(tmp_path):
    path = _write(tmp_path / "x.jsonl", [GOOD, '{"id": "b", oops', {**GOOD, "id": "a"}, {"id": "c"}])
    with pytest.raises(TaskFileError) as error:
        load_tasks(path)
    problems = error.value.problems
    assert problems[0].startswith(f"{path}:2: invalid JSON")
    assert problems[1] == f"{path}:3: field 'id' duplicates 'a' from line 1"
    assert f"{path}:4: field 'domain' is missing" in problems and f"{path}:4: field 'answer' is missing" in problems
    assert str(error.value).startswith("5 problems:")
    many = _write(tmp_path / "many.jsonl", ["{"] * 30)
    with pytest.raises(TaskFileError, match=r"30 problems:[\s\S]*\.\.\. and 10 more$"):
        load_tasks(many)


def test_loader_empty_and_missing(tmp_path):
    with pytest.raises(TaskFileError, match="no task items"):
        load_tasks(_write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(TaskFileError, match="no such task file"):
        load_tasks(tmp_path / "nope.jsonl")


# --- gold answers ------------------------------------------------------------------------------------------
def _table(context: str) -> tuple[list[str], dict[str, list[Fraction]]]:
    header, *rows = context.splitlines()[1:]
    years = header.split(" | ")[1:]
    return years, {cells[0]: [Fraction(c.replace(",", "")) for c in cells[1:]] for cells in (r.split(" | ") for r in rows)}


def _finance_gold(item: TaskItem) -> tuple[Fraction, int]:
    """The exact answer recomputed from the table in the context, and the decimals it is rounded to."""
    years, table = _table(item.context)
    q = item.question
    if m := re.match(r"What was (.+) in (\d{4}), in \$ (?:millions|thousands)\?", q):
        name = "Total" if m.group(1) == "the total segment revenue" else m.group(1)
        return table[name][years.index(m.group(2))], 0
    m = re.match(
        r"(?:By how much did|What was the percentage change in) (.+?)(?: revenue)? (?:change )?"
        r"from (\d{4}) to (\d{4})",
        q,
    )
    if m:
        values = table[m.group(1)]
        old, new = values[years.index(m.group(2))], values[years.index(m.group(3))]
        return ((new - old) / old * 100, 1) if "percentage" in q else (new - old, 1 if "." in item.answer else 0)
    m = re.match(r"What was the ratio of (.+) to (.+) in (\d{4})\? Round to 2 decimals\.", q)
    assert m, q
    column = years.index(m.group(3))
    return table[m.group(1)][column] / table[m.group(2)][column], 2


@pytest.mark.parametrize("name", ["finance_train", "finance_test", "tatqa_tiny"])
def test_finance_golds_follow_from_the_table(name):
    kinds = set()
    for item in load_task(name):
        lines = item.context.splitlines()
        assert len(lines) <= 6 and len(lines[1].split(" | ")) <= 4  # at most 4 rows x 3 columns
        exact, places = _finance_gold(item)
        answer = item.answer.rstrip("%")
        assert item.answer.endswith("%") == ("percentage" in item.question), item
        assert abs(Fraction(answer) - exact) <= Fraction(1, 2 * 10**places), (item, float(exact))
        assert len(answer.partition(".")[2]) == places, item
        kinds.add(next(k for k in ("percentage", "ratio", "By how much", "What was") if k in item.question))
    assert name == "tatqa_tiny" or kinds == {"percentage", "ratio", "By how much", "What was"}


def _medical_gold(item: TaskItem) -> tuple[Fraction, int]:
    numbers = [Fraction(n) for n in re.findall(r"\d+(?:\.\d+)?", item.context)]
    if "BMI" in item.question:
        return numbers[0] / (numbers[1] / 100) ** 2, 1
    if "dose" in item.question:
        return numbers[0] * numbers[1], 0
    if "mean arterial" in item.question:
        return (numbers[0] + 2 * numbers[1]) / 3, 0
    if "mL/h" in item.question:
        return numbers[0] / numbers[1], 0
    assert "mmol/L" in item.question, item
    return numbers[0] / 18, 1


def test_medical_items():
    fact_of = {template: fact for fact in FACTS for template in fact[2]}
    used = {}
    for name in ("medical_train", "medical_test", "medqa_tiny"):
        items = load_task(name)
        for item in items:
            if not item.choices:
                exact, places = _medical_gold(item)
                assert abs(Fraction(item.answer) - exact) <= Fraction(1, 2 * 10**places), (item, float(exact))
                continue
            assert len(item.choices) == 4 and len(set(item.choices)) == 4
            assert item.answer in "ABCD"[: len(item.choices)]
            if name != "medqa_tiny":
                assert item.choices["ABCD".index(item.answer)] == fact_of[item.question][1]
                used.setdefault(name, set()).add(fact_of[item.question][1])
        if name != "medqa_tiny":
            assert 0.3 <= sum(bool(i.choices) for i in items) / len(items) <= 0.5
    assert used["medical_train"].isdisjoint(used["medical_test"])  # facts are split, not just items
    train_questions = {i.question for i in load_task("medical_train") if i.choices}
    assert not train_questions & {i.question for i in load_task("medical_test") if i.choices}
    assert all(len(fact[2]) >= 2 and len(fact[3]) in (0, 3) for fact in FACTS) and len(FACTS) >= 30


def test_fmt_rounds_half_up_exactly():
    assert [fmt(Fraction(5, 2)), fmt(Fraction(-5, 2)), fmt(Fraction(1, 8), 2)] == ["3", "-3", "0.13"]
    assert fmt(Fraction(-1, 100), 1) == "0.0" and fmt(Fraction(-1, 20), 1) == "-0.1"
    assert fmt(Fraction(1250)) == "1250" and fmt(Fraction(1, 3), 2) == "0.33"


# --- IoT ---------------------------------------------------------------------------------------------------
def _render(river_rows, rows: tuple[int, ...]) -> str:
    return "\n".join(
        f"reading {i}: " + " ".join(f"{f}={river_rows[r][0][f]}" for f in ("f1", "f7", "f9")) for i, r in enumerate(rows, 1)
    )


def test_iot_features_are_the_most_telling():
    assert iot_features() == ("f1", "f7", "f9")


def test_iot_golds_agree_with_river_labels(river_rows):
    windows = iot_windows(seed=0)
    everything = [row for split in windows.values() for window in split for row in window.rows]
    assert len(everything) == len(set(everything)) == 150 * 5  # no reading shared, train and test disjoint
    for split, expected in (("train", 100), ("test", 50)):
        items = load_task(f"iot_{split}")
        assert len(windows[split]) == len(items) == expected
        assert sum(w.anomaly is not None for w in windows[split]) == round(0.4 * expected)
        for window, item in zip(windows[split], items):
            labels = [river_rows[r][1] for r in window.rows]
            assert sum(labels) == (window.anomaly is not None)
            assert item.answer == ("no" if not any(labels) else f"yes, reading {labels.index(True) + 1}")
            assert item.context == _render(river_rows, window.rows) and item.question == IOT_QUESTION


def test_iot_tiny_uses_real_rows(river_rows):
    items = load_task("iot_tiny")
    assert [item.id for item in items] == list(IOT_TINY_ROWS)
    for item in items:
        rows = IOT_TINY_ROWS[item.id]
        labels = [river_rows[r][1] for r in rows]
        assert item.context == _render(river_rows, rows)
        assert item.answer == ("no" if not any(labels) else f"yes, reading {labels.index(True) + 1}")
    assert {item.answer for item in items} >= {"no", "yes, reading 4"}


# --- scoring -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, parsed",
    [
        ("yes, reading 3", "yes, reading 3"),
        ("Yes, reading 3.", "yes, reading 3"),
        ("yes - reading 3", "yes, reading 3"),
        ("Reading #2 is anomalous", "yes, reading 2"),
        ("yes, 4", "yes, reading 4"),
        ("no", "no"),
        ("No.", "no"),
        ("no anomaly", "no"),
        ("No, all readings are normal", "no"),
        ("There is no anomalous reading", "no"),
        ("All readings look normal", "no"),
        ("yes", None),
        ("maybe", None),
        ("", None),
    ],
)
def test_parse_iot(reply, parsed):
    assert parse_iot(reply) == parsed


def test_score_answer():
    choice = TaskItem(
        "m", "Which vitamin deficiency causes scurvy?", "B", "medical", choices=("Vitamin A", "Vitamin C", "Vitamin D")
    )
    assert score_answer(choice, "B") and score_answer(choice, "(b) Vitamin C") and score_answer(choice, "vitamin C")
    assert not score_answer(choice, "A") and not score_answer(choice, "Vitamin D") and not score_answer(choice, "")
    iot = TaskItem("i", IOT_QUESTION, "yes, reading 3", "iot")
    assert score_answer(iot, "Yes, reading 3.") and not score_answer(iot, "yes, reading 2") and not score_answer(iot, "no")
    assert score_answer(TaskItem("j", IOT_QUESTION, "no", "iot"), "No anomaly.") and not score_answer(iot, "unsure")
    number = TaskItem("f", "What was Revenue in 2022?", "1250", "finance")
    assert score_answer(number, "1,250") and score_answer(number, "$1250.0") and not score_answer(number, "1251")
    assert score_answer(TaskItem("p", "change?", "12.5%", "finance"), "12.5 percent")
