"""The Generator and the Reflector: prompts written for a small model and lenient parsers for its replies.

Both prompts end the chat template with the start of the expected reply (``Answer:`` / ``Lesson:``), so
even a 135M model answers in the right slot; parsers then accept what such a model actually writes
("In 2022, net income was 90." → ``90``). Every parse is labelled ``strict`` (the reply was well formed),
``lenient`` (a fallback recovered it) or ``failed`` (nothing usable; the run records it and goes on).

What a 135M Generator can use from a playbook: worked examples (a question with its right answer) given as
earlier chat turns, the most relevant one last, and a few short hints placed right before the question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from slmlab.ace.curation import Lesson
from slmlab.ace.playbook import Bullet
from slmlab.ace.spec import EXAMPLES
from slmlab.metrics import choice_letter, normalize_text
from slmlab.tasks import TaskItem, parse_iot

STRATEGIES = "strategies"
PARSES = ("strict", "lenient", "failed")

_BULLET_ID = re.compile(r"\[?\b([a-z]{3}-\d{5})\b\]?")
_NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?\s?%?")
_FULL_NUMBER = re.compile(r"^[-+]?\$?\d[\d,]*(?:\.\d+)?\s?%?$")
_MAX_EXAMPLE_CONTEXT = 300  # characters of context a worked example may carry
_LESSON_WORDS = (4, 40)
_HINT_WORDS = 25  # a hint shown to the Generator is cut to this many words: long advice buries the question


@dataclass(frozen=True)
class GeneratorReply:
    raw: str
    answer: str
    cited: tuple[str, ...]
    parse: str


@dataclass(frozen=True)
class Reflection:
    """The Reflector's verdict on one reply: correctness (from the label, or the model's own judgement
    when there is none), proposed lessons, and helpful/harmful tags for the bullets the reply used."""

    correct: bool | None
    lessons: tuple[Lesson, ...]
    tags: tuple[tuple[str, bool], ...]
    parse: str
    raw: str


def choices_block(item: TaskItem) -> str:
    return "\n".join(f"{chr(65 + i)}. {choice}" for i, choice in enumerate(item.choices))


def question_block(item: TaskItem) -> str:
    """Context, question and choices as the model sees them."""
    parts = [item.context.strip()] if item.context.strip() else []
    parts.append(f"Question: {item.question.strip()}")
    if item.choices:
        parts.append(choices_block(item))
    return "\n".join(parts)


def short_hint(content: str, words: int = _HINT_WORDS) -> str:
    """A bullet as a hint: its first sentence, at most ``words`` words."""
    sentence = re.split(r"(?<=[.!?])\s", " ".join(content.split()), maxsplit=1)[0]
    kept = sentence.split()
    return " ".join(kept[:words]) + (" ..." if len(kept) > words else "")


def playbook_block(bullets: Sequence[Bullet]) -> str:
    lines = [f"[{b.id}] {short_hint(b.content)}" for b in bullets]
    return "Hints from earlier questions:\n" + "\n".join(lines) + "\n" if lines else ""


def answer_instruction(item: TaskItem) -> str:
    if item.choices:
        return "Reply with the letter of the correct choice."
    if item.domain == "iot":
        return "Reply 'no' or 'yes, reading N'."
    return "Reply with the answer only."


def generator_prompt(item: TaskItem, bullets: Sequence[Bullet]) -> str:
    """The user message for one question: the context, then the retrieved hints (short, right before the
    question, where a small model still attends to them), then the question and its choices."""
    cite = " If a hint helped, end with its id in brackets." if bullets else ""
    context = f"{item.context.strip()}\n" if item.context.strip() else ""
    question = question_block(TaskItem(item.id, item.question, item.answer, item.domain, "", item.choices))
    return f"{context}{playbook_block(bullets)}{question}\n{answer_instruction(item)}{cite}"


def demonstration(bullet: Bullet, item: TaskItem) -> list[dict]:
    """A worked-example bullet as one earlier chat exchange: its question asked, its answer given."""
    question, answer = bullet.content.rsplit(" A: ", 1)
    question = re.sub(r"(^| )Q: ", lambda m: "\nQuestion: " if m.group(1) else "Question: ", question, count=1)
    return [
        {"role": "user", "content": f"{question.strip()}\n{answer_instruction(item)}"},
        {"role": "assistant", "content": f"Answer: {answer.strip()}"},
    ]


def generator_messages(item: TaskItem, bullets: Sequence[Bullet]) -> list[dict]:
    """The Generator's chat: worked-example bullets become earlier exchanges (the most relevant one last),
    other bullets are listed above the question. A 135M model copies numbers out of examples pasted
    into one message, and uses them far better as demonstrations."""
    examples = [b for b in bullets if b.section == EXAMPLES and " A: " in b.content]
    notes = [b for b in bullets if b not in examples]
    messages = [turn for bullet in reversed(examples) for turn in demonstration(bullet, item)]
    return messages + [{"role": "user", "content": generator_prompt(item, notes)}]


def first_line(text: str) -> str:
    return next((line.strip() for line in text.strip().splitlines() if line.strip()), "")


def _strip_citations(text: str) -> str:
    return _BULLET_ID.sub("", text).strip(" .;,")


def _named_choice(item: TaskItem, text: str) -> int | None:
    """The index of the one choice whose text appears in ``text`` (None for none or several)."""

    def words(value: str) -> str:  # not normalize_text: it drops the article-like "A" of "Vitamin A"
        return " " + " ".join(re.findall(r"[\w%.°/-]+", value.casefold())) + " "

    named = [i for i, choice in enumerate(item.choices) if words(choice).rstrip(". ") + " " in words(text)]
    return named[0] if len(named) == 1 else None


def extract_answer(item: TaskItem, raw: str) -> tuple[str, str]:
    """(answer, parse status) from a Generator reply, leniently. A multiple-choice reply whose letter and
    choice text disagree ("B (Vitamin C)" copied from an example with other letters) is read by its text."""
    line = _strip_citations(first_line(raw))
    if item.choices:
        letter = choice_letter(line)
        if letter and ord(letter) - 65 < len(item.choices):
            named = _named_choice(item, line)
            return (chr(65 + named), "lenient") if named not in (None, ord(letter) - 65) else (letter, "strict")
        for index, choice in enumerate(item.choices):
            if choice.casefold() in raw.casefold():
                return chr(65 + index), "lenient"
        return "", "failed"
    if item.domain == "iot":
        strict = parse_iot(line)
        if strict is not None and len(line.split()) <= 4:
            return strict, "strict"
        recovered = parse_iot(raw)
        return (recovered, "lenient") if recovered is not None else ("", "failed")
    if _FULL_NUMBER.match(line) or (line and len(line.split()) <= 6 and not _NUMBER.search(line)):
        return line, "strict"
    numbers = _NUMBER.findall(line)
    if numbers:
        return numbers[-1].replace(" ", "").replace("$", ""), "lenient"
    return (" ".join(line.split()[:12]), "lenient") if line else ("", "failed")


def parse_generator_reply(item: TaskItem, raw: str) -> GeneratorReply:
    answer, parse = extract_answer(item, raw)
    cited = tuple(dict.fromkeys(_BULLET_ID.findall(raw)))
    return GeneratorReply(raw=raw, answer=answer, cited=cited, parse=parse)


def used_bullets(reply: GeneratorReply, shown: Sequence[Bullet]) -> tuple[str, ...]:
    """The bullets a reply relied on: the ids it cites; a small model rarely cites, so otherwise the
    shown bullets whose answer (the part after ``A:`` in a worked example, else the whole bullet)
    contains the reply's answer word for word — the bullets it copied from."""
    if reply.cited:
        return reply.cited
    answer = normalize_text(reply.answer)
    if not answer:
        return ()
    return tuple(b.id for b in shown if f" {answer} " in f" {normalize_text(b.content.rsplit(' A: ', 1)[-1])} ")


def answer_text(item: TaskItem, answer: str) -> str:
    """An answer in words, for similarity scores: a choice letter becomes its choice's text."""
    letter = choice_letter(answer) if item.choices else None
    if letter and ord(letter) - 65 < len(item.choices):
        return item.choices[ord(letter) - 65]
    return answer.strip()


def gold_display(item: TaskItem) -> str:
    """The gold answer in words: for a multiple-choice item, the letter and the choice text."""
    if item.choices and len(item.answer) == 1 and 0 <= ord(item.answer.upper()) - 65 < len(item.choices):
        return f"{item.answer} ({item.choices[ord(item.answer.upper()) - 65]})"
    return item.answer


def worked_example(item: TaskItem) -> str:
    """A worked example bullet: the (short) context, the question and its gold answer."""
    context = " ".join(item.context.split())
    context = f"{context} " if context and len(context) <= _MAX_EXAMPLE_CONTEXT else ""
    choices = " ".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(item.choices))
    question = f"{item.question.strip()} {choices}".strip()
    return f"{context}Q: {question} A: {gold_display(item)}"


def reflector_prompt(item: TaskItem, reply: GeneratorReply, with_label: bool) -> str:
    """Ask for one general lesson; with a label the gold answer is shown, without one the model first
    judges the answer itself."""
    shown = reply.answer or reply.raw.strip() or "(no answer)"
    head = f"A student answered this {item.domain} question.\n{question_block(item)}\nStudent answer: {shown}\n"
    if with_label:
        return head + (
            f"Correct answer: {gold_display(item)}\n"
            "Write one general lesson, in one sentence, that helps answer questions like this correctly."
        )
    return head + (
        "Is the student answer correct? Reply 'Correct: yes' or 'Correct: no', "
        "then 'Lesson:' and one general lesson in one sentence."
    )


_VERDICT = re.compile(r"correct\s*[:=]?\s*(yes|no)\b|\b(yes|no)\b", re.IGNORECASE)
_LESSON = re.compile(r"lesson\s*:\s*(.+)", re.IGNORECASE)


def parse_lesson(text: str) -> str | None:
    """One sentence of 4–40 words, or None."""
    found = _LESSON.search(text)
    line = first_line(found.group(1) if found else text)
    sentence = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0].strip(' "')
    words = len(sentence.split())
    return sentence if _LESSON_WORDS[0] <= words <= _LESSON_WORDS[1] else None


def parse_reflection(item: TaskItem, reply: GeneratorReply, raw: str, correct: bool | None, used: Sequence[str]) -> Reflection:
    """Build the Reflection for one reply. ``correct`` is the label's verdict, or None to read the
    model's own verdict from ``raw``."""
    verdict = correct
    if verdict is None:
        found = _VERDICT.search(raw)
        verdict = None if found is None else (found.group(1) or found.group(2)).lower() == "yes"
    lesson = parse_lesson(raw)
    lessons = [Lesson(STRATEGIES, lesson)] if lesson else []
    if correct is False:  # learn the right answer from a labelled mistake
        lessons.append(Lesson(EXAMPLES, worked_example(item)))
    tags = tuple((bullet_id, verdict) for bullet_id in used) if verdict is not None else ()
    found_by_model = [lesson is not None] + ([verdict is not None] if correct is None else [])
    parse = "strict" if all(found_by_model) else "lenient" if any(found_by_model) else "failed"
    return Reflection(correct=verdict, lessons=tuple(lessons), tags=tags, parse=parse, raw=raw)
