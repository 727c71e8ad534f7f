"""Chapter 08 tasks: JSON task files, the seeded family generator and HumanEval, all through one CodeTask type."""

from __future__ import annotations

import json

import pytest

from slmlab.execution.scoring import score_programs, validate_task, validate_tasks
from slmlab.execution.tasks import (
    CodeTask,
    CodeTaskFileError,
    TaskNotFoundError,
    TestCase,
    load_code_tasks,
    load_humaneval,
    write_tasks,
)
from slmlab.rl.tasks import generate_families

TASK = {
    "name": "add_three",
    "prompt": "Write a Python function `add_three(x)` that returns x + 3.",
    "kind": "function",
    "entry_point": "add_three",
    "signature": "def add_three(x: int) -> int",
    "tests": [{"input": [1], "expected": 4}, {"input": [-3], "expected": 0}],
    "hints": ["Use +."],
    "reference": "def add_three(x):\n    return x + 3\n",
    "family": "add_constant",
}


@pytest.fixture(scope="module")
def families():
    return generate_families(seed=0)


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_generator_sizes_and_split_by_member(families):
    train, held_out = families
    assert len(train) >= 60 and len(held_out) >= 30
    train_families = {task.family for task in train}
    assert len(train_families) >= 15 and train_families == {task.family for task in held_out}
    names = [task.name for task in train + held_out]
    assert len(names) == len(set(names))  # members differ: no task is in both splits
    for task in train + held_out:
        assert task.reference and task.hints and task.tests
        if task.kind == "function":
            assert f"`{task.entry_point}(" in task.prompt and task.signature.startswith(f"def {task.entry_point}(")
        for test in task.tests:
            assert json.loads(json.dumps(test.expected)) == test.expected


def test_generator_is_seeded(families):
    again = generate_families(seed=0)
    assert [t.to_dict() for t in again[0] + again[1]] == [t.to_dict() for t in families[0] + families[1]]
    other = generate_families(seed=1)
    assert [t.to_dict() for t in other[0]] != [t.to_dict() for t in families[0]]


def test_every_generated_reference_passes_its_own_tests(families):
    tasks = families[0] + families[1]
    scores = score_programs([(task, task.reference) for task in tasks], workers=2)
    failing = [(task.name, score.status, score.details) for task, score in zip(tasks, scores) if score.status != "passed"]
    assert not failing


def test_write_and_load_round_trip_with_selection(tmp_path, families):
    train, held_out = families
    write_tasks(train, tmp_path / "rl" / "train")
    write_tasks(held_out, tmp_path / "rl" / "heldout")
    loaded = load_code_tasks(tmp_path)  # recursive
    assert sorted(t.name for t in loaded) == sorted(t.name for t in train + held_out)
    by_name = {t.name: t for t in loaded}
    for task in train:
        assert by_name[task.name].to_dict() == task.to_dict()
    first = train[0]
    assert [t.name for t in load_code_tasks(tmp_path, select=first.name)] == [first.name]
    assert {t.name for t in load_code_tasks(tmp_path, select="add_*")} == {
        t.name for t in train + held_out if t.name.startswith("add_")
    }
    assert len(load_code_tasks(tmp_path, select=str(tmp_path / "rl" / "heldout"))) == len(held_out)
    assert [t.name for t in load_code_tasks(tmp_path, select=str(tmp_path / "rl" / "train" / f"{first.name}.json"))] == [
        first.name
    ]
    with pytest.raises(TaskNotFoundError, match="no_such_task"):
        load_code_tasks(tmp_path, select="no_such_task")


def test_list_file_and_stdio_task(tmp_path):
    stdio = {
        "name": "echo_twice",
        "prompt": "Read a line and print it twice.",
        "kind": "stdio",
        "tests": [{"input": "hi\n", "expected": "hihi"}],
        "reference": "s = input()\nprint(s * 2)\n",
    }
    path = write(tmp_path / "pack.json", {"tasks": [TASK, stdio]})
    tasks = validate_tasks(load_code_tasks(path))
    assert [t.kind for t in tasks] == ["function", "stdio"]
    assert tasks[0].tests == (TestCase([1], 4), TestCase([-3], 0)) and tasks[1].entry_point is None
    assert tasks[0].source == f"{path}#0"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"prompt": None}, "prompt"),
        ({"entry_point": None}, "entry_point"),
        ({"tests": None}, "tests"),
        ({"kind": "quiz"}, "kind"),
        ({"prompt": 3}, "prompt"),
        ({"hints": "one"}, "hints"),
        ({"tset": []}, "tset"),
        ({"tests": [{"input": 1, "expected": 4}]}, "tests[0].input"),
        ({"tests": [{"input": [1]}]}, "tests[0]"),
        ({"tests": []}, "tests"),
        ({"entry_point": "add three"}, "entry_point"),
    ],
)
def test_bad_task_files_name_file_and_field(tmp_path, change, field):
    row = {key: value for key, value in {**TASK, **change}.items() if value is not None}
    path = write(tmp_path / "sub" / "bad.json", row)
    with pytest.raises(CodeTaskFileError) as error:
        load_code_tasks(tmp_path)
    assert error.value.field == field and str(path) in str(error.value) and f"'{field}'" in str(error.value)


def test_invalid_json_and_duplicate_names(tmp_path):
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CodeTaskFileError, match="broken.json"):
        load_code_tasks(tmp_path)
    (tmp_path / "broken.json").unlink()
    write(tmp_path / "a.json", TASK)
    write(tmp_path / "b.json", TASK)
    with pytest.raises(CodeTaskFileError, match="duplicates task 'add_three'") as error:
        load_code_tasks(tmp_path)
    assert error.value.field == "name"


def test_reference_that_fails_its_tests_is_refused(tmp_path):
    row = {**TASK, "tests": [{"input": [1], "expected": 4}, {"input": [2], "expected": 6}]}
    path = write(tmp_path / "wrong.json", row)
    assert load_code_tasks(tmp_path)  # loading alone does not run anything
    with pytest.raises(CodeTaskFileError) as error:
        validate_tasks(load_code_tasks(tmp_path))
    assert error.value.field == "tests[1]" and str(path) in str(error.value) and "got 5" in str(error.value)


def test_a_check_task_needs_its_reference_and_a_check_that_fails_on_it_is_named(tmp_path):
    check = {
        "name": "pair",
        "prompt": "Return (x, x).",
        "kind": "check",
        "entry_point": "pair",
        "test_code": "def check(candidate):\n    assert candidate(1) == (1, 1)\n",
    }
    write(tmp_path / "pair.json", check)
    with pytest.raises(CodeTaskFileError) as error:
        load_code_tasks(tmp_path)
    assert error.value.field == "reference" and "pair.json" in str(error.value)
    write(tmp_path / "pair.json", {**check, "reference": "def pair(x):\n    return [x, x]\n"})
    with pytest.raises(CodeTaskFileError) as error:
        validate_tasks(load_code_tasks(tmp_path))
    assert error.value.field == "test_code" and "fails on the reference solution (error" in str(error.value)
    assert "AssertionError" in str(error.value)


def test_humaneval_loads_as_check_tasks():
    problems = load_humaneval()
    assert len(problems) == 164 and len({p.name for p in problems}) == 164
    assert all(isinstance(p, CodeTask) and p.kind == "check" and p.family == "humaneval" for p in problems)
    first = problems[0]
    assert first.name == "HumanEval/0" and first.entry_point == "has_close_elements"
    assert first.signature.startswith("def has_close_elements(") and "def check(candidate)" in first.test_code
    assert first.reference.startswith(first.prompt)
    validate_task(problems[32])  # its check calls a helper defined in the prompt
    scores = score_programs([(problem, problem.reference) for problem in problems], workers=2)
    assert [problem.name for problem, score in zip(problems, scores) if score.status != "passed"] == []
