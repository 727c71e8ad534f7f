"""Curator refinement (MiniLM de-duplication, pruning, token budget, retrieval) and the role parsers."""

from __future__ import annotations

import pytest

from slmlab.ace.curation import (
    CurationConfig,
    Curator,
    Lesson,
    budget_removals,
    duplicate_merges,
    prune_removals,
    retrieve,
)
from slmlab.ace.playbook import DeltaOp, Playbook
from slmlab.ace.roles import (
    EXAMPLES,
    STRATEGIES,
    extract_answer,
    generator_messages,
    generator_prompt,
    parse_generator_reply,
    parse_reflection,
    used_bullets,
    worked_example,
)
from slmlab.tasks import TaskItem


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def embedder():
    from slmlab.embeddings import load_embedder

    return load_embedder()


def playbook_of(*contents: str, section: str = "strategies") -> Playbook:
    playbook = Playbook()
    for content in contents:
        playbook.apply(DeltaOp("ADD", section=section, content=content), now=1.0)
    return playbook


PERCENT = "Percentage change is (new - old) / old times 100."
PERCENT_AGAIN = "Percentage change is (new - old) / old, times 100"
SCURVY = "Scurvy is caused by a lack of vitamin C."


def test_near_duplicates_merge_above_threshold_and_keep_counters(embedder):
    playbook = playbook_of(PERCENT, SCURVY, PERCENT_AGAIN)
    playbook.tag("str-00003", helpful=True)
    merges = duplicate_merges(playbook, embedder, threshold=0.9)
    assert merges == [DeltaOp("MERGE", content=PERCENT_AGAIN, merge_ids=("str-00001", "str-00003"))]
    playbook.extend(merges)
    assert sorted(playbook.bullets) == ["str-00001", "str-00002"]
    assert playbook.bullets["str-00001"].helpful == 1 and playbook.bullets["str-00001"].content == PERCENT_AGAIN


def test_threshold_is_configurable_and_sections_are_kept_apart(embedder):
    assert duplicate_merges(playbook_of(PERCENT, PERCENT_AGAIN), embedder, threshold=0.999) == []
    playbook = playbook_of(PERCENT)
    playbook.apply(DeltaOp("ADD", section="formulas", content=PERCENT))
    assert duplicate_merges(playbook, embedder, threshold=0.9) == []


def test_pruning_removes_bullets_that_hurt_more_than_they_help():
    playbook = playbook_of("a lesson that misleads", "a lesson that helps", "a new lesson used once badly")
    for _ in range(3):
        playbook.tag("str-00001", helpful=False)
    playbook.tag("str-00001", helpful=True)
    playbook.tag("str-00002", helpful=False)
    playbook.tag("str-00002", helpful=True)
    playbook.tag("str-00003", helpful=False)
    assert prune_removals(playbook, min_harmful=2) == [DeltaOp("REMOVE", bullet_id="str-00001")]
    assert {op.bullet_id for op in prune_removals(playbook, min_harmful=1)} == {"str-00001", "str-00003"}


def test_token_budget_is_enforced_lowest_score_first():
    playbook = playbook_of(*(f"lesson number {i} with several words in it" for i in range(10)))
    playbook.tag("str-00001", helpful=True)
    budget = 40
    assert words(playbook.to_text()) > budget
    removals = budget_removals(playbook, words, budget)
    playbook.extend(removals)
    assert words(playbook.to_text()) <= budget
    assert "str-00001" in playbook.bullets  # the only helpful bullet survives
    assert budget_removals(playbook, words, budget) == []


def test_retrieval_returns_the_most_relevant_bullets_first(embedder):
    playbook = playbook_of(SCURVY, PERCENT, "IoT readings far from the others are anomalies.")
    top = retrieve(playbook, embedder, "What was the percent change in revenue from 2021 to 2022?", k=2)
    assert [b.id for b in top][0] == "str-00002" and len(top) == 2
    assert retrieve(playbook, embedder, "anything", k=0) == []


def test_curator_tags_adds_and_refines_with_delta_operations_only(embedder):
    curator = Curator(CurationConfig(token_budget=60), embedder, words)
    playbook = playbook_of(PERCENT)
    lessons = [Lesson(STRATEGIES, PERCENT_AGAIN), Lesson(STRATEGIES, SCURVY)]
    applied = curator.curate(playbook, lessons, tags=[("str-00001", True)])
    assert [op.op for op in applied] == ["ADD", "ADD", "MERGE"]
    assert [op.bullet_id for op in applied[:2]] == ["str-00002", "str-00003"]
    assert len(playbook) == 2 and playbook.bullets["str-00001"].helpful == 1
    assert curator.operations == {"ADD": 2, "MERGE": 1}
    assert curator.curate(playbook, [Lesson(STRATEGIES, SCURVY)]) == []  # an exact repeat is not added
    topics = ["tables", "units", "signs", "years"]
    many = [Lesson(STRATEGIES, f"distinct lesson {i}: {w} matters here") for i, w in enumerate(topics)]
    curator.curate(playbook, many)
    assert words(playbook.to_text()) <= 60


# --- roles --------------------------------------------------------------------------------------
FIN = TaskItem(
    id="f1", question="What was net income in 2022?", answer="90", context="| Net income | 100 | 90 |", domain="finance"
)
MC = TaskItem(
    id="m1",
    question="Which vitamin deficiency causes scurvy?",
    answer="B",
    domain="medical",
    choices=("Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"),
)
IOT = TaskItem(id="i1", question="Is any reading anomalous?", answer="yes, reading 3", context="reading 1: f1=50", domain="iot")


@pytest.mark.parametrize(
    "item, raw, expected",
    [
        (FIN, " 90", ("90", "strict")),
        (FIN, " 12.5% [str-00001]", ("12.5%", "strict")),
        (FIN, " In 2022, net income was 90.", ("90", "lenient")),
        (FIN, "", ("", "failed")),
        (MC, " B", ("B", "strict")),
        (MC, " (c) Vitamin D", ("C", "strict")),
        (MC, " I think it is vitamin c, found in citrus", ("B", "lenient")),
        (MC, " ???", ("", "failed")),
        (IOT, " yes, reading 3", ("yes, reading 3", "strict")),
        (IOT, " no", ("no", "strict")),
        (IOT, " Looking at it, reading 3 looks odd, so yes, reading 3 is anomalous.", ("yes, reading 3", "lenient")),
        (IOT, " The sensors report values.", ("", "failed")),
    ],
)
def test_generator_answers_are_parsed_leniently(item, raw, expected):
    assert extract_answer(item, raw) == expected


def test_generator_prompt_shows_bullets_and_replies_cite_them():
    playbook = playbook_of(PERCENT)
    prompt = generator_prompt(FIN, list(playbook.bullets.values()))
    assert "[str-00001] " + PERCENT in prompt and FIN.context in prompt and "Question: " + FIN.question in prompt
    assert parse_generator_reply(FIN, " 90 [str-00001]").cited == ("str-00001",)
    assert "A. Vitamin A\nB. Vitamin C" in generator_prompt(MC, [])


def test_reflection_with_labels_tags_used_bullets_and_learns_from_mistakes():
    reply = parse_generator_reply(FIN, " 100")
    reflection = parse_reflection(FIN, reply, "Lesson: Read the value in the column of the year asked.", False, ["str-00001"])
    assert reflection.parse == "strict" and reflection.tags == (("str-00001", False),)
    assert [l.section for l in reflection.lessons] == [STRATEGIES, EXAMPLES]
    expected = "| Net income | 100 | 90 | Q: What was net income in 2022? A: 90"
    assert reflection.lessons[1].content == worked_example(FIN) == expected
    unparsable = parse_reflection(FIN, reply, "Lesson: ok", True, [])
    assert unparsable.parse == "failed" and unparsable.lessons == () and unparsable.correct is True


def test_reflection_without_labels_reads_the_models_verdict():
    reply = parse_generator_reply(MC, " B")
    judged = parse_reflection(MC, reply, "Correct: yes\nLesson: Scurvy points to vitamin C every time.", None, ["str-00002"])
    assert judged.correct is True and judged.tags == (("str-00002", True),) and judged.parse == "strict"
    assert all(lesson.section == STRATEGIES for lesson in judged.lessons)  # no gold, so no worked example
    assert worked_example(MC).endswith("A: B (Vitamin C)")
    assert parse_reflection(MC, reply, "Correct: maybe", None, ["x"]).parse == "failed"


def test_used_bullets_are_the_cited_ones_or_the_ones_copied_from():
    playbook = playbook_of("Q: What was revenue in 2021? A: 14.4%", "Q: Net income in 2020? A: 90", "Read the right column.")
    shown = list(playbook.bullets.values())
    assert used_bullets(parse_generator_reply(FIN, " 14.4%"), shown) == ("str-00001",)
    assert used_bullets(parse_generator_reply(FIN, " 90 [str-00003]"), shown) == ("str-00003",)
    assert used_bullets(parse_generator_reply(FIN, " 77"), shown) == ()
    assert used_bullets(parse_generator_reply(FIN, ""), shown) == ()


def test_worked_examples_become_earlier_chat_turns_most_relevant_last():
    playbook = playbook_of(worked_example(FIN), section=EXAMPLES)
    playbook.apply(DeltaOp("ADD", section=EXAMPLES, content=worked_example(IOT)))
    playbook.apply(DeltaOp("ADD", section=STRATEGIES, content=PERCENT))
    best_first = [playbook.bullets["wor-00001"], playbook.bullets["str-00001"], playbook.bullets["wor-00002"]]
    messages = generator_messages(FIN, best_first)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == f"| Net income | 100 | 90 |\nQuestion: {FIN.question}\nReply with the answer only."
    assert messages[3]["content"] == "Answer: 90"
    assert messages[0]["content"].startswith("reading 1: f1=50\nQuestion: ")
    assert "[str-00001] " + PERCENT in messages[-1]["content"] and "wor-0000" not in messages[-1]["content"]
