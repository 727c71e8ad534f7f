"""Check tasks (HumanEval) judged where no program code runs: the program answers calls alone in the sandbox, and the
task's check(candidate) runs in a process of its own that sees those answers only as typed JSON values.

The calls a check makes are learned once per task by running it on the task's reference solution ("discover", cached
here). A program's process then answers exactly those calls (arguments in, typed values out). When every answer equals
the reference's, the check would run the same path on the same values and pass, so it is not run again; otherwise
the checker replays the program's answers into check(candidate) ("verify") and gives the verdict. Where the check's
later arguments depend on an earlier answer, the checker asks for the extra calls and the program answers again
(at most MAX_ROUNDS times).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence

from slmlab.execution.harness import decode_records, harness_source, in_order, new_frame, split_framed, typed_values
from slmlab.execution.sandbox import SandboxLimits, SandboxResult, run_python
from slmlab.execution.tasks import CodeTask

CHECK_SEED = 0  # `random` in the checker: a check that draws its inputs asks for the same calls in every process
MAX_ROUNDS = 8  # verify rounds per program before the check's appetite for new calls counts as a task error
# The checker runs trusted code, but on values the program chose: it gets at least these limits, so a slow check of
# a busy machine never looks like a broken task, and a value built to blow up the check still meets a wall.
CHECKER_FLOOR = SandboxLimits(cpu_seconds=10, wall_seconds=30.0, memory_mb=1024, output_bytes=1_000_000)


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """What the check does on the reference solution: its calls and the reference's answers, or why it cannot run."""

    calls: tuple[dict, ...] = ()
    answers: tuple[dict, ...] = ()
    error: str | None = None  # the task's own failure: no reference, the check crashed, or the reference fails it
    traceback: str = ""


@dataclasses.dataclass(frozen=True)
class CandidateRun:
    """The program's process: the sandbox's result, its answer records (None: the lines are void) and its own output."""

    result: SandboxResult
    records: list[dict] | None
    own_output: str


_PLANS: dict[tuple, CheckPlan] = {}
_PLANS_LOCK = threading.Lock()


def checker_limits(limits: SandboxLimits) -> SandboxLimits:
    """``limits`` raised to :data:`CHECKER_FLOOR` field by field (network stays off)."""
    return SandboxLimits(
        **{
            field.name: max(getattr(limits, field.name), getattr(CHECKER_FLOOR, field.name))
            for field in dataclasses.fields(SandboxLimits)
            if field.name != "network"
        }
    )


def run_checker(task: CodeTask, job: dict, limits: SandboxLimits) -> tuple[dict | None, SandboxResult]:
    """Run the trusted checker on ``job`` ({"mode": ..., ...}); (its one outcome line or None, the sandbox result)."""
    frame = new_frame()
    job = {**job, "frame": frame, "seed": CHECK_SEED, "entry_point": task.entry_point, "reference": task.reference or ""}
    files = {
        "typed_values.py": harness_source("typed_values"),
        "check.py": task.test_code or "",
        "job.json": json.dumps(job, allow_nan=False),
    }
    result = run_python(harness_source("checker"), limits=checker_limits(limits), files=files)
    payloads, _ = split_framed(result.stdout, frame)
    records = decode_records(payloads, result.truncated)
    return (records[0] if records and len(records) == 1 else None), result


def _discover(task: CodeTask, limits: SandboxLimits) -> tuple[CheckPlan, bool]:
    """(the plan, whether it may be cached: a checker that ran out of time may succeed on a quieter machine)."""
    if task.reference is None:
        return CheckPlan(error="a check task needs its reference solution: the checker learns the check's calls from it"), True
    outcome, result = run_checker(task, {"mode": "discover"}, limits)
    if outcome is None:
        why = f"the checker ended {result.status} on the reference solution: {result.stderr.strip()[-500:]}"
        return CheckPlan(error=why, traceback=result.stderr[-2000:]), result.status in ("ok", "error")
    if "task_error" in outcome:
        return CheckPlan(
            error=f"the check fails on the reference solution: {outcome['task_error']}",
            traceback=str(outcome.get("traceback", "")),
        ), True
    return CheckPlan(calls=tuple(outcome["calls"]), answers=tuple(outcome["answers"])), True


def check_plan(task: CodeTask, limits: SandboxLimits) -> CheckPlan:
    """The task's :class:`CheckPlan`, discovered once per entry point, check code and reference (thread-safe)."""
    key = (task.entry_point, task.test_code, task.reference)
    with _PLANS_LOCK:
        cached = _PLANS.get(key)
    if cached is not None:
        return cached
    plan, keep = _discover(task, limits)
    if keep:
        with _PLANS_LOCK:
            _PLANS[key] = plan
    return plan


def run_candidate(task: CodeTask, code: str, calls: Sequence[dict], limits: SandboxLimits) -> CandidateRun:
    """Run the program in the sandbox, answering ``calls`` in order: one framed record per call."""
    frame = new_frame()
    files = {
        "solution.py": code,
        "typed_values.py": harness_source("typed_values"),
        "job.json": json.dumps({"frame": frame, "entry_point": task.entry_point, "calls": list(calls)}),
    }
    result = run_python(harness_source("candidate"), limits=limits, files=files)  # HumanEval's answers: at most 8 KB
    payloads, own = split_framed(result.stdout, frame)
    return CandidateRun(result, decode_records(payloads, result.truncated), own)


def answers_of(records: list[dict], calls: int) -> list[dict | None] | str:
    """Each call's answer ({"value": ...} or {"error": ...}, None where none came), or why the records are void."""
    if len(records) > calls:
        return f"{len(records)} answer lines for {calls} calls"
    answers: list[dict | None] = []
    for index, record in enumerate(records):
        if not in_order(record, index):
            return f"answer line {index} is malformed or out of order"
        answers.append({"value": record["value"]} if "value" in record else {"error": str(record["error"])[:300]})
    return answers + [None] * (calls - len(answers))


def same_as_reference(answers: Sequence[dict | None], calls: Sequence[dict], plan: CheckPlan) -> bool:
    """Whether the program answered the plan's own calls with exactly the reference's values (types included)."""
    if list(calls) != list(plan.calls) or len(answers) != len(plan.answers):
        return False
    for got, expected in zip(answers, plan.answers):
        if got is None or "value" not in got or "value" not in expected:
            return False
        if typed_values.canonical(got["value"]) != typed_values.canonical(expected["value"]):
            return False
    return True
