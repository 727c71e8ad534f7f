"""The verdict of chapter 06: the MCTS controller's accuracy gain over greedy decoding and its token cost."""

from __future__ import annotations

import pandas as pd
import pytest

from slmlab.mcts.evaluate import conclusion, conclusion_figures, summarize_evaluation


def frame(mcts_correct: list[bool], mcts_tokens: int = 30) -> pd.DataFrame:
    """Three items answered by greedy (one right, 10 tokens each) and by mcts."""
    rows = []
    for index, ok in enumerate(mcts_correct):
        base = {
            "sample_id": f"q{index}",
            "question": "?",
            "gold": "1",
            "pred": "",
            "answer_tokens": 5,
            "latency_ms": 1.0,
            "actions": "",
        }
        rows.append({**base, "method": "greedy", "correct": index == 0, "tokens_spent": 10})
        rows.append({**base, "method": "mcts", "correct": ok, "tokens_spent": mcts_tokens})
    return pd.DataFrame(rows)


def test_a_gain_is_reported_with_its_token_cost():
    table = summarize_evaluation(frame([True, True, False]))
    figures = conclusion_figures(table)
    assert figures == {"items": 3, "gain": pytest.approx(33.4), "token_cost": pytest.approx(3.0), "beats": True}
    assert conclusion(table) == (
        "On these 3 held-out questions the MCTS controller **beats** greedy decoding: "
        "+33.4 points of exact match, at 3.0× the tokens."
    )


@pytest.mark.parametrize("mcts_correct, gain", [([True, False, False], "+0.0"), ([False, False, False], "-33.3")])
def test_no_gain_does_not_beat(mcts_correct, gain):
    table = summarize_evaluation(frame(mcts_correct, mcts_tokens=15))
    assert conclusion_figures(table)["beats"] is False
    assert f"**does not beat** greedy decoding: {gain} points of exact match, at 1.5× the tokens." in conclusion(table)
