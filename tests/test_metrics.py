"""Shared answer metrics (chapter 05 uses them first): normalized exact match, token F1, choice letters, latencies."""

from __future__ import annotations

import math

import pytest

from slmlab.metrics import (
    choice_letter,
    choice_match,
    exact_match,
    latency_percentiles,
    normalize_text,
    reply_agreement,
    token_f1,
)


@pytest.mark.parametrize(
    "prediction, gold",
    [
        ("1,200", "1200"),
        ("1200.0", "1200"),
        ("$1,200.", "1200"),
        ("12%", "12 percent"),
        ("12.5 %", "12.5%"),
        ("The Eiffel Tower", "eiffel tower"),
        ("  Yes. ", "yes"),
        ("-3.50", "-3.5"),
        ("An apple", "apple"),
    ],
)
def test_same_answer_in_other_clothes(prediction, gold):
    assert exact_match(prediction, gold), (normalize_text(prediction), normalize_text(gold))


@pytest.mark.parametrize("prediction, gold", [("1,201", "1200"), ("12%", "1.2%"), ("no", "yes"), ("0.5", "5")])
def test_different_answers_stay_different(prediction, gold):
    assert not exact_match(prediction, gold)


def test_token_f1():
    assert token_f1("the red car", "red car") == 1.0
    assert token_f1("red bike", "red car") == pytest.approx(0.5)
    assert token_f1("blue", "red car") == 0.0
    assert token_f1("", "") == 1.0


@pytest.mark.parametrize(
    "reply, letter",
    [("B", "B"), ("(c) aspirin", "C"), ("Answer: d", "D"), ("The answer is A.", "A"), ("a) 12 mg", "A"), ("aspirin", None)],
)
def test_choice_letter(reply, letter):
    assert choice_letter(reply) == letter


def test_choice_match():
    assert choice_match("(B) because", "B") and not choice_match("no idea", "B")


def test_latency_percentiles():
    values = list(range(1, 101))
    assert latency_percentiles(values) == {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    assert math.isnan(latency_percentiles([])["p50"])


# SQuAD-style pairs where our normaliser and SQuAD's agree (no numbers, percent signs, full stops or hyphens,
# which ours canonicalises on purpose): case, articles, commas and other punctuation, extra spaces, word overlap.
SQUAD_PAIRS = [
    ("Paris", "paris"),
    ("The Eiffel Tower", "eiffel tower"),
    ("an apple, a pear", "apple pear"),
    ("blue whale!", "the blue whale"),
    ("red  green blue", "green blue yellow"),
    ("Mount Everest", "K2"),
    ("the cat sat on the mat", "a cat on a mat"),
    ("Yes", "no"),
]


@pytest.mark.parametrize(("prediction", "gold"), SQUAD_PAIRS)
def test_exact_match_and_f1_agree_with_torchmetrics_squad(prediction, gold):
    from torchmetrics.functional.text import squad

    reference = squad(
        [{"prediction_text": prediction, "id": "q"}], [{"answers": {"answer_start": [0], "text": [gold]}, "id": "q"}]
    )
    assert exact_match(prediction, gold) == (float(reference["exact_match"]) == 100.0)
    assert token_f1(prediction, gold) == pytest.approx(float(reference["f1"]) / 100.0, abs=1e-6)


def test_numbers_and_percentages_match_where_squad_normalisation_does_not():
    from torchmetrics.functional.text import squad

    for prediction, gold in (("1,200.50", "1200.5"), ("12 percent", "12%"), ("1200.0", "1200")):
        reference = squad(
            [{"prediction_text": prediction, "id": "q"}], [{"answers": {"answer_start": [0], "text": [gold]}, "id": "q"}]
        )
        assert exact_match(prediction, gold) and float(reference["exact_match"]) == 0.0


def test_reply_agreement_counts_identical_replies_and_their_common_prefix():
    agreement = reply_agreement(["Paris", "The cat sat", "abcd"], ["Paris", "The dog sat", "wxyz"])
    assert agreement["identical"] == 1 and agreement["total"] == 3 and agreement["differing_prompts"] == [1, 2]
    assert agreement["mean_common_prefix_share"] == round((1 + 4 / 11 + 0) / 3, 3)
    assert reply_agreement([], [])["mean_common_prefix_share"] == 1.0
