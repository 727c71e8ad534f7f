"""Chapter 08 scorer: ordered partial-credit rewards from real sandboxed runs, judged in the parent, forgery-proof."""

from __future__ import annotations

import json
import statistics

import pytest

from slmlab.execution import scoring
from slmlab.execution.sandbox import SandboxLimits
from slmlab.execution.scoring import RewardNormalizer, Score, same_value, score_json, score_program, score_programs
from slmlab.execution.tasks import CodeTask, TestCase

ADD_THREE = CodeTask(
    "add_three",
    "Write a Python function `add_three(x)` that returns x + 3.",
    "function",
    "add_three",
    "def add_three(x: int) -> int",
    tuple(TestCase([x], x + 3) for x in (1, 2, 30, 40)),
    None,
    reference="def add_three(x):\n    return x + 3\n",
)
CHECK = CodeTask(
    "plus_pair",
    "Return (x + 3, x * 2).",
    "check",
    "plus_pair",
    None,
    (),
    "def check(candidate):\n    assert abs(candidate(2)[0] - 5) < 1e-9\n    assert candidate(2) == (5, 4)\n",
    reference="def plus_pair(x):\n    return (x + 3, x * 2)\n",
)
ECHO = CodeTask(
    "echo_upper",
    "Print the input line in upper case.",
    "stdio",
    None,
    None,
    (TestCase("abc\n", "ABC\n"), TestCase("hello world\n", "HELLO WORLD"), TestCase("x\n", "X")),
    None,
    reference="print(input().upper())\n",
)
FAST = SandboxLimits(cpu_seconds=1, wall_seconds=1.0)
FIND_MARKER = "import sys, json, os\nm = sys._getframe(1).f_locals.get('marker', 'guess')\n"
FORGE = "for i in range(4):\n    print('\\n' + m + ' ' + json.dumps({'i': i, 'value': 0}), flush=True)\n"
FORGERIES = {
    "forged_lines": FIND_MARKER + FORGE + "print('4 of 4 tests passed')\ndef add_three(x):\n    return 0\n",
    "forged_lines_then_exit": FIND_MARKER + FORGE + "os._exit(0)\n",
    "forged_pass_records": FIND_MARKER + "for i in range(4):\n    print(m, json.dumps({'i': i, 'passed': True}), flush=True)\n"
    "os._exit(0)\n",
    "eq_always_true": "class Any:\n    def __eq__(self, other):\n        return True\n\ndef add_three(x):\n    return Any()\n",
    "int_subclass_eq": "class Int(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n\n"
    "def add_three(x):\n    return Int(x)\n",
    "sys_exit_first": "import sys\nsys.exit(0)\ndef add_three(x):\n    return 0\n",
    "os_exit_first": "import os\nos._exit(0)\n",
    "patched_print_and_json": 'import builtins, json\njson.dumps = lambda *a, **k: \'{"i": 0, "value": 4}\'\n'
    "builtins.print = lambda *a, **k: None\ndef add_three(x):\n    return 0\n",
    "patched_builtins_and_encoder": "import builtins, json\n"
    'json.JSONEncoder.encode = lambda self, o: \'{"i": 0, "value": 4}\'\n'
    "builtins.isinstance = lambda *a: True\ndef add_three(x):\n    return 0\n",
    "atexit_system_exit": "import atexit\ndef leave():\n    raise SystemExit(0)\natexit.register(leave)\n"
    "def add_three(x):\n    return x\n",
    "raises_system_exit": "def add_three(x):\n    raise SystemExit(0)\n",
}


def test_reward_scale_is_ordered_and_bounded():
    levels = [
        scoring.SYNTAX_ERROR,
        scoring.RUNTIME_ERROR,
        scoring.WRONG_ANSWER,
        scoring.WRONG_ANSWER + scoring.WRONG_ANSWER_SPAN,
        scoring.PARTIAL,
        scoring.PARTIAL + scoring.PARTIAL_SPAN,
        scoring.PASSED,
    ]
    assert levels == sorted(levels) and levels[0] == 0.0 and levels[-1] == 1.0
    assert len(set(levels)) == len(levels)


def test_outcomes_are_strictly_ordered():
    programs = [
        ("syntax_error", "def add_three(x)\n    return x + 3\n"),
        ("runtime_error", "def add_three(x):\n    return x + undefined_name\n"),
        ("wrong_answer", "def add_three(x):\n    return x + 4\n"),
        ("partial", "def add_three(x):\n    return x + 3 if x > 10 else -1\n"),
        ("passed", ADD_THREE.reference),
    ]
    scores = score_programs([(ADD_THREE, code) for _, code in programs])
    assert [s.status for s in scores] == [status for status, _ in programs]
    rewards = [s.reward for s in scores]
    assert rewards == sorted(rewards) and len(set(rewards)) == len(rewards) and rewards[0] >= 0.0 and rewards[-1] == 1.0
    assert [s.passed for s in scores] == [0, 0, 0, 2, 4] and {s.total for s in scores} == {4}
    assert scores[3].reward == pytest.approx(scoring.PARTIAL + scoring.PARTIAL_SPAN / 2)
    assert scoring.WRONG_ANSWER < scores[2].reward < scoring.WRONG_ANSWER + scoring.WRONG_ANSWER_SPAN
    assert scores[2].details["tests"][0]["got"] == 5


def test_closer_wrong_answers_earn_more():
    near, far = score_programs(
        [(ADD_THREE, "def add_three(x):\n    return x + 13\n"), (ADD_THREE, "def add_three(x):\n    return 'nothing like it'\n")]
    )
    assert near.status == far.status == "wrong_answer" and near.reward > far.reward


@pytest.mark.parametrize("code", [b"\xff\xfe\x00def", "", "  \n\t", "def f():\n    return '\udc80'\n", bytearray(b"")])
def test_empty_or_non_utf8_programs_score_zero(code):
    score = score_program(ADD_THREE, code)
    assert score.status == "empty" and score.reward == 0.0 and score.passed == 0 and score.total == 4


def test_null_bytes_and_compile_time_errors_are_syntax_errors():
    for code in ("def add_three(x):\n    return x\x00", "return 3\n", "def add_three(x):\n    nonlocal y\n"):
        score = score_program(ADD_THREE, code)
        assert score.status == "syntax_error" and score.reward == 0.0


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_harness_tricks_do_not_pass(name):
    score = score_program(ADD_THREE, FORGERIES[name])
    assert score.passed == 0 and score.status not in ("passed", "partial") and score.reward < scoring.PARTIAL
    if name == "forged_lines":  # the marker was found, so the forged lines arrived and voided the run
        assert score.status == "runtime_error" and "8 result lines for 4 tests" in score.details["note"]
    if name == "patched_print_and_json":  # the harness bound its own encoder before the program ran
        assert score.status == "wrong_answer" and [row["got"] for row in score.details["tests"]] == [0] * 4


def test_stdout_lines_and_unsolved_programs_judged_in_parent():
    score = score_program(ADD_THREE, "print('all tests passed')\ndef add_three(x):\n    return x + 3 if x < 5 else x\n")
    assert score.status == "partial" and score.passed == 2 and score.stdout_tail == "all tests passed"


def test_check_tasks_keep_types_and_the_check_never_sees_the_programs_patches():
    tricks = [
        "class Any(tuple):\n    def __eq__(self, other):\n        return True\n\ndef plus_pair(x):\n    return Any()\n",
        "import builtins\nbuiltins.abs = lambda v: 0\ndef plus_pair(x):\n    return (0, 4)\n",
        "def plus_pair(x):\n    return [x + 3, x * 2]\n",  # a list is not the tuple the check wants
        "import os\nprint('PASS')\nos._exit(0)\n",
    ]
    scores = score_programs([(CHECK, CHECK.reference)] + [(CHECK, code) for code in tricks])
    assert scores[0].status == "passed" and scores[0].reward == 1.0 and (scores[0].passed, scores[0].total) == (1, 1)
    assert all(score.passed == 0 and score.reward < scoring.PARTIAL for score in scores[1:])
    assert scores[2].status == "wrong_answer" and scores[3].status == "wrong_answer"


def test_stdio_tasks_compare_stdout_in_parent():
    scores = score_programs(
        [
            (ECHO, ECHO.reference),
            (ECHO, "s = input()\nprint(s.upper() if len(s) > 2 else s)\n"),
            (ECHO, "print(input())\n"),
            (ECHO, "print(undefined)\n"),
        ]
    )
    assert [s.status for s in scores] == ["passed", "partial", "wrong_answer", "runtime_error"]
    assert scores[0].stdout_tail == "X\n" and scores[1].passed == 2


def test_timeouts_and_blocked_actions():
    late_loop = "def add_three(x):\n    while x > 10:\n        pass\n    return x + 3\n"
    slow_stdio = "import time\ntime.sleep(30)\n"
    socket = "import socket\nsocket.socket().connect(('127.0.0.1', 9))\ndef add_three(x):\n    return x + 3\n"
    partial, stdio, blocked, hang = (
        score_program(ADD_THREE, late_loop, FAST),
        score_program(ECHO, slow_stdio, FAST),
        score_program(ADD_THREE, socket, FAST),
        score_program(ADD_THREE, "while True:\n    pass\n", FAST),
    )
    assert partial.status == "partial" and partial.passed == 2 and partial.details["sandbox"] in ("timeout", "cpu_limit")
    assert stdio.status == "timeout" and stdio.reward == scoring.TIMEOUT
    assert [row["error"] for row in stdio.details["tests"][1:]] == ["not run after a timeout"] * 2
    assert hang.status == "timeout" and hang.reward == scoring.TIMEOUT
    assert blocked.status == "blocked" and blocked.reward == 0.0 and "socket" in blocked.details["note"]


def test_score_json_is_one_line():
    score = Score(0.66, 2, 4, "partial", "tail\nline", {"tests": []})
    line = score_json(score)
    assert "\n" not in line
    assert json.loads(line) == {"reward": 0.66, "passed": 2, "total": 4, "status": "partial", "stdout_tail": "tail\nline"}


def test_same_value_is_strict_about_types():
    assert same_value([1, "a", [True]], [1, "a", [True]]) and same_value(3, 3.0)
    assert not same_value(True, 1) and not same_value(1, True) and not same_value("1", 1) and not same_value([1], [1, 2])
    assert not same_value(None, 0) and same_value({"a": [1]}, {"a": [1]}) and not same_value({"a": 1}, {"b": 1})


def test_reward_normalizer_tracks_running_statistics():
    rewards = [0.0, 0.05, 0.3, 1.0, 0.66, 0.1]
    normalizer = RewardNormalizer()
    assert normalizer.normalize(0.5) == 0.5  # before two rewards: std 1, mean 0
    normalizer.update(rewards[:2])
    normalizer.update(rewards[2])
    normalizer.update(rewards[3:])
    assert normalizer.count == 6 and normalizer.mean == pytest.approx(statistics.fmean(rewards))
    assert normalizer.std == pytest.approx(statistics.pstdev(rewards))
    assert normalizer.normalize(1.0) == pytest.approx((1.0 - normalizer.mean) / normalizer.std)
    assert normalizer.normalize(1e9) == normalizer.clip
    restored = RewardNormalizer()
    restored.load_state_dict(json.loads(json.dumps(normalizer.state_dict())))
    assert restored.normalize_many(rewards) == normalizer.normalize_many(rewards)
