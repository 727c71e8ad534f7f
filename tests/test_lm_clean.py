"""Corpus cleaning for chapter 07: normalization, length and non-text filters, exact and near-duplicate removal,
and a report whose numbers add up."""

from __future__ import annotations

import random
import unicodedata

import pytest

from slmlab.tinylm.clean import REPORT_COLUMNS, CleanConfig, clean_corpus, clean_text, word_shingles
from slmlab.tinylm.corpus import Document

WORDS = [
    "river",
    "stone",
    "model",
    "token",
    "window",
    "garden",
    "letter",
    "number",
    "signal",
    "market",
    "paper",
    "engine",
    "light",
    "field",
    "music",
    "table",
    "corner",
    "story",
    "water",
    "forest",
    "bridge",
    "silver",
    "winter",
    "planet",
    "voice",
]


def _text(seed: int, n_words: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + "\n"


def _one_word_changed(text: str) -> str:
    words = text.split()
    words[100] = "zebra"
    return " ".join(words) + "\n"


def _corpus() -> list[Document]:
    base = _text(1)
    return [
        Document("base", base),
        Document("exact-copy", base),
        Document("near-copy", _one_word_changed(base)),
        Document("different", _text(2)),
        Document("short", "tiny\n"),
        Document("binary", "".join(chr(code) for code in random.Random(0).choices(range(256), k=600))),
        Document("replacement", _text(3).replace("e", "\ufffd")),
    ]


def test_each_step_removes_what_it_should():
    result = clean_corpus(_corpus(), CleanConfig(min_chars=50))
    assert [d.source for d in result.documents] == ["base", "different"]
    reasons = dict(result.removed)
    assert reasons["exact-copy"] == "exact duplicate of base"
    assert reasons["near-copy"].startswith("near duplicate of base")
    assert reasons["short"].startswith("too short")
    assert reasons["binary"].startswith("non-text") and reasons["replacement"].startswith("non-text")


def test_report_numbers_add_up():
    documents = _corpus()
    result = clean_corpus(documents, min_chars=50)
    report = result.report
    assert tuple(report.columns) == REPORT_COLUMNS
    assert list(report["step"]) == ["normalize", "length", "non-text", "exact duplicates", "near duplicates"]
    assert list(report["removed"]) == [0, 1, 2, 1, 1]
    assert (report["documents_in"] - report["documents_out"] == report["removed"]).all()
    assert list(report["documents_in"][1:]) == list(report["documents_out"][:-1])
    assert list(report["bytes_in"][1:]) == list(report["bytes_out"][:-1])
    assert report["documents_in"].iloc[0] == len(documents)
    assert report["bytes_in"].iloc[0] == sum(d.n_bytes for d in documents)
    assert report["documents_out"].iloc[-1] == len(result.documents)
    assert report["bytes_out"].iloc[-1] == sum(d.n_bytes for d in result.documents)
    assert report["removed"].sum() == len(result.removed)


def test_normalization():
    decomposed = unicodedata.normalize("NFD", "Caf\u00e9 na\u00efve")
    assert decomposed != "Caf\u00e9 na\u00efve"
    text = f"{decomposed}   \r\nline two\t\r\n\n\n\n\n\nline three\rend  "
    assert clean_text(text) == "Caf\u00e9 na\u00efve\nline two\n\n\nline three\nend\n"
    assert clean_text(text, CleanConfig(max_blank_lines=0)) == "Caf\u00e9 na\u00efve\nline two\nline three\nend\n"
    result = clean_corpus([Document("nfd", text), Document("blank", " \n\t\n")], min_chars=1)
    assert result.documents == [Document("nfd", clean_text(text))]
    assert result.removed == [("blank", "empty after normalization")]


def _many_words_changed(text: str, every: int) -> str:
    words = text.split()
    return " ".join("zebra" if index % every == 0 else word for index, word in enumerate(words)) + "\n"


def test_near_duplicate_threshold_and_seed_are_fields():
    documents = [Document("base", _text(1)), Document("edited", _many_words_changed(_text(1), every=20))]
    assert [d.source for d in clean_corpus(documents).documents] == ["base", "edited"]
    assert [d.source for d in clean_corpus(documents, near_duplicate_threshold=0.4).documents] == ["base"]
    with pytest.raises(ValueError, match="near_duplicate_threshold=0.99"):
        clean_corpus(documents, near_duplicate_threshold=0.99)
    first = clean_corpus(_corpus(), min_chars=50, seed=7)
    second = clean_corpus(_corpus(), min_chars=50, seed=7)
    assert first.documents == second.documents and first.removed == second.removed
    assert first.report.equals(second.report)


def test_word_shingles():
    assert word_shingles("a b c d", 2) == {"a b", "b c", "c d"}
    assert word_shingles("a b", 5) == {"a b"}
