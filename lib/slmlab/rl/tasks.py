"""Chapter 08's generated coding tasks: a seeded generator of small task families split train / held-out by family
member, and where the committed sets live (the task format and its loader are the core's :mod:`slmlab.execution.tasks`).
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.execution.tasks import VISIBLE_TESTS, CodeTask, TestCase
from slmlab.rl.spec import tasks_dir
from slmlab.settings import project_root

HELD_OUT_PER_FAMILY = 2  # members of each generated family kept out of training


def default_tasks_dir() -> Path:
    """The committed task sets: ``data/tasks/rl/`` (``train/`` and ``heldout/``) of the checkout."""
    return tasks_dir(project_root())


NUMBER_WORDS = {
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    11: "eleven",
    12: "twelve",
    15: "fifteen",
    20: "twenty",
    100: "hundred",
}
WORDS = (
    "apple",
    "banana",
    "cherry",
    "date",
    "eel",
    "fig",
    "grape",
    "house",
    "island",
    "jungle",
    "kite",
    "lemon",
    "mango",
    "night",
    "orange",
    "pear",
    "queen",
    "river",
    "sun",
    "tree",
    "umbrella",
    "violin",
    "water",
    "yellow",
)
TEMPLATES = ("Write a Python function `{call}` that {what}.", "Define a Python function `{call}` that {what}.")
RETURN_HINT = "Return the result with `return`; do not print it."


@dataclass(frozen=True)
class _Member:
    name: str
    args: str  # "x" or "a, b"
    types: str  # "x: int"
    returns: str  # "int"
    what: str  # "returns x + 3"
    body: str  # the reference's body, indented four spaces per line
    solve: Callable[..., Any]
    cases: tuple[tuple, ...]
    hint: str


def _ints(rng: random.Random, count: int = 5, low: int = -20, high: int = 50) -> list[tuple]:
    return [(rng.randint(low, high),) for _ in range(count)]


def _phrase(rng: random.Random, capitals: bool = False, digits: bool = False) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
    if capitals:
        words = [w.upper() if rng.random() < 0.3 else w.capitalize() if rng.random() < 0.4 else w for w in words]
    if digits and rng.random() < 0.6:
        words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 999)))
    return " ".join(words)


def _phrases(rng: random.Random, count: int = 5, **kwargs: bool) -> list[tuple]:
    return [("",)] + [(_phrase(rng, **kwargs),) for _ in range(count - 1)]


def _lists(rng: random.Random, count: int = 5, nonempty: bool = False, low: int = -9, high: int = 20) -> list[tuple]:
    empty = [] if nonempty else [([],)]
    return empty + [([rng.randint(low, high) for _ in range(rng.randint(1, 7))],) for _ in range(count - len(empty))]


def _unary(
    name: str,
    what: str,
    expr: str,
    solve: Callable,
    cases: list,
    hint: str,
    arg: str = "x",
    typ: str = "int",
    returns: str = "int",
) -> _Member:
    return _Member(name, arg, f"{arg}: {typ}", returns, what, f"    return {expr}", solve, tuple(cases), hint)


def _constants(rng: random.Random, pool: Sequence[int]) -> list[int]:
    return rng.sample(list(pool), 6)


def _add_constant(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"add_{NUMBER_WORDS[k]}",
            rng.choice([f"returns x + {k}", f"adds {k} to x and returns the result"]),
            f"x + {k}",
            lambda x, k=k: x + k,
            _ints(rng),
            "Use the + operator.",
        )
        for k in _constants(rng, NUMBER_WORDS)
    ]


def _multiply_constant(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"times_{NUMBER_WORDS[k]}",
            rng.choice([f"returns x * {k}", f"multiplies x by {k} and returns the result"]),
            f"x * {k}",
            lambda x, k=k: x * k,
            _ints(rng),
            "Use the * operator.",
        )
        for k in _constants(rng, [2, 3, 4, 5, 6, 7, 8, 9, 10, 12])
    ]


def _subtract_constant(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"minus_{NUMBER_WORDS[k]}",
            rng.choice([f"returns x - {k}", f"subtracts {k} from x and returns the result"]),
            f"x - {k}",
            lambda x, k=k: x - k,
            _ints(rng),
            "Use the - operator.",
        )
        for k in _constants(rng, NUMBER_WORDS)
    ]


def _two_numbers(rng: random.Random) -> list[_Member]:
    ops = [
        ("add_numbers", "returns the sum of a and b", "a + b", lambda a, b: a + b, "Use a + b."),
        ("subtract_numbers", "returns a minus b", "a - b", lambda a, b: a - b, "Use a - b."),
        ("multiply_numbers", "returns the product of a and b", "a * b", lambda a, b: a * b, "Use a * b."),
        ("larger_number", "returns the larger of a and b", "max(a, b)", max, "The built-in max() helps."),
        ("smaller_number", "returns the smaller of a and b", "min(a, b)", min, "The built-in min() helps."),
        (
            "distance",
            "returns the absolute difference between a and b",
            "abs(a - b)",
            lambda a, b: abs(a - b),
            "The built-in abs() helps.",
        ),
    ]
    return [
        _Member(
            name,
            "a, b",
            "a: int, b: int",
            "int",
            what,
            f"    return {expr}",
            solve,
            tuple((rng.randint(-30, 30), rng.randint(-30, 30)) for _ in range(5)),
            hint,
        )
        for name, what, expr, solve, hint in ops
    ]


def _count_letter(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"count_{c}",
            f"returns how many times the letter '{c}' appears in the string s",
            f"s.count('{c}')",
            lambda s, c=c: s.count(c),
            _phrases(rng),
            "Strings have a .count() method.",
            "s",
            "str",
        )
        for c in rng.sample("aeinorst", 6)
    ]


def _string_transform(rng: random.Random) -> list[_Member]:
    ops = [
        ("reverse_string", "returns the string s reversed", "s[::-1]", lambda s: s[::-1], "Slicing with [::-1] reverses."),
        ("to_upper", "returns the string s in upper case", "s.upper()", str.upper, "Strings have an .upper() method."),
        ("to_lower", "returns the string s in lower case", "s.lower()", str.lower, "Strings have a .lower() method."),
        (
            "remove_spaces",
            "returns the string s with all spaces removed",
            "s.replace(' ', '')",
            lambda s: s.replace(" ", ""),
            "Strings have a .replace() method.",
        ),
        (
            "swap_case",
            "returns s with upper case letters made lower case and lower case made upper case",
            "s.swapcase()",
            str.swapcase,
            "Strings have a .swapcase() method.",
        ),
        ("double_string", "returns the string s written twice in a row", "s + s", lambda s: s + s, "Use s + s."),
    ]
    return [
        _unary(name, what, expr, solve, _phrases(rng, capitals=True), hint, "s", "str", "str")
        for name, what, expr, solve, hint in ops
    ]


def _string_measure(rng: random.Random) -> list[_Member]:
    ops = [
        (
            "count_vowels",
            "returns the number of vowels (a, e, i, o, u, in either case) in s",
            "sum(1 for c in s.lower() if c in 'aeiou')",
            lambda s: sum(c in "aeiou" for c in s.lower()),
            "Loop over the characters and check `c in 'aeiou'`.",
        ),
        ("string_length", "returns the number of characters in s", "len(s)", len, "The built-in len() helps."),
        (
            "count_words",
            "returns the number of words in s (words are separated by spaces)",
            "len(s.split())",
            lambda s: len(s.split()),
            "s.split() gives the list of words.",
        ),
        (
            "count_spaces",
            "returns the number of spaces in s",
            "s.count(' ')",
            lambda s: s.count(" "),
            "Strings have a .count() method.",
        ),
        (
            "count_uppercase",
            "returns the number of upper case letters in s",
            "sum(1 for c in s if c.isupper())",
            lambda s: sum(c.isupper() for c in s),
            "c.isupper() tells whether a character is upper case.",
        ),
        (
            "count_digits",
            "returns the number of digit characters in s",
            "sum(1 for c in s if c.isdigit())",
            lambda s: sum(c.isdigit() for c in s),
            "c.isdigit() tells whether a character is a digit.",
        ),
    ]
    return [
        _unary(name, what, expr, solve, _phrases(rng, capitals=True, digits=True), hint, "s", "str")
        for name, what, expr, solve, hint in ops
    ]


def _repeat_string(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"repeat_{NUMBER_WORDS[k]}_times",
            f"returns the string s repeated {k} times",
            f"s * {k}",
            lambda s, k=k: s * k,
            _phrases(rng, count=4),
            "Multiplying a string by a number repeats it.",
            "s",
            "str",
            "str",
        )
        for k in _constants(rng, [2, 3, 4, 5, 6, 7, 8])
    ]


def _starts_ends(rng: random.Random) -> list[_Member]:
    pairs = rng.sample([(side, c) for side in ("starts", "ends") for c in "aegnrt"], 6)
    members = []
    for side, c in pairs:
        words = [(w,) for w in rng.sample(WORDS, 4)] + [("",), (f"{c}x{c}",)]
        method = "startswith" if side == "starts" else "endswith"
        members.append(
            _unary(
                f"{side}_with_{c}",
                f"returns True if the string s {side} with the letter '{c}', otherwise False",
                f"s.{method}('{c}')",
                lambda s, m=method, c=c: getattr(s, m)(c),
                words,
                f"Strings have a .{method}() method.",
                "s",
                "str",
                "bool",
            )
        )
    return members


def _list_aggregate(rng: random.Random) -> list[_Member]:
    ops = [
        ("sum_list", "returns the sum of the numbers in the list nums", "sum(nums)", sum, "The built-in sum() helps.", False),
        (
            "max_of_list",
            "returns the largest number in the non-empty list nums",
            "max(nums)",
            max,
            "The built-in max() helps.",
            True,
        ),
        (
            "min_of_list",
            "returns the smallest number in the non-empty list nums",
            "min(nums)",
            min,
            "The built-in min() helps.",
            True,
        ),
        ("list_length", "returns how many numbers the list nums holds", "len(nums)", len, "The built-in len() helps.", False),
        (
            "range_of_list",
            "returns the largest minus the smallest number of the non-empty list nums",
            "max(nums) - min(nums)",
            lambda nums: max(nums) - min(nums),
            "Use max() and min().",
            True,
        ),
        (
            "count_zeros",
            "returns how many times 0 appears in the list nums",
            "nums.count(0)",
            lambda nums: nums.count(0),
            "Lists have a .count() method.",
            False,
        ),
    ]
    return [
        _unary(
            name,
            what,
            expr,
            solve,
            _lists(rng, nonempty=nonempty, low=-3 if name == "count_zeros" else -9),
            hint,
            "nums",
            "list[int]",
        )
        for name, what, expr, solve, hint, nonempty in ops
    ]


def _count_greater(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"count_greater_than_{NUMBER_WORDS[k]}",
            f"returns how many numbers in the list nums are greater than {k}",
            f"sum(1 for n in nums if n > {k})",
            lambda nums, k=k: sum(n > k for n in nums),
            _lists(rng),
            "Loop over nums and count with an if.",
            "nums",
            "list[int]",
        )
        for k in _constants(rng, range(2, 13))
    ]


def _list_filter(rng: random.Random) -> list[_Member]:
    ops = [
        ("keep_evens", "even numbers", "n % 2 == 0", lambda n: n % 2 == 0),
        ("keep_odds", "odd numbers", "n % 2 == 1", lambda n: n % 2 == 1),
        ("keep_positives", "numbers greater than zero", "n > 0", lambda n: n > 0),
        ("keep_negatives", "numbers less than zero", "n < 0", lambda n: n < 0),
        ("keep_multiples_of_three", "multiples of 3", "n % 3 == 0", lambda n: n % 3 == 0),
        ("keep_nonzero", "numbers that are not zero", "n != 0", lambda n: n != 0),
    ]
    return [
        _unary(
            name,
            f"returns a list of the {what} in the list nums, in their original order",
            f"[n for n in nums if {test}]",
            lambda nums, keep=keep: [n for n in nums if keep(n)],
            _lists(rng, low=-6),
            "A list comprehension with an if works well.",
            "nums",
            "list[int]",
            "list[int]",
        )
        for name, what, test, keep in ops
    ]


def _scale_list(rng: random.Random) -> list[_Member]:
    return [
        _unary(
            f"multiply_each_by_{NUMBER_WORDS[k]}",
            f"returns a new list with every number in nums multiplied by {k}",
            f"[n * {k} for n in nums]",
            lambda nums, k=k: [n * k for n in nums],
            _lists(rng),
            "A list comprehension works well.",
            "nums",
            "list[int]",
            "list[int]",
        )
        for k in _constants(rng, [2, 3, 4, 5, 6, 7, 8, 9, 10])
    ]


def _divisible_by(rng: random.Random) -> list[_Member]:
    members = []
    for k in _constants(rng, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]):
        cases = [(k * rng.randint(-5, 9),) for _ in range(3)] + [(k * rng.randint(1, 9) + 1,), (0,)]
        members.append(
            _unary(
                f"is_divisible_by_{NUMBER_WORDS[k]}",
                f"returns True if n is divisible by {k}, otherwise False",
                f"n % {k} == 0",
                lambda n, k=k: n % k == 0,
                cases,
                "n % k is the remainder of n divided by k.",
                "n",
                "int",
                "bool",
            )
        )
    return members


def _fizz(a: int, b: int, word_a: str, word_b: str) -> Callable[[int], str]:
    return lambda n: word_a + word_b if n % a == 0 and n % b == 0 else word_a if n % a == 0 else word_b if n % b == 0 else str(n)


def _fizzbuzz(rng: random.Random) -> list[_Member]:
    variants = rng.sample(
        [
            (3, 5, "Fizz", "Buzz"),
            (2, 3, "Foo", "Bar"),
            (3, 7, "Fizz", "Bang"),
            (4, 6, "Ping", "Pong"),
            (2, 5, "Hip", "Hop"),
            (5, 7, "Zip", "Zap"),
            (3, 4, "Tic", "Tac"),
        ],
        6,
    )
    members = []
    for a, b, word_a, word_b in variants:
        name = "fizz_buzz" if (word_a, word_b) == ("Fizz", "Buzz") else f"{word_a.lower()}_{word_b.lower()}"
        what = (
            f"returns '{word_a}{word_b}' if n is divisible by both {a} and {b}, '{word_a}' if only by {a}, "
            f"'{word_b}' if only by {b}, and otherwise str(n)"
        )
        body = (
            f"    if n % {a} == 0 and n % {b} == 0:\n        return '{word_a}{word_b}'\n    if n % {a} == 0:\n"
            f"        return '{word_a}'\n    if n % {b} == 0:\n        return '{word_b}'\n    return str(n)"
        )
        only_a, only_b = (next(x * j for j in range(1, 20) if (x * j) % y) for x, y in ((a, b), (b, a)))
        cases = ((a * b,), (only_a,), (only_b,), (a * b * 2 + 1,), (rng.randint(1, 60),))
        members.append(
            _Member(
                name,
                "n",
                "n: int",
                "str",
                what,
                body,
                _fizz(a, b, word_a, word_b),
                cases,
                f"Check divisibility by both {a} and {b} first.",
            )
        )
    return members


def _threshold_label(rng: random.Random) -> list[_Member]:
    variants = rng.sample(
        [
            ("big", "small", 10),
            ("hot", "cold", 25),
            ("pass", "fail", 50),
            ("high", "low", 0),
            ("adult", "child", 18),
            ("heavy", "light", 100),
            ("tall", "short", 170),
        ],
        6,
    )
    members = []
    for high, low, k in variants:
        cases = [(k,), (k - 1,), (k + rng.randint(1, 30),), (k - rng.randint(2, 30),), (rng.randint(k - 40, k + 40),)]
        members.append(
            _Member(
                f"{high}_or_{low}",
                "x",
                "x: int",
                "str",
                f"returns '{high}' if x is at least {k}, otherwise '{low}'",
                f"    if x >= {k}:\n        return '{high}'\n    return '{low}'",
                lambda x, k=k, high=high, low=low: high if x >= k else low,
                tuple(cases),
                "Use an if statement with >=.",
            )
        )
    return members


FUNCTION_FAMILIES: dict[str, Callable[[random.Random], list[_Member]]] = {
    "add_constant": _add_constant,
    "multiply_constant": _multiply_constant,
    "subtract_constant": _subtract_constant,
    "two_numbers": _two_numbers,
    "count_letter": _count_letter,
    "string_transform": _string_transform,
    "string_measure": _string_measure,
    "repeat_string": _repeat_string,
    "starts_ends_with": _starts_ends,
    "list_aggregate": _list_aggregate,
    "count_greater": _count_greater,
    "list_filter": _list_filter,
    "scale_list": _scale_list,
    "divisible_by": _divisible_by,
    "fizzbuzz": _fizzbuzz,
    "threshold_label": _threshold_label,
}
STDIO_OPS = (("plus", "+", operator.add), ("times", "*", operator.mul), ("minus", "-", operator.sub))


def _function_task(member: _Member, family: str, rng: random.Random, source: str) -> CodeTask:
    call = f"{member.name}({member.args})"
    tests = tuple(TestCase(list(args), member.solve(*args)) for args in member.cases)
    return CodeTask(
        name=member.name,
        prompt=rng.choice(TEMPLATES).format(call=call, what=member.what),
        kind="function",
        entry_point=member.name,
        signature=f"def {member.name}({member.types}) -> {member.returns}",
        tests=tests,
        test_code=None,
        hints=(member.hint, RETURN_HINT),
        reference=f"def {call}:\n{member.body}\n",
        family=family,
        source=source,
        visible=VISIBLE_TESTS,  # 5 tests: 2 a solver may see, 3 for the final score
    )


def _stdio_tasks(rng: random.Random, source: str) -> list[CodeTask]:
    tasks = []
    for (word, symbol, apply), k in zip(rng.sample(STDIO_OPS * 2, 6), rng.sample([2, 3, 4, 5, 6, 7, 8, 9, 10], 6)):
        formula = f"n {symbol} {k}"
        tests = tuple(TestCase(f"{n}\n", str(apply(n, k))) for n in (rng.randint(-20, 50) for _ in range(3)))
        tasks.append(
            CodeTask(
                name=f"stdio_{word}_{NUMBER_WORDS[k]}",
                kind="stdio",
                entry_point=None,
                signature=None,
                tests=tests,
                prompt=f"Write a Python program that reads an integer n from standard input and prints {formula}.",
                test_code=None,
                hints=("n = int(input()) reads the number.", f"Print the value of {formula}."),
                reference=f"n = int(input())\nprint({formula})\n",
                family="stdio_arithmetic",
                source=source,
                visible=VISIBLE_TESTS,  # 3 tests: 2 visible, 1 hidden
            )
        )
    return tasks


def generate_families(seed: int = 0) -> tuple[list[CodeTask], list[CodeTask]]:
    """Seeded task families (six members each, differing in constants or operation) split (train, held-out).

    The split is by family member: in every family :data:`HELD_OUT_PER_FAMILY` members, picked by the seed,
    go to held-out, so held-out tasks are new instructions of familiar kinds.
    """
    rng, source = random.Random(seed), f"generated (seed {seed})"
    families = {name: [_function_task(m, name, rng, source) for m in build(rng)] for name, build in FUNCTION_FAMILIES.items()}
    families["stdio_arithmetic"] = _stdio_tasks(rng, source)
    train, held_out = [], []
    for members in families.values():
        rng.shuffle(members)
        train += members[:-HELD_OUT_PER_FAMILY]
        held_out += members[-HELD_OUT_PER_FAMILY:]
    return train, held_out
