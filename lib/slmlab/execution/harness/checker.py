"""The trusted side of a check task, run in a process of its own as main.py: no program code ever runs here. It loads
the task's reference (reference.py, for the helpers a check calls, such as HumanEval's poly) and check code (check.py)
and calls check(candidate), where candidate answers from values another process computed. One framed line out.

Modes (job.json "mode"):
- "discover": candidate is the reference solution; the line lists every call the check made and each answer.
- "verify": candidate replays the answers the program's process wrote for job["calls"]; the line holds the verdict
  ("pass", "fail" or "error"), or "need": the calls so far plus the first call not yet answered, when the check asked
  for arguments the list does not have (its inputs depended on an earlier answer).
"random" is seeded before the check runs, so a check that draws its inputs (HumanEval/38, /50, /53) asks for the
same calls in every process.
"""

import json
import random
import traceback

import typed_values


class CandidateError(Exception):
    """The program's own failure on one call, as its process reported it."""


class NeedCalls(BaseException):
    """The check asked for a call that was not answered; a BaseException so that no `except Exception` hides it."""


def _describe(exc):
    return (type(exc).__name__ + ": " + str(exc))[:300]


def _check_line(tb):
    """The line of check.py where the check stopped, or None."""
    lines = [frame.lineno for frame in traceback.extract_tb(tb) if frame.filename == "check.py"]
    return lines[-1] if lines else None


def _load(job):
    namespace = {"__name__": "reference"}
    reference = job["reference"]
    exec(compile(reference, "reference.py", "exec"), namespace)
    solution = namespace.get(job["entry_point"])
    with open("check.py", encoding="utf-8") as handle:
        exec(compile(handle.read(), "check.py", "exec"), namespace)
    return solution, namespace["check"]


def _discover(solution, check):
    calls, answers = [], []

    def candidate(*args, **kwargs):
        calls.append(typed_values.encode_call(args, kwargs))
        try:
            value = solution(*args, **kwargs)
        except BaseException as exc:
            answers.append({"error": _describe(exc)})
            raise
        try:
            encoded = typed_values.encode(value)
        except typed_values.NotPlainValue as exc:
            raise RuntimeError("the reference solution " + str(exc)) from None
        answers.append({"value": encoded})
        return typed_values.decode(encoded)  # the check sees exactly what a replayed answer would be

    check(candidate)
    return {"calls": calls, "answers": answers}


def _verify(check, calls, answers):
    asked, needed = [], []
    candidate = _replayer(calls, answers, asked, needed)
    try:
        check(candidate)
    except NeedCalls:
        pass
    except BaseException as exc:
        if not needed:
            verdict = "fail" if isinstance(exc, AssertionError) else "error"
            return {"verdict": verdict, "error": _describe(exc), "line": _check_line(exc.__traceback__), "calls": len(asked)}
    if needed:  # also when the check caught NeedCalls itself
        return {"need": needed[0]}
    return {"verdict": "pass", "calls": len(asked)}


def _replayer(calls, answers, asked, needed):
    """A stand-in for the candidate that replays the program's recorded answers to the planned calls; a call off
    the plan is noted in ``needed`` (the calls so far) and stops the check."""
    keys = [typed_values.canonical(call) for call in calls]

    def candidate(*args, **kwargs):
        call = typed_values.encode_call(args, kwargs)
        index = len(asked)
        asked.append(call)
        if index >= len(keys) or typed_values.canonical(call) != keys[index]:
            needed.append(list(asked))
            raise NeedCalls()
        answer = answers[index]
        if answer is None:
            raise CandidateError("no answer: the program ended, ran out of time or its output was cut before this call")
        if "error" in answer:
            raise CandidateError(answer["error"])
        return typed_values.decode(answer["value"])

    return candidate


def main():
    with open("job.json", encoding="utf-8") as handle:
        job = json.load(handle)
    frame = job["frame"]
    random.seed(job["seed"])
    try:
        solution, check = _load(job)
        if job["mode"] == "discover":
            if not callable(solution):
                raise NameError("the reference defines no function " + job["entry_point"])
            outcome = _discover(solution, check)
        else:
            outcome = _verify(check, job["calls"], job["answers"])
    except BaseException as exc:
        outcome = {"task_error": _describe(exc), "traceback": traceback.format_exc()[-2000:]}
    print("\n" + frame + " " + json.dumps(outcome, ensure_ascii=True, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
