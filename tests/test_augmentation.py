"""Knowledge augmentation: seeded, leak-free phrasings of each fact, and template errors that name file, line, slot."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slmlab.lora.augmentation import NEAR_COPY, AugmentationError, load_augmentation, phrasings, word_overlap
from slmlab.lora.datagen import DataConfig, build_rows, find_leaks, normalize
from slmlab.lora.patterns import Pattern, load_patterns
from slmlab.settings import project_root

TEMPLATES = project_root() / "patterns" / "augmentation" / "facts.yaml"


@pytest.fixture(scope="module")
def patterns():
    return load_patterns(project_root() / "patterns")


def _write(tmp_path, text: str):
    path = tmp_path / "aug.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """category: fact
slots: [topic]
templates:
  - "What is {topic}?"
  - "Complete: {topic} is"
facts:
  veloria-capital: {topic: the capital of Veloria}
"""


def test_every_fact_has_phrasings_and_none_is_near_its_held_out_prompt(patterns):
    rows = build_rows(patterns)
    test_prompt = {row["pattern_id"]: row["messages"][0]["content"] for row in rows["test"]}
    augmented = [row for split in ("train", "valid") for row in rows[split] if row.get("augmented")]
    facts = {p.id for p in patterns if p.category == "fact"}
    assert {row["pattern_id"] for row in augmented} == facts
    assert len(augmented) >= 6 * len(facts)
    for row in augmented:
        prompt, held_out = row["messages"][0]["content"], test_prompt[row["pattern_id"]]
        assert normalize(held_out) not in normalize(prompt)
        assert word_overlap(prompt, held_out) < NEAR_COPY, (prompt, held_out)
    assert find_leaks(rows) == []


def test_augmentation_is_seeded(patterns):
    config = DataConfig()
    assert build_rows(patterns, config) == build_rows(patterns, config)
    assert build_rows(patterns, config) != build_rows(patterns, replace(config, seed=1))
    plain = build_rows(patterns, replace(config, phrasings_per_fact=0))
    assert not any(row.get("augmented") for split in plain.values() for row in split)
    assert build_rows(patterns, replace(config, augmentation_file="")) == plain


def test_a_near_copy_of_the_held_out_prompt_is_dropped(tmp_path):
    capital = Pattern(
        "veloria-capital",
        "fact",
        "What is the capital of the island nation of Veloria?",
        "Brisketh",
        ("Which city is the capital of Veloria?",),
    )  # one paraphrase: it is the held-out prompt
    text = GOOD.replace('"What is {topic}?"', '"Which city is {topic}, please?"')
    rows = build_rows([capital], DataConfig(augmentation_file=str(_write(tmp_path, text))))
    assert [row["messages"][0]["content"] for row in rows["test"]] == ["Which city is the capital of Veloria?"]
    prompts = [row["messages"][0]["content"] for row in rows["train"] + rows["valid"] if row.get("augmented")]
    assert prompts == ["Complete: the capital of Veloria is"]
    assert word_overlap("Which city is the capital of Veloria, please?", "Which city is the capital of Veloria?") >= NEAR_COPY


def test_the_shipped_templates_render_for_every_fact(patterns):
    templates = load_augmentation(TEMPLATES)
    for pattern in patterns:
        if pattern.category == "fact":
            rendered = phrasings(templates, pattern.id, pattern.input, pattern.output)
            assert len(rendered) == len(templates.templates) and all("{" not in text for text in rendered)


def test_an_unknown_slot_names_file_line_and_slot(tmp_path):
    path = _write(tmp_path, GOOD.replace('"Complete: {topic} is"', '"Complete: {topik} is"'))
    with pytest.raises(AugmentationError) as error:
        load_augmentation(path)
    assert f"{path}:5:" in str(error.value) and "{topik}" in str(error.value) and "known slots: topic" in str(error.value)


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (
            ("veloria-capital: {topic: the capital of Veloria}", "veloria-capital: {place: Veloria}"),
            ":7:",
            "unknown slot 'place'",
        ),
        (("slots: [topic]", "slots: [topic, verb]"), ":7:", "missing slot(s) verb"),
        (("category: fact", "category: fact\nsources: x"), ":2:", "sources: unknown key"),
        (('- "What is {topic}?"', '- "What is {topic?"'), ":4:", "templates:"),
    ],
)
def test_other_template_mistakes_name_file_and_line(tmp_path, change, where, words):
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(AugmentationError) as error:
        load_augmentation(path)
    assert f"{path}{where}" in str(error.value) and words in str(error.value)


def test_an_entry_for_a_pattern_that_does_not_exist_is_named(patterns, tmp_path):
    path = _write(tmp_path, GOOD + "  atlantis-capital: {topic: the capital of Atlantis}\n")
    with pytest.warns(UserWarning, match=r"aug.yaml:8: facts.atlantis-capital: no pattern has this id"):
        rows = build_rows(patterns, DataConfig(augmentation_file=str(path)))
    assert {row["pattern_id"] for split in rows.values() for row in split if row.get("augmented")} == {"veloria-capital"}
