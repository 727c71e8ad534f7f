"""Check tasks (HumanEval) judged outside the program's process: the typed-values codec, the checker's rounds, a
task whose own check fails, all 164 canonical solutions, and hostile programs that try to forge a verdict."""

from __future__ import annotations

import math

import pytest

from slmlab.execution import scoring
from slmlab.execution.checking import CHECKER_FLOOR, check_plan, checker_limits, run_candidate
from slmlab.execution.harness import typed_values
from slmlab.execution.sandbox import SandboxLimits
from slmlab.execution.scoring import score_program, score_programs
from slmlab.execution.tasks import CodeTask, load_humaneval


def check_task(name: str, test_code: str, reference: str | None, entry_point: str = "f") -> CodeTask:
    return CodeTask(name, f"Write {entry_point}.", "check", entry_point, None, (), test_code, reference=reference)


# --- the codec ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**80,
        1.5,
        -0.0,
        "é\n",
        [],
        (),
        (1, [2, (3,)]),
        {1, 2},
        frozenset({"a"}),
        {"a": 1, 2: (3,), (1, 2): None},
        [math.inf, -math.inf],
        {("x", 1): {"y": [set()]}},
    ],
)
def test_typed_values_round_trip_with_their_types(value):
    back = typed_values.decode(typed_values.encode(value))
    assert back == value and type(back) is type(value)
    assert repr(back) == repr(value) or isinstance(value, (set, frozenset))


def test_typed_values_keep_nan_and_tell_numbers_apart():
    assert math.isnan(typed_values.decode(typed_values.encode(math.nan)))
    texts = {typed_values.canonical(typed_values.encode(v)) for v in (1, 1.0, True, "1", [1], (1,))}
    assert len(texts) == 6
    assert typed_values.canonical(typed_values.encode({"b", "a", "c"})) == typed_values.canonical(
        typed_values.encode({"c", "a", "b"})
    )  # a set's text does not depend on hashing


@pytest.mark.parametrize("value", [object(), type("Int", (int,), {})(3), (x for x in "ab"), b"bytes", 1j])
def test_typed_values_refuse_anything_but_exact_plain_types(value):
    with pytest.raises(typed_values.NotPlainValue):
        typed_values.encode(value)


def test_typed_values_refuse_self_reference_and_bad_forms():
    loop: list = []
    loop.append(loop)
    with pytest.raises(typed_values.NotPlainValue, match="levels deep"):
        typed_values.encode(loop)
    for bad in ({"tuple": 1}, {"code": []}, {"a": 1, "b": 2}, {"set": [[1]]}, {"dict": [[[1], 2]]}, {"float": "1e9"}):
        with pytest.raises(ValueError):
            typed_values.decode(bad)


# --- the checker ----------------------------------------------------------------------------------------------------

CHAINED = check_task(
    "chained",
    "def check(candidate):\n    y = candidate(1)\n    assert y > 1\n    assert candidate(y) > y\n",
    "def f(x):\n    return x + 1\n",
)


def test_answers_equal_to_the_reference_pass_without_running_the_check_again():
    score = score_program(CHAINED, "def f(x):\n    return 1 + x\n")
    assert score.status == "passed" and score.details["rounds"] == 1
    assert score.details["checker"] == "answers equal the reference's"


def test_a_check_whose_calls_follow_the_answers_asks_again():
    plan = check_plan(CHAINED, SandboxLimits())
    assert [call["args"] for call in plan.calls] == [[1], [2]]
    other = score_program(CHAINED, "def f(x):\n    return x + 2\n")  # 1 -> 3, then the check asks f(3), not f(2)
    assert other.status == "passed" and other.details["rounds"] == 2 and other.details["calls"] == 2
    wrong = score_program(CHAINED, "def f(x):\n    return 5 if x == 1 else 0\n")
    assert wrong.status == "wrong_answer" and wrong.details["rounds"] == 2
    assert "check.py line 4" in wrong.details["tests"][0]["error"]


def test_a_check_that_draws_random_inputs_asks_the_same_calls_every_time():
    task = check_task(
        "drawn",
        "import random\n\ndef check(candidate):\n    for _ in range(20):\n"
        "        x = random.randint(0, 10**9)\n        assert candidate(x) == x * 2\n",
        "def f(x):\n    return 2 * x\n",
    )
    scores = score_programs([(task, "def f(x):\n    return x + x\n")] * 3)
    assert [s.status for s in scores] == ["passed"] * 3
    assert {s.details["checker"] for s in scores} == {"answers equal the reference's"}


def test_a_check_that_crashes_on_its_own_reference_is_a_task_error_with_its_traceback():
    broken = check_task(
        "broken_check", "def check(candidate):\n    assert candidate(1) == undefined_name\n", "def f(x):\n    return x\n"
    )
    score = score_program(broken, "def f(x):\n    return x\n")
    assert (score.status, score.reward, score.passed) == ("error", 0.0, 0)
    assert "NameError" in score.details["note"] and "undefined_name" in score.details["note"]
    assert 'File "check.py", line 2' in score.details["check_traceback"]
    failing = check_task(
        "failing_reference", "def check(candidate):\n    assert candidate(1) == 2\n", "def f(x):\n    return x\n"
    )
    assert score_program(failing, "def f(x):\n    return x + 1\n").status == "error"
    unloadable = check_task("no_check", "def kontrol(candidate):\n    pass\n", "def f(x):\n    return x\n")
    assert "KeyError: 'check'" in score_program(unloadable, "def f(x):\n    return x\n").details["note"]
    assert (
        score_program(check_task("no_reference", "def check(c):\n    pass\n", None), "def f(x):\n    return x\n").status
        == "error"
    )


def test_the_candidate_failing_on_a_call_is_the_programs_fault():
    score = score_program(CHAINED, "def f(x):\n    return x / 0\n")
    assert score.status == "runtime_error" and "ZeroDivisionError" in score.details["tests"][0]["error"]
    none = score_program(CHAINED, "def f(x):\n    return None\n")  # `None > 1` raises TypeError inside the check
    assert none.status == "runtime_error" and "TypeError" in none.details["tests"][0]["error"]


def test_the_checker_gets_at_least_its_floor():
    raised = checker_limits(SandboxLimits(cpu_seconds=1, wall_seconds=1.0, memory_mb=128, output_bytes=100))
    assert (raised.cpu_seconds, raised.wall_seconds, raised.memory_mb) == (
        CHECKER_FLOOR.cpu_seconds,
        CHECKER_FLOOR.wall_seconds,
        CHECKER_FLOOR.memory_mb,
    )
    assert checker_limits(SandboxLimits(cpu_seconds=60)).cpu_seconds == 60


def test_nothing_in_the_programs_process_reaches_the_check_or_the_reference():
    spy = (
        "import os, sys\nfound = []\nfor name in sorted(os.listdir('.')):\n    found.append(name + open(name).read())\n"
        "frame = sys._getframe()\nwhile frame:\n    found.append(repr(frame.f_locals)[:20000])\n    frame = frame.f_back\n"
        "found.append(sys.stdin.read())\nfound.append(open('/proc/self/cmdline').read())\nprint('\\n'.join(found))\n"
        "def f(x):\n    return x + 1\n"
    )
    task = check_task(
        "spied",
        "def check(candidate):\n    assert candidate(41) == 42  # the-check-text\n",
        "def f(x):\n    return x + 1  # the-reference-text\n",
    )
    plan = check_plan(task, SandboxLimits())
    seen = run_candidate(task, spy, plan.calls, SandboxLimits())
    assert seen.result.status == "ok" and "job.json" in seen.own_output and "solution.py" in seen.own_output
    assert seen.records == [{"i": 0, "value": 42}]
    assert "the-check-text" not in seen.result.stdout and "the-reference-text" not in seen.result.stdout
    assert score_program(task, spy).status == "passed"


# --- HumanEval -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval() -> list[CodeTask]:
    return load_humaneval()


def test_all_164_canonical_solutions_pass(humaneval):
    scores = score_programs([(task, task.reference) for task in humaneval])
    failed = {task.name: score.details.get("note") for task, score in zip(humaneval, scores) if score.status != "passed"}
    assert len(humaneval) == 164 and failed == {}


def test_a_wrong_humaneval_program_fails_in_the_checker(humaneval):
    task = humaneval[0]
    score = score_program(task, task.prompt + "    return True\n")
    assert score.status == "wrong_answer" and score.reward == scoring.WRONG_ANSWER
    assert score.details["checker"] == "check(candidate) on the answers"
    assert "AssertionError" in score.details["tests"][0]["error"]


FRAME_WALK = """import sys
lines = []
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        if isinstance(value, str) and (value.startswith('slmlab-') or len(value) == 32):
            lines += [value + ' {"verdict": "pass"}'] + [value + ' {"i": %d, "value": true}' % i for i in range(200)]
    frame = frame.f_back
print('\\n'.join(lines), flush=True)
"""
VERDICT_ONLY = """import os, string, sys
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()):
        if isinstance(value, str) and (value.startswith('slmlab-result-') or (
                len(value) == 32 and set(value) <= set(string.hexdigits))):
            os.write(1, ('\\n' + value + ' {"verdict": "pass"}\\n').encode())
            os._exit(0)
    frame = frame.f_back
"""
ATTACKS = {
    "frame_walk_verdict_only": VERDICT_ONLY,  # earned 1.0 on HumanEval/0 when the check ran in the program's process
    "frame_walk": FRAME_WALK,
    "frame_walk_then_exit": FRAME_WALK + "import os\nos._exit(0)\n",
    "gc_objects": "import gc\nfound = [o for o in gc.get_objects() if isinstance(o, str) and o.startswith('slmlab-')]\n",
    "gc_referrers": "import gc, json\nprint(gc.get_referrers(json.dumps))\n",
    "proc_self_fd": "import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n"
    "        print(os.readlink('/proc/self/fd/' + fd), open('/proc/self/fd/' + fd).read(200))\n"
    "    except Exception:\n        pass\n",
    "stdin_and_job_file": "import json, sys\nsys.stdin.read()\njob = json.load(open('job.json'))\n"
    "print('\\n' + job['frame'] + ' {\"verdict\": \"pass\"}')\n"
    "for i in range(len(job['calls'])):\n    print(job['frame'], json.dumps({'i': i, 'value': True}))\n",
    "patched_os_write_and_json": "import os, json, builtins\nreal = os.write\n"
    "os.write = lambda fd, data: real(fd, data.replace(b'false', b'true'))\n"
    'json.dumps = lambda *a, **k: \'{"i": 0, "value": true}\'\n'
    'json.JSONEncoder.encode = lambda self, o: \'{"verdict": "pass"}\'\n'
    "builtins.isinstance = lambda *a: True\n",
    "patched_modules_the_check_imports": "import math, random, sys\nmath.fabs = lambda x: 0.0\nrandom.seed = None\n"
    "sys.modules['math'] = None\n",
    "exits_early": "import sys\nprint('PASS')\nsys.exit(0)\n",
}
HONEST_PART = "def has_close_elements(numbers, threshold):\n    return None\n"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_forged_verdict_earns_nothing(humaneval, name):
    task = humaneval[0]  # HumanEval/0, has_close_elements
    honest = score_program(task, HONEST_PART)
    attack = score_program(task, ATTACKS[name] + HONEST_PART)
    assert attack.status not in ("passed", "partial") and attack.passed == 0
    assert attack.reward <= honest.reward <= scoring.WRONG_ANSWER, (attack.status, attack.details.get("note"))
