"""Visible and hidden tests of code tasks: the format, the defaults and refusals, the visible and hidden views, the
examples read from HumanEval's docstrings and the reference runs that check them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from slmlab.execution.examples import docstring_examples
from slmlab.execution.scoring import checked_examples, score_program, validate_task, validate_tasks
from slmlab.execution.tasks import (
    VISIBLE_TESTS,
    CodeTask,
    CodeTaskFileError,
    TestCase,
    load_code_tasks,
    load_humaneval,
    read_task_file,
    visible_test_count,
    write_tasks,
)
from slmlab.rl.tasks import generate_families

ADD_THREE = {
    "name": "add_three",
    "prompt": "Write a Python function `add_three(x)` that returns x + 3.",
    "kind": "function",
    "entry_point": "add_three",
    "signature": "def add_three(x: int) -> int",
    "tests": [{"input": [x], "expected": x + 3} for x in (1, 2, 30, 40, 500)],
    "visible": 2,
    "hints": ["Use +."],
    "reference": "def add_three(x):\n    return x + 3\n",
    "family": "add_constant",
}
DOUBLE = {
    "name": "double_line",
    "prompt": "Print the input line twice.",
    "kind": "stdio",
    "tests": [{"input": f"{word}\n", "expected": word * 2} for word in ("ab", "x", "hello")],
    "reference": "s = input()\nprint(s * 2)\n",
}
CHECK_CODE = "def check(candidate):\n    assert candidate(2) == (5, 4)\n    assert candidate(10) == (13, 20)\n"
PAIR = {
    "name": "plus_pair",
    "prompt": 'def plus_pair(x):\n    """(x + 3, x * 2)\n    >>> plus_pair(1)\n    (4, 2)\n    """\n',
    "kind": "check",
    "entry_point": "plus_pair",
    "visible_tests": [{"input": [1], "expected": [4, 2]}, {"input": [0], "expected": [3, 0]}],
    "test_code": CHECK_CODE,
    "reference": "def plus_pair(x):\n    return (x + 3, x * 2)\n",
}
# passes the visible tests of ADD_THREE (inputs 1 and 2) and nothing else
MEMORIZER = "def add_three(x):\n    return {1: 4, 2: 5}.get(x, 0)\n"


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def task(tmp_path, row):
    return read_task_file(write(tmp_path / f"{row['name']}.json", row))[0]


@pytest.fixture(scope="module")
def humaneval():
    return {problem.name: problem for problem in load_humaneval()}


# --- the format --------------------------------------------------------------------------------------------------
def test_write_and_read_round_trip_the_visible_tests(tmp_path):
    tasks = [task(tmp_path / "in", row) for row in (ADD_THREE, DOUBLE, PAIR)]
    tasks.append(replace(tasks[0], name="add_three_again", visible=0))
    paths = write_tasks(tasks, tmp_path / "out")
    again = [read_task_file(path)[0] for path in paths]
    assert [replace(t, source="") for t in again] == [replace(t, source="") for t in tasks]
    assert [t.visible for t in again] == [2, None, None, 0]
    assert again[2].examples == (TestCase([1], [4, 2]), TestCase([0], [3, 0]))
    rows = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    assert rows[0]["visible"] == 2 and "visible" not in rows[1] and rows[3]["visible"] == 0
    assert rows[2]["visible_tests"] == PAIR["visible_tests"] and "visible_tests" not in rows[0]


@pytest.mark.parametrize("count, visible", [(1, 0), (2, 1), (3, 2), (5, 2), (8, 2)])
def test_the_default_shows_two_tests_and_keeps_one_hidden(tmp_path, count, visible):
    row = {key: value for key, value in ADD_THREE.items() if key != "visible"}
    loaded = task(tmp_path, {**row, "tests": ADD_THREE["tests"][:1] * count})
    assert loaded.visible is None and loaded.visible_count == visible == min(VISIBLE_TESTS, count - 1)
    assert loaded.visible_tests == loaded.tests[:visible]
    assert len(loaded.hidden_task().tests) == count - visible
    assert (loaded.visible_task() is None) == (visible == 0)


def test_a_check_task_without_visible_tests_shows_nothing(tmp_path):
    loaded = task(tmp_path, {key: value for key, value in PAIR.items() if key != "visible_tests"})
    assert loaded.visible_tests == () and loaded.visible_count == 0 and loaded.visible_task() is None


@pytest.mark.parametrize(
    "row, field, why",
    [
        ({**ADD_THREE, "visible": -1}, "visible", "must not be negative"),
        ({**ADD_THREE, "visible": 5}, "visible", "leaves no hidden test"),
        ({**ADD_THREE, "visible": 9}, "visible", "leaves no hidden test"),
        ({**DOUBLE, "visible": 3}, "visible", "leaves no hidden test"),
        ({**ADD_THREE, "visible": "2"}, "visible", "must be int"),
        ({**ADD_THREE, "visible": True}, "visible", "must be int"),
        ({**ADD_THREE, "visible": 1.0}, "visible", "must be int"),
        ({**PAIR, "visible": 1}, "visible", "a check task lists visible_tests"),
        ({**ADD_THREE, "visible_tests": PAIR["visible_tests"]}, "visible_tests", "is for check tasks"),
        ({**PAIR, "visible_tests": {"input": [1]}}, "visible_tests", "must be list"),
        ({**PAIR, "visible_tests": [{"input": [1], "expected": 4}, {"input": 1, "expected": 4}]}, "visible_tests[1].input", ""),
        ({**PAIR, "visible_tests": [{"input": [1]}]}, "visible_tests[0]", "exactly 'input' and 'expected'"),
    ],
)
def test_bad_visibility_is_refused_naming_file_and_field(tmp_path, row, field, why):
    path = write(tmp_path / "sub" / "bad.json", row)
    with pytest.raises(CodeTaskFileError) as error:
        load_code_tasks(tmp_path)
    assert error.value.field == field and error.value.file == str(path)
    assert f"field '{field}'" in str(error.value) and why in str(error.value)


def test_a_task_built_in_code_cannot_show_more_tests_than_it_has():
    with pytest.raises(ValueError, match="visible=6 for 5 tests"):
        CodeTask("t", "p", "function", "t", None, tuple(TestCase([x], x) for x in range(5)), None, visible=6)


# --- visible and hidden views ----------------------------------------------------------------------------------
def test_the_visible_task_of_a_function_task_holds_only_the_visible_tests(tmp_path):
    full = task(tmp_path, ADD_THREE)
    visible = full.visible_task()
    assert visible.name == full.name and visible.prompt == full.prompt and visible.kind == "function"
    assert visible.entry_point == "add_three" and visible.signature == full.signature
    assert visible.tests == full.tests[:2] == full.visible_tests and visible.visible == 2
    assert visible.visible_tests == visible.tests and visible.hidden_task().tests == ()
    assert visible.test_code is None and visible.reference is None and visible.hints == () and visible.examples == ()
    assert visible.family == full.family and visible.source == full.source
    text = json.dumps(visible.to_dict())
    assert all(json.dumps(test.input) not in text for test in full.tests[2:])  # 30, 40, 500 appear nowhere
    assert "return x + 3" not in text and "Use +." not in text


def test_the_visible_task_of_a_stdio_task_stays_stdio(tmp_path):
    full = task(tmp_path, DOUBLE)
    visible = full.visible_task()
    assert visible.kind == "stdio" and visible.entry_point is None and visible.signature is None
    assert visible.tests == full.tests[:2] and visible.reference is None and visible.test_code is None
    assert "hello" not in json.dumps(visible.to_dict())


def test_the_visible_task_of_a_check_task_is_a_function_task_without_the_check(tmp_path):
    full = task(tmp_path, PAIR)
    visible = full.visible_task()
    assert visible.kind == "function" and visible.entry_point == "plus_pair" and visible.prompt == full.prompt
    assert visible.tests == full.examples == full.visible_tests and visible.examples == ()
    assert visible.test_code is None and visible.reference is None and visible.hints == ()
    text = json.dumps(visible.to_dict())
    assert "check(" not in text and "(13, 20)" not in text and "x * 2\\n" not in text


def test_the_hidden_task_scores_only_the_hidden_tests(tmp_path):
    full = task(tmp_path, ADD_THREE)
    hidden = full.hidden_task()
    assert hidden.tests == full.tests[2:] and hidden.visible == 0 and hidden.visible_task() is None
    assert hidden.reference == full.reference and hidden.hints == full.hints  # only the tests change
    assert score_program(full.visible_task(), MEMORIZER).status == "passed"
    on_hidden = score_program(hidden, MEMORIZER)
    assert on_hidden.total == 3 and on_hidden.passed == 0 < on_hidden.total
    on_all = score_program(full, MEMORIZER)
    assert on_all.total == 5 and on_all.passed == 2  # chapter 08 still scores on every test
    assert score_program(hidden, full.reference).status == "passed"


def test_the_hidden_task_of_a_check_task_keeps_the_check_and_drops_the_examples(tmp_path):
    full = task(tmp_path, PAIR)
    hidden = full.hidden_task()
    assert hidden.test_code == full.test_code and hidden.reference == full.reference and hidden.examples == ()
    assert hidden.visible_tests == () and hidden.visible_task() is None
    assert replace(hidden, examples=full.examples) == full


def test_generated_tasks_show_two_tests_and_hide_the_rest():
    train, held_out = generate_families(seed=0)
    for generated in train + held_out:
        assert generated.visible == VISIBLE_TESTS == len(generated.visible_tests)
        assert len(generated.hidden_task().tests) == len(generated.tests) - 2 >= 1
    stdio = [t for t in train + held_out if t.kind == "stdio"]
    assert stdio and all(len(t.tests) == 3 for t in stdio)


def test_visible_test_count_counts_tasks_with_a_visible_test(tmp_path):
    tasks = [task(tmp_path, row) for row in (ADD_THREE, DOUBLE, PAIR)]
    tasks.append(task(tmp_path, {**ADD_THREE, "name": "one_test", "tests": ADD_THREE["tests"][:1], "visible": None}))
    assert visible_test_count(tasks) == {"tasks": 4, "with_visible": 3, "visible_tests": 6}


# --- examples in docstrings ------------------------------------------------------------------------------------
PROMPT = '''def helper(x):
    """
    >>> helper(1)
    99
    """


def area(w, h):
    """The area of a w by h rectangle.
    >>> area(2, 3)
    6
    >>> area(1,
    ...      1)
    1
    >>> area(2, 2) == 4
    >>> area(w, 2)
    8
    >>> helper(2)
    7
    >>> area(3, 3)
    [9,
     9]
    >>> area(4, 4) + 1
    17
    area(1, 5) == 5
    * area(2, 5) => 10
    area(3, 5) ➞ 15
    area(0.5, 2) should return 1.0.
    area(4, 5) # returns 20
    area(5, 5) == 5 * 5
    area(6, 5) == {1, 2}
    area(7, 5) == {1: 'a'}
    area((1, 2), 1) == (1, 2)
    area(2, 3) == 6
    For w = 6, h = 6 the output should be 36
    For w = 6, q = 7 the output should be 42
    Input: w = 7, h = 7
    Output: 49 # seven squared
    Input: 8, 8
    Output: 64
    area(w=9, h=9) == 81
    """
'''


def examples_of(prompt: str, entry_point: str) -> tuple[TestCase, ...]:
    return tuple(TestCase(*pair) for pair in docstring_examples(prompt, entry_point))


def test_docstring_examples_reads_the_common_forms_and_skips_the_rest():
    examples = examples_of(PROMPT, "area")
    assert examples == (
        TestCase([2, 3], 6),
        TestCase([2, 2], 4),  # ">>> area(2, 2) == 4" on one line
        TestCase([3, 3], [9, 9]),  # an answer over two lines
        TestCase([1, 5], 5),
        TestCase([2, 5], 10),
        TestCase([3, 5], 15),
        TestCase([0.5, 2], 1.0),
        TestCase([4, 5], 20),
        TestCase([[1, 2], 1], [1, 2]),  # tuples become lists, as the scorer compares them
        TestCase([6, 6], 36),
        TestCase([7, 7], 49),
        TestCase([8, 8], 64),
        TestCase([9, 9], 81),
    )
    # skipped: a call over two lines, a name as argument (area(w, 2)), another function's call (helper(2)), a
    # call inside an expression, an expression, a set and an int-keyed dict as answers, a parameter area lacks
    # (q), and the repeat of area(2, 3)
    assert [type(example.expected) for example in examples[6:8]] == [float, int]
    assert examples_of(PROMPT, "helper") == (TestCase([1], 99), TestCase([2], 7))  # the whole prompt is read
    assert examples_of("no examples here", "area") == ()


def test_docstring_examples_without_a_readable_definition_take_positional_calls_only():
    prompt = "Write area(w, h).\narea(2, 3) == 6\nFor w = 1, h = 1 the output should be 1\narea(w=2, h=2) == 4\n"
    assert examples_of(prompt, "area") == (TestCase([2, 3], 6),)


def test_humaneval_examples_of_real_problems(humaneval):
    assert humaneval["HumanEval/0"].examples == (
        TestCase([[1.0, 2.0, 3.0], 0.5], False),
        TestCase([[1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3], True),
    )
    assert humaneval["HumanEval/72"].examples == (  # "will_it_fly([1, 2], 5) ➞ False"
        TestCase([[1, 2], 5], False),
        TestCase([[3, 2, 3], 1], False),
        TestCase([[3, 2, 3], 9], True),
        TestCase([[3], 5], True),
    )
    assert humaneval["HumanEval/107"].examples == (TestCase([3], [1, 2]), TestCase([12], [4, 6]))  # Input: / Output:
    assert humaneval["HumanEval/94"].examples[-1] == TestCase([[0, 8, 1, 2, 1, 7]], 7)  # "For lst = [...] the output..."
    assert len(humaneval["HumanEval/94"].examples) == 6
    assert humaneval["HumanEval/41"].examples == ()  # a story, no example


def test_most_humaneval_problems_have_visible_tests(humaneval):
    counts = visible_test_count(humaneval.values())
    assert counts["tasks"] == 164
    assert counts["with_visible"] >= 150 and counts["visible_tests"] >= 424  # measured: 150 problems, 424 examples
    assert all(problem.hidden_task().test_code == problem.test_code for problem in humaneval.values())


# --- checking against the reference ----------------------------------------------------------------------------
def test_validate_refuses_a_wrong_visible_test_of_a_check_task(tmp_path):
    wrong = {**PAIR, "visible_tests": [{"input": [1], "expected": [4, 2]}, {"input": [0], "expected": [3, 1]}]}
    path = write(tmp_path / "wrong.json", wrong)
    with pytest.raises(CodeTaskFileError) as error:
        validate_tasks(load_code_tasks(path))
    assert error.value.field == "visible_tests[1]" and error.value.file == str(path)
    assert "input [0], expected [3, 1], got [3, 0]" in str(error.value)
    validate_task(task(tmp_path / "right", PAIR))  # the right visible tests pass


def test_validate_names_a_wrong_visible_test_of_a_function_task(tmp_path):
    rows = [{"input": [1], "expected": 5}] + ADD_THREE["tests"][1:]
    path = write(tmp_path / "wrong.json", {**ADD_THREE, "tests": rows})
    with pytest.raises(CodeTaskFileError) as error:
        validate_task(read_task_file(path)[0])
    assert error.value.field == "tests[0]" and "input [1], expected 5, got 4" in str(error.value)


def test_checked_examples_drops_the_examples_the_canonical_solution_fails(humaneval):
    names = ["HumanEval/0", "HumanEval/47", "HumanEval/130", "HumanEval/148", "HumanEval/41"]
    checked = checked_examples([humaneval[name] for name in names])
    # median([-10, 4, 6, 1000, 10, 20]) is 8.0, not the docstring's 15.0; tri(1) = 3 and tri(4) = 3 describe the
    # sequence, not tri's list; bf("Earth", "Mercury") is ("Venus",), not the string ("Venus")
    assert checked.dropped == {
        "HumanEval/47": (TestCase([[-10, 4, 6, 1000, 10, 20]], 15.0),),
        "HumanEval/130": (TestCase([1], 3), TestCase([4], 3)),
        "HumanEval/148": (TestCase(["Earth", "Mercury"], "Venus"),),
    }
    assert checked.dropped_count == 4
    kept = {problem.name: problem for problem in checked.tasks}
    assert [problem.name for problem in checked.tasks] == names
    assert kept["HumanEval/0"] is humaneval["HumanEval/0"] and kept["HumanEval/41"] is humaneval["HumanEval/41"]
    assert kept["HumanEval/47"].examples == humaneval["HumanEval/47"].examples[:1]
    assert kept["HumanEval/148"].examples == tuple(e for e in humaneval["HumanEval/148"].examples if e.expected != "Venus")
    assert kept["HumanEval/130"].examples == (TestCase([3], [1, 3, 2, 8]),)


def test_validate_refuses_a_humaneval_problem_with_a_wrong_example_until_it_is_checked(humaneval):
    problem = humaneval["HumanEval/148"]
    with pytest.raises(CodeTaskFileError) as error:
        validate_task(problem)
    assert error.value.field == "visible_tests[1]" and "HumanEval" in error.value.file
    validate_task(checked_examples([problem]).tasks[0])
