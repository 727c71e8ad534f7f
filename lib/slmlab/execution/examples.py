"""Examples in a docstring read as tests: HumanEval's ``>>> f(x)`` lines and the other ways its problems write an
example (``f(x) ==> y``, ``For a = 1 the output should be y``, ``Input:``/``Output:``), as visible tests of a check task.
Nothing is run: the values are read with :func:`ast.literal_eval`."""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Example = tuple[list, Any]  # positional arguments of a call of the entry point, and the value it should return

# An example calls the entry point with literal arguments and gives a literal answer. The forms read:
# - doctest: ">>> f(1, 2)" and the value on the next line(s), or ">>> f(1, 2) == 3" on one line;
# - one line: "f(1, 2) == 3", also with "=>", "==>", "➞", "->", "=", "returns", "should return", "# =>", "# returns",
#   the line perhaps opened by a bullet ("* ") or "for ";
# - by parameter name: "For a = 1, b = 2 the output should be 3" ("the result should be"), and "Input: a = 1, b = 2"
#   (or "Input: 1, 2") with "Output: 3" on the next line.
# Calls of other functions, and arguments or answers that are not Python literals of plain JSON values (names,
# expressions, sets, dicts keyed by non-strings), are skipped.
_LINE_START = re.compile(r"^(?:[*-]\s+|for\s+)")
_ANSWER = re.compile(r"^\s*(?:#\s*)?(?:==>|=>|==|➞|->|=|returns|should return)\s*(?P<value>.+)$")
_FOR_NAMED = re.compile(r"^for\s+(?P<args>\w+\s*=.+?),?\s+the\s+(?:output|result)\s+should\s+be\s+(?P<value>.+)$", re.I)
_INPUT, _OUTPUT = re.compile(r"^input:\s*(?P<args>.+)$", re.I), re.compile(r"^output:\s*(?P<value>.+)$", re.I)
_NO_VALUE = object()  # a text that holds no literal (None is a value)
_NOT_LITERAL = (ValueError, TypeError, SyntaxError, MemoryError, RecursionError)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists), as the scorer compares it; ValueError when it is not."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item) for key, item in value.items()}
    raise ValueError(f"{type(value).__name__} is not a plain JSON value")


def _literal(text: str) -> Any:
    """The literal in ``text``, allowing a trailing full stop or ``# comment``; :data:`_NO_VALUE` if there is none."""
    text = text.strip()
    for candidate in (text, text.partition("#")[0].strip()):
        for attempt in ([candidate[:-1]] if candidate.endswith(".") else []) + [candidate]:
            try:
                return _plain(ast.literal_eval(attempt))
            except _NOT_LITERAL:
                continue
    return _NO_VALUE


@dataclass(frozen=True)
class _Signature:
    """The entry point's name and positional parameters (empty when the prompt does not define it readably)."""

    name: str
    parameters: tuple[str, ...] = ()
    required: int = 0

    @classmethod
    def of(cls, prompt: str, entry_point: str) -> _Signature:
        try:
            tree = ast.parse(prompt)
        except (SyntaxError, ValueError):
            return cls(entry_point)
        found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == entry_point]
        if not found:
            return cls(entry_point)
        arguments = found[0].args
        names = tuple(arg.arg for arg in arguments.posonlyargs + arguments.args)
        return cls(entry_point, names, len(names) - len(arguments.defaults))

    def arguments(self, call: ast.Call) -> list | None:
        """The call's literal arguments in parameter order (keywords placed by name); None when that fails."""
        named = {keyword.arg: keyword.value for keyword in call.keywords}
        rest = self.parameters[len(call.args) :]
        if any(isinstance(arg, ast.Starred) for arg in call.args) or (named and set(named) != set(rest)):
            return None
        nodes = list(call.args) + [named[name] for name in rest if named]
        if self.parameters and not self.required <= len(nodes) <= len(self.parameters):
            return None
        try:
            return [_plain(ast.literal_eval(node)) for node in nodes]
        except _NOT_LITERAL:
            return None


def _call(text: str, signature: _Signature) -> tuple[list, str] | None:
    """The literal arguments of a call of the entry point that opens ``text``, and the text after the call."""
    if not text.startswith(f"{signature.name}("):
        return None
    for end in (index + 1 for index, char in enumerate(text) if char == ")"):
        try:
            call = ast.parse(text[:end], mode="eval").body
        except SyntaxError:
            continue  # that ")" was inside an argument
        arguments = signature.arguments(call) if isinstance(call, ast.Call) else None
        return None if arguments is None else (arguments, text[end:])
    return None


def _example(arguments: tuple[list, str] | None, answer: str) -> Example | None:
    value = _NO_VALUE if arguments is None else _literal(answer)
    return None if value is _NO_VALUE else (arguments[0], value)


def _doctest_example(statement: str, following: Sequence[str], signature: _Signature) -> Example | None:
    """``>>> statement``'s example: a one-line answer after the call, else the first lines after it that read as a
    literal, up to a blank line or the next ``>>>``."""
    call = _call(statement, signature)
    if call is None:
        return None
    if call[1].strip():
        answer = _ANSWER.match(call[1])
        return _example(call, answer["value"]) if answer else None
    for count, line in enumerate(following[:20], start=1):  # an answer spans a few lines at most
        if not line or line.startswith(">>>"):
            break
        example = _example(call, " ".join(following[:count]))
        if example is not None:
            return example
    return None


def _line_example(line: str, following: Sequence[str], signature: _Signature) -> Example | None:
    """The example of one docstring line in any form but the doctest."""
    named, given = _FOR_NAMED.match(line), _INPUT.match(line)
    if named:
        return _example(_call(f"{signature.name}({named['args']})", signature), named["value"])
    if given:
        output = _OUTPUT.match(next((text for text in following if text), ""))
        return _example(_call(f"{signature.name}({given['args']})", signature), output["value"]) if output else None
    call = _call(_LINE_START.sub("", line, count=1), signature)
    answer = _ANSWER.match(call[1]) if call else None
    return _example(call, answer["value"]) if answer else None


def docstring_examples(prompt: str, entry_point: str) -> tuple[Example, ...]:
    """The examples of ``entry_point`` written in ``prompt`` (the forms above) as function-style tests, in order,
    without repeats. Nothing is run: an example may be wrong (see :func:`slmlab.execution.scoring.checked_examples`)."""
    lines, signature = [line.strip() for line in prompt.splitlines()], _Signature.of(prompt, entry_point)
    examples: dict[str, Example] = {}  # keyed by JSON text: TestCase equality takes True for 1
    for number, line in enumerate(lines):
        following = lines[number + 1 :]
        if line.startswith(">>>"):
            example = _doctest_example(line[3:].strip(), following, signature)
        else:
            example = _line_example(line, following, signature)
        if example is not None:
            examples.setdefault(json.dumps(list(example)), example)
    return tuple(examples.values())
