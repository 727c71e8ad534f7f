"""The coding task of chapter 08: a :class:`CodeTask` and its :class:`TestCase` rows, the one type the task files
(:mod:`slmlab.rl.tasks`) and the scorer (:mod:`slmlab.rl.scoring`) share, so neither has to import the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TestCase:
    """One test: for "function" tasks positional arguments and the return value, for "stdio" stdin and stdout text."""

    __test__ = False  # not a pytest test class
    input: Any
    expected: Any


@dataclass(frozen=True)
class CodeTask:
    name: str
    prompt: str
    kind: str  # "function" | "stdio" | "check"
    entry_point: str | None
    signature: str | None
    tests: tuple[TestCase, ...]
    test_code: str | None  # kind "check": HumanEval's ``check(candidate)``
    hints: tuple[str, ...] = ()
    reference: str | None = None
    family: str | None = None
    source: str = ""  # the file it came from, or how it was made

    def to_dict(self) -> dict:
        row = {
            "name": self.name,
            "prompt": self.prompt,
            "kind": self.kind,
            "entry_point": self.entry_point,
            "signature": self.signature,
            "tests": [{"input": t.input, "expected": t.expected} for t in self.tests],
            "test_code": self.test_code,
            "hints": list(self.hints),
            "reference": self.reference,
            "family": self.family,
        }
        return {key: value for key, value in row.items() if value not in (None, []) or key == "tests"}
