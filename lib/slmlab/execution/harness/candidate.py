"""The candidate's side of a check task, run in the sandbox as main.py beside the program (solution.py): it calls the
program's entry point on each call of job.json, in order, and writes one framed line per call with the typed value.

Nothing this process writes is trusted. The frame only tells these lines from the program's own prints: a program
that finds it can add lines, but a line can only claim a return value, which returning that value would do as well;
the parent voids a run whose lines are extra, repeated or out of order, and the verdict is reached elsewhere.
"""

import json
import os

import typed_values


def _describe(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:300]
    except BaseException:
        return "an exception that cannot be shown"


def main():
    with open("job.json", encoding="utf-8") as handle:
        job = json.load(handle)
    frame, entry = job["frame"], job["entry_point"]
    calls = [typed_values.decode_call(call) for call in job["calls"]]
    out, write, dumps, encode = os.dup(1), os.write, json.dumps, typed_values.encode  # bound before the program runs

    def emit(record):
        write(out, ("\n" + frame + " " + dumps(record, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii"))

    def answer(index, args, kwargs):
        try:
            record = {"i": index, "value": encode(function(*args, **kwargs))}
            dumps(record, allow_nan=False)  # a value JSON cannot write (an int of more than 4,300 digits) is an error
            return record
        except BaseException as exc:
            return {"i": index, "error": _describe(exc)}

    namespace = {"__name__": "solution"}
    try:
        with open("solution.py", encoding="utf-8") as handle:
            source = handle.read()
        exec(compile(source, "solution.py", "exec"), namespace)
        function = namespace[entry]
        if not callable(function):
            raise TypeError(entry + " is not a function")
    except BaseException as exc:
        emit({"load_error": _describe(exc), "syntax": isinstance(exc, SyntaxError)})
        return
    for index, (args, kwargs) in enumerate(calls):
        emit(answer(index, args, kwargs))


if __name__ == "__main__":
    main()
