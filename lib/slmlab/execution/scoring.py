"""Execution rewards of chapter 08: programs run in the sandbox against a task's tests, judged outside their process.
Rewards in [0, 1]: task error, empty, syntax error, blocked 0 < runtime error, timeout 0.05 < wrong answer 0.1-0.25
< partial 0.3-0.9 < pass 1."""

from __future__ import annotations

import difflib
import json
import math
import secrets
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from slmlab.execution.checking import MAX_ROUNDS, answers_of, check_plan, run_candidate, run_checker, same_as_reference
from slmlab.execution.harness import decode_records, in_order, split_framed
from slmlab.execution.sandbox import SandboxLimits, SandboxResult, run_python
from slmlab.execution.tasks import CodeTask, CodeTaskFileError, TestCase

# The reward of each outcome, worst to best (strictly ordered):
# - "error": the task itself cannot judge (a check task without a reference, or whose check fails on it): 0.0, the
#   check's own traceback in details["check_traceback"];
# - "empty" (no text, or bytes that are not UTF-8), "syntax_error" (refused by compile() in the parent, which
#   executes nothing) and "blocked" (the sandbox refused an action such as a socket or a subprocess): 0.0;
# - "runtime_error" / "timeout" (no test produced a value): 0.05;
# - "wrong_answer" (values or output came back, none right): 0.1 + 0.15 x the mean difflib similarity of the output
#   to the expected output over all tests (a test that produced nothing counts 0), so 0.1 <= reward < 0.25;
# - "partial" (some tests pass): 0.3 + 0.6 x the fraction passed, so 0.3 < reward < 0.9;
# - "passed" (every test passes): 1.0.
TASK_ERROR = EMPTY = SYNTAX_ERROR = BLOCKED = 0.0
RUNTIME_ERROR = TIMEOUT = 0.05
WRONG_ANSWER, WRONG_ANSWER_SPAN = 0.1, 0.15
PARTIAL, PARTIAL_SPAN = 0.3, 0.6
PASSED = 1.0
STATUSES = ("error", "empty", "syntax_error", "blocked", "runtime_error", "timeout", "wrong_answer", "partial", "passed")
STDOUT_TAIL_CHARS = 400
SIMILARITY_CHARS = 2000  # difflib is quadratic: compare at most this much of each side
TIMED_OUT = ("timeout", "cpu_limit")
SOLUTION_FILE = "solution.py"

# Trust. Function tasks: this harness runs in the same child process as the program. It reads a random per-run
# marker from stdin before the program is defined, calls the entry point on each test input and writes one line
# `<marker> {"i": k, "value": ...}` per test after converting the return value to plain JSON (an object with a
# forged __eq__, or an int subclass, is refused there). The expected values never enter the child: the parent
# checks that exactly one line per test arrives, in order, holding plain JSON, and compares the values itself.
# A program that digs the marker out of the harness's memory and prints fake lines can therefore at most *claim*
# return values, and claiming the right values for the test inputs is answering the task; extra, duplicate or
# out-of-order lines void the run. Everything the harness uses after the program ran is bound before (locals and
# closures), so rebinding print, json.dumps or builtins does not change what it writes (at worst it breaks the
# harness, which fails the run). stdio tasks: stdout of one run per test is compared in the parent.
# Check tasks (HumanEval): no verdict is reached in the program's process. The program only answers calls there, and
# the task's check runs in a process of its own on those answers (slmlab.execution.checking).
HARNESS_PRELUDE = r"""
import builtins as _builtins
import json as _json
import os as _os
import sys as _sys


def _harness(entry, payload):
    marker = _sys.stdin.readline().strip()
    fd = _os.dup(1)
    write, type_, str_, repr_, len_, enumerate_, callable_, isinstance_ = (
        _os.write, type, str, repr, len, enumerate, callable, isinstance)
    list_, tuple_, dict_, compile_, exec_ = list, tuple, dict, compile, exec
    BaseException_, SyntaxError_, TypeError_ = BaseException, SyntaxError, TypeError
    encode = _json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode
    scalars = {bool, int, float, str, type(None)}

    def emit(record):
        write(fd, ("\n" + marker + " " + encode(record) + "\n").encode("ascii"))

    def describe(exc):
        try:
            return (type_(exc).__name__ + ": " + str_(exc))[:300]
        except BaseException_:
            return "an exception that cannot be shown"

    def refuse(value):
        try:
            name = type_(value).__name__
        except BaseException_:
            name = "object"
        raise TypeError_("returned a " + str_(name) + ", not a plain value")

    def plain(value):
        kind = type_(value)
        if kind in scalars:
            return value
        if kind is list_ or kind is tuple_:
            return [plain(item) for item in value]
        if kind is dict_:
            return {plain(k) if type_(k) in scalars else refuse(k): plain(v) for k, v in value.items()}
        return refuse(value)

    namespace = {"__name__": "solution", "__builtins__": _builtins}
    try:
        with open(SOLUTION, encoding="utf-8") as handle:
            source = handle.read()
        exec_(compile_(source, SOLUTION, "exec"), namespace)
        function = namespace[entry]
        if not callable_(function):
            raise TypeError_(entry + " is not a function")
    except BaseException_ as exc:
        emit({"load_error": describe(exc), "syntax": isinstance_(exc, SyntaxError_)})
        return
    for index, args in enumerate_(payload):
        try:
            line = encode({"i": index, "value": plain(function(*args))})
        except BaseException_ as exc:
            line = encode({"i": index, "error": describe(exc)})
        write(fd, ("\n" + marker + " " + line + "\n").encode("ascii"))
"""


@dataclass(frozen=True)
class Score:
    reward: float
    passed: int
    total: int
    status: str
    stdout_tail: str = ""
    details: dict = field(default_factory=dict)  # "tests": per-test rows, "note", "sandbox", "stderr_tail"


# --- value comparison ------------------------------------------------------------------------------------------
def same_value(got: Any, expected: Any) -> bool:
    """Equality of plain JSON values that tells booleans from numbers (True is not 1); 3 equals 3.0."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        return got == expected
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(same_value(g, e) for g, e in zip(got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same_value(got[k], expected[k]) for k in got)
    return type(got) is type(expected) and got == expected


def similarity(got: str, expected: str) -> float:
    """difflib's ratio of two texts (each cut to :data:`SIMILARITY_CHARS`), 1.0 for identical texts."""
    return difflib.SequenceMatcher(None, got[:SIMILARITY_CHARS], expected[:SIMILARITY_CHARS], autojunk=False).ratio()


def _as_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _stdout_text(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def _tail(text: str) -> str:
    return text[-STDOUT_TAIL_CHARS:]


# --- rewards ---------------------------------------------------------------------------------------------------
def _score(rows: list[dict], stdout: str, details: dict, failure: str | None = None) -> Score:
    """Reward and status from per-test rows ({"passed", "similarity", "answered"}); ``failure`` when none answered."""
    total, passed = len(rows), sum(bool(row["passed"]) for row in rows)
    details = {"tests": rows, **details}
    if total and passed == total:
        return Score(PASSED, passed, total, "passed", _tail(stdout), details)
    if passed:
        return Score(PARTIAL + PARTIAL_SPAN * passed / total, passed, total, "partial", _tail(stdout), details)
    if any(row.get("answered") for row in rows):
        mean = sum(row.get("similarity", 0.0) for row in rows) / total
        return Score(WRONG_ANSWER + WRONG_ANSWER_SPAN * min(mean, 1.0), 0, total, "wrong_answer", _tail(stdout), details)
    status = failure or "runtime_error"
    floors = {"error": TASK_ERROR, "empty": EMPTY, "syntax_error": SYNTAX_ERROR, "timeout": TIMEOUT, "blocked": BLOCKED}
    reward = floors.get(status, RUNTIME_ERROR)
    return Score(reward, 0, total, status, _tail(stdout), details)


def _failed(total: int, status: str, note: str, stdout: str = "", **details: Any) -> Score:
    rows = [{"test": index, "passed": False} for index in range(total)]
    return _score(rows, stdout, {"note": note, **details}, failure=status)


def _sandbox_details(result: SandboxResult) -> dict:
    return {"sandbox": result.status, "returncode": result.returncode, "stderr_tail": _tail(result.stderr)}


def _function_rows(task: CodeTask, records: list[dict]) -> list[dict] | str:
    """Per-test rows from the harness's records, or why the records are void."""
    if len(records) > len(task.tests):
        return f"{len(records)} result lines for {len(task.tests)} tests"
    rows = []
    for index, test in enumerate(task.tests):
        if index >= len(records):
            rows.append({"test": index, "passed": False, "error": "no result (the program ended or ran out of time)"})
            continue
        record = records[index]
        if not in_order(record, index):
            return f"result line {index} is malformed or out of order"
        if "error" in record:
            rows.append({"test": index, "passed": False, "error": str(record["error"])})
            continue
        got = record["value"]
        ok = same_value(got, test.expected)
        rows.append(
            {
                "test": index,
                "passed": ok,
                "answered": True,
                "got": got,
                "similarity": 1.0 if ok else similarity(_as_text(got), _as_text(test.expected)),
            }
        )
    return rows


def _harness_source(task: CodeTask, payload: Any) -> str:
    call = f"_harness({task.entry_point!r}, {payload!r})"
    return f"SOLUTION = {SOLUTION_FILE!r}\n{HARNESS_PRELUDE}\n{call}\n"


def _run_harness(task: CodeTask, code: str, payload: Any, limits: SandboxLimits) -> tuple[SandboxResult, list[dict] | None, str]:
    marker = secrets.token_hex(16)
    result = run_python(_harness_source(task, payload), stdin=marker + "\n", limits=limits, files={SOLUTION_FILE: code})
    payloads, own = split_framed(result.stdout, marker)
    return result, decode_records(payloads, result.truncated), own


def _load_failure(records: list[dict], total: int, own: str, result: SandboxResult) -> Score | None:
    """The score of a program that could not be loaded (its first record says why), else None."""
    if records and "load_error" in records[0]:
        if len(records) != 1:
            return _failed(total, "runtime_error", "extra result lines after a load error", own, **_sandbox_details(result))
        status = "syntax_error" if records[0].get("syntax") is True else "runtime_error"
        return _failed(total, status, str(records[0]["load_error"]), own, **_sandbox_details(result))
    return None


def _score_function(task: CodeTask, code: str, limits: SandboxLimits) -> Score:
    total = len(task.tests)
    result, records, own = _run_harness(task, code, [list(test.input) for test in task.tests], limits)
    if result.status == "blocked":
        return _failed(total, "blocked", result.stderr.strip()[-300:], own, **_sandbox_details(result))
    if records is None:
        return _failed(total, "runtime_error", "result lines are not plain JSON", own, **_sandbox_details(result))
    failure = _load_failure(records, total, own, result)
    if failure is not None:
        return failure
    rows = _function_rows(task, records)
    if isinstance(rows, str):
        return _failed(total, "runtime_error", f"result lines void: {rows}", own, **_sandbox_details(result))
    timed_out = result.status in TIMED_OUT
    return _score(rows, own, _sandbox_details(result), failure="timeout" if timed_out else "runtime_error")


def _score_check(task: CodeTask, code: str, limits: SandboxLimits) -> Score:
    plan = check_plan(task, limits)
    if plan.error is not None:
        return _failed(1, "error", plan.error, check_traceback=plan.traceback)
    calls = list(plan.calls)
    for rounds in range(1, MAX_ROUNDS + 1):
        run = run_candidate(task, code, calls, limits)
        result, own = run.result, run.own_output
        details = {**_sandbox_details(result), "calls": len(calls), "rounds": rounds}
        if result.status == "blocked":
            return _failed(1, "blocked", result.stderr.strip()[-300:], own, **details)
        answers = (
            "the answer lines are not plain JSON"
            if run.records is None
            else (_load_failure(run.records, 1, own, result) or answers_of(run.records, len(calls)))
        )
        if isinstance(answers, Score):
            return answers
        if isinstance(answers, str):
            return _failed(1, "runtime_error", f"answer lines void: {answers}", own, **details)
        if same_as_reference(answers, calls, plan):
            return _score(
                [{"test": 0, "passed": True, "answered": True, "similarity": 1.0}],
                own,
                {**details, "checker": "answers equal the reference's"},
            )
        outcome, checked = run_checker(task, {"mode": "verify", "calls": calls, "answers": answers}, limits)
        if outcome is not None and "need" in outcome:
            calls = outcome["need"]
            continue
        return _score(
            [_check_row(outcome, checked)],
            own,
            {**details, "checker": "check(candidate) on the answers"},
            failure="timeout" if result.status in TIMED_OUT else "runtime_error",
        )
    return _failed(1, "error", f"the check still asked for new calls after {MAX_ROUNDS} rounds of answers", "")


def _check_row(outcome: dict | None, checked: SandboxResult) -> dict:
    """The one test row of a check task from the checker's verdict."""
    if outcome is None or "verdict" not in outcome:
        why = outcome.get("task_error") if outcome else f"the checker ended {checked.status}"
        return {"test": 0, "passed": False, "error": f"the check could not run on the answers: {why}"}
    verdict = outcome["verdict"]
    row = {"test": 0, "passed": verdict == "pass", "answered": verdict in ("pass", "fail"), "similarity": 0.0}
    if "error" in outcome:
        line = outcome.get("line")
        row["error"] = str(outcome["error"]) + (f" (check.py line {line})" if line else "")
    return row


def _score_stdio(task: CodeTask, code: str, limits: SandboxLimits) -> Score:
    rows, result, timed_out = [], None, False
    for index, test in enumerate(task.tests):
        if timed_out:
            rows.append({"test": index, "passed": False, "error": "not run after a timeout"})
            continue
        result = run_python(code, stdin=test.input, limits=limits)
        if result.status == "blocked":
            return _failed(len(task.tests), "blocked", result.stderr.strip()[-300:], result.stdout, **_sandbox_details(result))
        if result.status != "ok":
            timed_out = result.status in TIMED_OUT
            rows.append({"test": index, "passed": False, "error": f"{result.status}: {result.stderr.strip()[-300:]}"})
            continue
        got, expected = _stdout_text(result.stdout), _stdout_text(test.expected)
        rows.append(
            {
                "test": index,
                "passed": got == expected,
                "answered": True,
                "got": _tail(got),
                "similarity": similarity(got, expected),
            }
        )
    return _score(rows, result.stdout, _sandbox_details(result), failure="timeout" if timed_out else "runtime_error")


def _program_text(code: str | bytes) -> str | None:
    """The program as text, or None when it is empty or not UTF-8."""
    if isinstance(code, (bytes, bytearray)):
        try:
            code = bytes(code).decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        code.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return code if code.strip() else None


def score_program(task: CodeTask, code: str | bytes, limits: SandboxLimits = SandboxLimits()) -> Score:
    """Run ``code`` against ``task``'s tests in the sandbox and score it (scale in the module docstring)."""
    total = len(task.tests) if task.kind != "check" else 1
    text = _program_text(code)
    if text is None:
        return _failed(total, "empty", "the program is empty or not UTF-8 text")
    try:
        with warnings.catch_warnings():  # a generated program's SyntaxWarnings are its own business, not the scorer's
            warnings.simplefilter("ignore", SyntaxWarning)
            compile(text, SOLUTION_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return _failed(total, "syntax_error", f"{type(exc).__name__}: {exc}"[:300])
    scorer = {"function": _score_function, "stdio": _score_stdio, "check": _score_check}[task.kind]
    return scorer(task, text, limits)


def score_programs(
    pairs: Sequence[tuple[CodeTask, str | bytes]], limits: SandboxLimits = SandboxLimits(), workers: int = 2
) -> list[Score]:
    """:func:`score_program` for many (task, code) pairs, ``workers`` sandboxes at a time, in input order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda pair: score_program(pair[0], pair[1], limits), pairs))


def score_json(score: Score) -> str:
    """The one JSON line of ``slmlab rl check``: reward, passed, total, status, stdout_tail."""
    return json.dumps(
        {
            "reward": round(score.reward, 4),
            "passed": score.passed,
            "total": score.total,
            "status": score.status,
            "stdout_tail": score.stdout_tail,
        },
        ensure_ascii=False,
    )


# --- normalization ---------------------------------------------------------------------------------------------
@dataclass
class RewardNormalizer:
    """Running mean and standard deviation of rewards (Welford); ``normalize`` gives clipped z-scores."""

    epsilon: float = 1e-6
    clip: float = 5.0
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, rewards: float | Iterable[float]) -> None:
        for reward in [rewards] if isinstance(rewards, (int, float)) else rewards:
            self.count += 1
            delta = float(reward) - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (float(reward) - self.mean)

    @property
    def std(self) -> float:
        """Population standard deviation; 1.0 until two rewards were seen."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0

    def normalize(self, reward: float) -> float:
        z = (float(reward) - self.mean) / max(self.std, self.epsilon)
        return max(-self.clip, min(self.clip, z))

    def normalize_many(self, rewards: Iterable[float]) -> list[float]:
        return [self.normalize(reward) for reward in rewards]

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


# --- task files ------------------------------------------------------------------------------------------------
def _refusal(task: CodeTask, score: Score, field: str) -> CodeTaskFileError:
    """The error naming ``task``'s first test (in ``field``) that its reference failed with ``score``."""
    failing = next((row for row in score.details.get("tests", []) if not row.get("passed")), None)
    why = score.details.get("note", score.status)
    if task.kind == "check" or failing is None:
        where = field
    else:
        where, test = f"{field}[{failing['test']}]", task.tests[failing["test"]]
        outcome = failing.get("error") or (f"got {failing['got']!r}" if "got" in failing else why)
        why = f"input {test.input!r}, expected {test.expected!r}, {outcome}"
    return CodeTaskFileError(task.source or task.name, where, f"fails on the reference solution ({score.status}: {why})")


def validate_task(task: CodeTask) -> None:
    """Refuse a task whose reference solution fails its own tests, or a check task's visible tests (names the file
    and the first failing test: ``tests[i]``, ``test_code`` or ``visible_tests[i]``)."""
    if task.reference is None:
        return
    score = score_program(task, task.reference)
    if score.status != "passed":
        raise _refusal(task, score, "test_code" if task.kind == "check" else "tests")
    visible = task.visible_task() if task.kind == "check" else None
    if visible is not None:
        score = score_program(visible, task.reference)
        if score.status != "passed":
            raise _refusal(visible, score, "visible_tests")


def validate_tasks(tasks: Sequence[CodeTask]) -> list[CodeTask]:
    """``tasks`` after :func:`validate_task` accepted each of them (the first refusal is raised)."""
    for task in tasks:
        validate_task(task)
    return list(tasks)


@dataclass(frozen=True)
class CheckedExamples:
    tasks: list[CodeTask]  # the tasks given, each check task keeping only the visible tests its reference passes
    dropped: dict[str, tuple[TestCase, ...]]  # task name -> the visible tests its reference fails

    @property
    def dropped_count(self) -> int:
        return sum(len(tests) for tests in self.dropped.values())


def checked_examples(tasks: Sequence[CodeTask], limits: SandboxLimits = SandboxLimits(), workers: int = 2) -> CheckedExamples:
    """Run each check task's reference on its visible tests and drop those it fails (a few HumanEval docstrings
    are wrong), so a wrong example neither misleads a solver nor makes the problem unusable. One sandbox run per
    check task with visible tests and a reference; other tasks come back as they are."""
    checked = [index for index, task in enumerate(tasks) if task.kind == "check" and task.examples and task.reference]
    runs = [(tasks[index].visible_task(), tasks[index].reference) for index in checked]
    result, dropped = list(tasks), {}
    for index, score in zip(checked, score_programs(runs, limits, workers)):
        task = tasks[index]
        passed = {row["test"] for row in score.details.get("tests", []) if row.get("passed")}
        failed = tuple(test for number, test in enumerate(task.examples) if number not in passed)
        if failed:
            dropped[task.name] = failed
            result[index] = replace(task, examples=tuple(t for n, t in enumerate(task.examples) if n in passed))
    return CheckedExamples(result, dropped)
