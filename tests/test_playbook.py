"""The ACE playbook (chapter 05, first part): delta operations, JSONL and the ace-agent text format."""

from __future__ import annotations

import json
import re

import pytest

from slmlab.ace import DeltaOp, Playbook, PlaybookError, read_playbook, write_playbook


@pytest.fixture
def playbook():
    book = Playbook()
    book.extend(
        [
            DeltaOp("ADD", section="strategies", content="Compute percentage change as (new - old) / old."),
            DeltaOp("ADD", section="strategies", content="Read the table header before looking up a value."),
            DeltaOp("ADD", section="common mistakes", content="Do not confuse millions with thousands."),
        ],
        now=1.0,
    )
    return book


def test_add_numbers_ids_per_section(playbook):
    assert list(playbook.bullets) == ["str-00001", "str-00002", "com-00001"]
    assert playbook.bullets["str-00001"].created == 1.0


def test_update_remove_and_tag(playbook):
    playbook.apply(DeltaOp("UPDATE", bullet_id="str-00002", content="Read headers first."), now=2.0)
    assert playbook.bullets["str-00002"].content == "Read headers first." and playbook.bullets["str-00002"].updated == 2.0
    playbook.tag("str-00001", helpful=True)
    playbook.tag("str-00001", helpful=False)
    assert (playbook.bullets["str-00001"].helpful, playbook.bullets["str-00001"].harmful) == (1, 1)
    playbook.apply(DeltaOp("REMOVE", bullet_id="com-00001"))
    assert "com-00001" not in playbook.bullets
    assert playbook.apply(DeltaOp("ADD", section="strategies", content="x")).id == "str-00003"


def test_merge_keeps_the_first_and_sums_counters(playbook):
    playbook.tag("str-00001", True)
    playbook.tag("str-00002", True)
    playbook.tag("str-00002", False)
    merged = playbook.apply(DeltaOp("MERGE", merge_ids=("str-00001", "str-00002"), content="Combined advice."))
    assert merged.id == "str-00001" and merged.content == "Combined advice."
    assert (merged.helpful, merged.harmful) == (2, 1)
    assert "str-00002" not in playbook.bullets


@pytest.mark.parametrize(
    "delta, message",
    [
        (DeltaOp("REWRITE"), "Unknown operation"),
        (DeltaOp("ADD", section="s", content="  "), "non-empty content"),
        (DeltaOp("UPDATE", bullet_id="nope-00001", content="x"), "No bullet"),
        (DeltaOp("REMOVE", bullet_id="nope-00001"), "No bullet"),
        (DeltaOp("MERGE", merge_ids=("str-00001",)), "at least two"),
    ],
)
def test_bad_operations_are_refused(playbook, delta, message):
    before = dict(playbook.bullets)
    with pytest.raises(PlaybookError, match=message):
        playbook.apply(delta)
    assert playbook.bullets == before


def test_jsonl_round_trip(playbook, tmp_path):
    path = playbook.save(tmp_path / "playbook.jsonl")
    assert Playbook.load(path).bullets == playbook.bullets


def test_corrupt_line_is_reported_and_file_left_alone(playbook, tmp_path):
    path = playbook.save(tmp_path / "playbook.jsonl")
    lines = path.read_text().splitlines()
    lines.insert(1, '{"id": "str-00009", "section": ')
    corrupted = "\n".join(lines) + "\n"
    path.write_text(corrupted)
    loaded = Playbook.load(path)
    assert len(loaded) == 3
    assert loaded.problems and loaded.problems[0].startswith(f"{path}:2:")
    assert path.read_text() == corrupted


def test_text_format_round_trip(playbook):
    playbook.tag("str-00001", True)
    text = playbook.to_text()
    assert "## STRATEGIES\n[str-00001] helpful=1 harmful=0 :: Compute percentage change" in text
    again = Playbook.from_text(text)
    assert {k: (b.section, b.content, b.helpful, b.harmful) for k, b in again.bullets.items()} == {
        k: (b.section, b.content, b.helpful, b.harmful) for k, b in playbook.bullets.items()
    }


def test_text_format_reports_stray_lines():
    book = Playbook.from_text("## FORMULAS\n[for-00001] helpful=2 harmful=0 :: ratio = a / b\nrandom note\n", source="pb.txt")
    assert book.bullets["for-00001"].helpful == 2 and book.bullets["for-00001"].section == "formulas"
    assert book.problems == ["pb.txt:3: not a bullet or section header"]
    json.dumps([b.__dict__ for b in book.bullets.values()])


def test_ids_are_never_reused_after_the_highest_bullet_is_removed():
    playbook = Playbook()
    first = playbook.apply(DeltaOp("ADD", section="strategies", content="one"))
    second = playbook.apply(DeltaOp("ADD", section="strategies", content="two"))
    playbook.apply(DeltaOp("REMOVE", bullet_id=second.id))
    third = playbook.apply(DeltaOp("ADD", section="strategies", content="three"))
    assert (first.id, second.id, third.id) == ("str-00001", "str-00002", "str-00003")
    reloaded = Playbook(dict(playbook.bullets))
    reloaded.reserve(["str-00007", "wor-00002", "not-an-id"])
    assert reloaded.next_id("strategies") == "str-00008" and reloaded.next_id("worked examples") == "wor-00003"


@pytest.mark.parametrize("name", ["playbook.jsonl", "playbook.txt", "playbook.md"])
def test_either_format_is_read_and_written_by_its_file_name(playbook, tmp_path, name):
    path = write_playbook(playbook, tmp_path / name)
    text_format = name != "playbook.jsonl"
    assert path.read_text().startswith("## STRATEGIES") == text_format
    again = read_playbook(path)
    assert {k: (b.section, b.content) for k, b in again.bullets.items()} == {
        k: (b.section, b.content) for k, b in playbook.bullets.items()
    }


@pytest.mark.parametrize(
    "name, text, line, why",
    [
        ("start.jsonl", '{"id": "str-00001", "section": "s", "content": "c"}\nnot json\n', 2, "not a playbook bullet"),
        ("start.jsonl", '\n{"id": "str-00001", "section": "s"}\n', 2, "not a playbook bullet"),
        ("start.txt", "## STRATEGIES\n[str-00001] helpful=0 harmful=0 :: ok\nstray prose\n", 3, "not a bullet or section header"),
    ],
)
def test_strict_reading_refuses_the_first_bad_line_by_file_and_line(tmp_path, name, text, line, why):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlaybookError, match=re.escape(f"{path}:{line}: {why}")):
        read_playbook(path, strict=True)
    assert read_playbook(path).problems  # without strict: reported, the good lines load


def test_a_missing_playbook_file_is_named(tmp_path):
    for name in ("gone.jsonl", "gone.txt"):
        with pytest.raises(PlaybookError, match=f"{re.escape(str(tmp_path / name))}: no such playbook file"):
            read_playbook(tmp_path / name)
