"""The short-answer QA items of chapter 06 and how a reply is scored against their gold answers.

:func:`make_qa_items` draws a seeded mix of items whose gold answers are computed (sums, differences,
products of small numbers) or taken from a fixed list of checked facts (capitals, counts). They are
:class:`~slmlab.tasks.TaskItem` rows (domain ``qa``), so any chapter 05 task file in the same schema can
be used instead (:func:`slmlab.tasks.load_task`).

A small instruct model answers in a sentence ("7 + 5 = 12.", "The capital of Japan is Tokyo."), so
:func:`final_answer` pulls the answer out before the exact match — the usual GSM8K-style extraction: for a
numeric gold, the last number of the first sentence; otherwise the last word of the first clause.
"""

from __future__ import annotations

import random
import re

from slmlab.metrics import exact_match
from slmlab.tasks import TaskItem

INSTRUCTION = {"number": "Reply with the number only.", "word": "Reply with one word."}
CAPITALS = (
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Canada", "Ottawa"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Egypt", "Cairo"),
    ("Russia", "Moscow"),
    ("Greece", "Athens"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Kenya", "Nairobi"),
    ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"),
    ("Austria", "Vienna"),
    ("Poland", "Warsaw"),
    ("Sweden", "Stockholm"),
    ("Thailand", "Bangkok"),
    ("Cuba", "Havana"),
    ("Chile", "Santiago"),
)
COUNTS = (
    ("How many legs does a spider have?", "8"),
    ("How many days are in a week?", "7"),
    ("How many months are in a year?", "12"),
    ("How many legs does a dog have?", "4"),
    ("How many hours are in a day?", "24"),
    ("How many minutes are in an hour?", "60"),
    ("How many sides does a triangle have?", "3"),
    ("How many wheels does a bicycle have?", "2"),
    ("How many legs does an insect have?", "6"),
    ("How many sides does a square have?", "4"),
    ("How many days are in a leap year?", "366"),
    ("How many continents are there?", "7"),
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("+", "-", "x"))
    if kind == "x":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} times {b}?", str(a * b)
    a, b = rng.randint(2, 60), rng.randint(2, 40)
    if kind == "-":
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", str(a - b)
    return f"What is {a} + {b}?", str(a + b)


def _fact(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.6:
        country, capital = rng.choice(CAPITALS)
        return f"What is the capital of {country}?", capital
    return rng.choice(COUNTS)


def make_qa_items(n: int, seed: int = 0, arithmetic_share: float = 0.5, prefix: str = "qa") -> list[TaskItem]:
    """``n`` distinct items (same seed → same items): about ``arithmetic_share`` computed sums, differences
    and products, the rest capitals and counts. The question ends with the reply instruction."""
    if n < 0 or not 0.0 <= arithmetic_share <= 1.0:
        raise ValueError(f"n must be >= 0 and arithmetic_share in [0, 1], got {n}, {arithmetic_share}")
    rng, seen, items = random.Random(seed), set(), []
    budget = 200 * max(n, 1)  # the fact list is finite; give up instead of looping forever
    while len(items) < n and budget:
        budget -= 1
        question, answer = _arithmetic(rng) if rng.random() < arithmetic_share else _fact(rng)
        if question in seen:
            continue
        seen.add(question)
        style = "number" if _NUMBER.fullmatch(answer) else "word"
        items.append(
            TaskItem(id=f"{prefix}-{len(items):04d}", question=f"{question} {INSTRUCTION[style]}", answer=answer, domain="qa")
        )
    if len(items) < n:
        raise ValueError(f"only {len(items)} distinct QA items exist for these settings, {n} asked for")
    return items


def qa_split(n_train: int, n_test: int, seed: int = 0) -> tuple[list[TaskItem], list[TaskItem]]:
    """Disjoint train (self-play) and held-out test items from one seeded draw."""
    items = make_qa_items(n_train + n_test, seed=seed)
    return items[:n_train], items[n_train:]


def first_sentence(text: str) -> str:
    """Text up to the first line break or sentence end (a full stop before a space or the end)."""
    text = text.strip().split("\n", 1)[0]
    return re.split(r"(?<!\d)[.!?](?:\s|$)|[.!?](?=\s|$)", text, maxsplit=1)[0]


def final_answer(text: str, gold: str) -> str:
    """The part of a reply that is compared with ``gold``: the last number of its first sentence for a
    numeric gold, else the last word of its first clause; the reply itself when nothing matches."""
    sentence = first_sentence(text)
    if _NUMBER.fullmatch(gold.strip()):
        numbers = _NUMBER.findall(sentence.replace(",", ""))
        return numbers[-1] if numbers else text.strip()
    words = _WORD.findall(sentence.split(",", 1)[0])
    return words[-1] if words else text.strip()


def qa_correct(text: str, gold: str) -> bool:
    """Exact match (chapter 05's normalisation) of the whole reply or of its :func:`final_answer`."""
    return exact_match(text, gold) or exact_match(final_answer(text, gold), gold)
