"""Shared answer metrics (chapter 05 uses them first): normalized exact match, token F1, choice letters, latencies."""

from __future__ import annotations

import math

import pytest

from slmlab.metrics import choice_letter, choice_match, exact_match, latency_percentiles, normalize_text, token_f1


@pytest.mark.parametrize(
    "prediction, gold",
    [("1,200", "1200"), ("1200.0", "1200"), ("$1,200.", "1200"), ("12%", "12 percent"), ("12.5 %", "12.5%"),
     ("The Eiffel Tower", "eiffel tower"), ("  Yes. ", "yes"), ("-3.50", "-3.5"), ("An apple", "apple")],
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


@pytest.mark.parametrize("reply, letter", [("B", "B"), ("(c) aspirin", "C"), ("Answer: d", "D"), ("The answer is A.", "A"),
                                           ("a) 12 mg", "A"), ("aspirin", None)])
def test_choice_letter(reply, letter):
    assert choice_letter(reply) == letter


def test_choice_match():
    assert choice_match("(B) because", "B") and not choice_match("no idea", "B")


def test_latency_percentiles():
    values = list(range(1, 101))
    assert latency_percentiles(values) == {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    assert math.isnan(latency_percentiles([])["p50"])
