"""The test-time value of chapter 06 on hand-made branch sets: answers (and the model's likelihoods of them) in,
self-consistency values, the majority branch and the stopping rule out."""

from __future__ import annotations

import math

import pytest

from slmlab.mcts.consistency import (
    AnswerPool,
    ConsistencySettings,
    answer_key,
    answer_shares,
    consistency_values,
    majority_answer,
    settled,
    vote_weight,
)


@pytest.mark.parametrize(
    "reply, key",
    [
        ("7 + 5 = 12.", "12"),
        ("The answer is 1,024. Then 3.", "1024"),
        ("The capital of Japan is Tokyo.", "tokyo"),
        ("Tokyo, of course", "tokyo"),
        ("12", "12"),
        ("", ""),
        ("  ", ""),
    ],
)
def test_answer_key_finds_the_final_answer_without_a_gold(reply, key):
    assert answer_key(reply) == key


def test_equal_votes_give_each_branch_its_answers_share():
    answers = ["12", "12", "13", "12"]
    assert consistency_values(answers) == pytest.approx([0.75, 0.75, 0.25, 0.75])
    assert majority_answer(answers) == 0


def test_unfinished_branches_get_the_prior_and_do_not_vote():
    answers = ["4", None, "5", None]
    assert consistency_values(answers, prior=0.3) == pytest.approx([0.5, 0.3, 0.5, 0.3])
    assert consistency_values([None, None]) == [0.5, 0.5]
    assert majority_answer([None, None]) is None
    with pytest.raises(ValueError, match="prior"):
        consistency_values(answers, prior=1.5)


def test_likelihood_weights_let_fluent_replies_outvote_rambling_ones():
    answers = ["8", "8", "24"]
    fluent, rambling = math.log(0.9), math.log(0.1)
    values = consistency_values(answers, [rambling, rambling, fluent])
    assert values == pytest.approx([0.2 / 1.1, 0.2 / 1.1, 0.9 / 1.1])
    assert majority_answer(answers, [rambling, rambling, fluent]) == 2
    assert majority_answer(answers) == 0  # unweighted, the two agreeing replies win
    assert majority_answer(answers, [rambling, rambling, fluent], sharpness=0) == 0
    assert majority_answer(["8", "8", "24"], [math.log(0.5)] * 2 + [math.log(0.8)], sharpness=4) == 2  # 0.41 > 2 x 0.06


def test_ties_go_to_the_answer_seen_first_and_blank_answers_never_win():
    assert majority_answer(["b", "a", "a", "b"]) == 0
    assert answer_shares(["", "", "3"]) == {"": 0.0, "3": pytest.approx(1 / 3)}
    assert majority_answer(["", "", "3"]) == 2


def test_vote_weights_are_geometric_mean_probabilities_to_the_sharpness():
    assert vote_weight(None) == 1.0 and vote_weight(0.0) == 1.0 and vote_weight(float("-inf")) == 0.0
    assert vote_weight(math.log(0.25)) == pytest.approx(0.25)
    assert vote_weight(math.log(0.5), sharpness=4) == pytest.approx(0.0625)
    assert vote_weight(float("-inf"), sharpness=0) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        vote_weight(float("nan"))
    with pytest.raises(ValueError, match="2 log-probabilities"):
        answer_shares(["1"], [0.0, 0.0])


@pytest.mark.parametrize(
    "answers, expected",
    [
        (["7", "7", "7"], True),  # three finished, all agree
        (["7", "7"], False),  # too few finished
        (["7", "7", "8"], False),  # 2/3 < 0.75
        (["7", "7", "7", "8"], True),  # exactly 0.75
        (["7", None, "7", None, "7"], True),  # unfinished branches do not count
        (["", "", ""], False),  # agreeing on nothing is no answer
    ],
)
def test_the_search_settles_when_finished_branches_agree(answers, expected):
    assert settled(answers, min_finished=3, share=0.75) is expected


def test_the_pool_counts_each_branch_once_and_keeps_its_state():
    pool = AnswerPool(ConsistencySettings(min_finished=3, share=0.6, max_finished=5))
    pool.add("It is 12.", math.log(0.5), state="a")
    pool.add("It is 12.", math.log(0.5), state="a")  # the same branch scored again
    assert pool.answers == ["12"] and not pool.settled()
    pool.add("It is 12.", math.log(0.5), state="b")  # another branch with the same words: an agreeing vote
    pool.add("13", math.log(0.5), state="c")
    assert pool.value("twelve is 12") == pytest.approx(2 / 3) and pool.value("99") == 0.0
    assert pool.states[pool.best()] == "a" and pool.settled()
    split = AnswerPool(ConsistencySettings(min_finished=1, max_finished=3))
    for index, text in enumerate(["1", "2"]):
        split.add(text, 0.0, state=index)
    assert not split.settled()
    split.add("3", 0.0, state=2)
    assert split.settled()  # three finished branches disagree: the budget of finished branches is spent
    plain = AnswerPool(ConsistencySettings(sharpness=0.0))
    plain.add("5", math.log(0.01))
    plain.add("6", math.log(0.9))
    plain.add("5", math.log(0.01))
    assert plain.value("5") == pytest.approx(2 / 3)  # sharpness 0: every vote counts alike
    with pytest.raises(ValueError, match="min_finished"):
        ConsistencySettings(min_finished=0)
    with pytest.raises(ValueError, match="max_finished"):
        ConsistencySettings(min_finished=4, max_finished=3)


# --- wired into the search at test time (tiny random model) -----------------------------------------------------
def test_a_test_time_search_answers_with_the_majority_branch_and_stops_once_settled(tiny_torch):
    from slmlab.mcts.lm_env import EnvConfig
    from slmlab.mcts.qa import make_qa_items
    from slmlab.mcts.selfplay import SearchSettings, UniformEvaluator, search_episode

    item = make_qa_items(1, seed=3)[0]
    config, search = EnvConfig(span_tokens=3, budget=6), SearchSettings(simulations=4, parallel_leaves=2)
    full = search_episode(
        tiny_torch,
        item,
        UniformEvaluator(),
        config,
        search,
        use_gold=False,
        consistency=ConsistencySettings(min_finished=50, max_finished=50),
    )  # never settles
    assert full.final.is_terminal() and 0.0 <= full.reward <= 1.0
    assert full.actions[-1] == "stop" and full.visible_text == full.final.visible_text
    early = search_episode(
        tiny_torch,
        item,
        UniformEvaluator(),
        config,
        search,
        use_gold=False,
        consistency=ConsistencySettings(min_finished=1, share=0.01),
    )  # settles on the first branch
    assert early.final.is_terminal() and early.reward > 0 and early.fed_tokens <= full.fed_tokens
    with_gold = search_episode(
        tiny_torch, item, UniformEvaluator(), config, search, use_gold=True, consistency=ConsistencySettings()
    )
    plain = search_episode(tiny_torch, item, UniformEvaluator(), config, search, use_gold=True)
    assert (with_gold.visible_text, with_gold.reward) == (plain.visible_text, plain.reward)  # self-play keeps its reward
