"""Chapter 06 reward: every component stays in [0, 1], the weights are validated, the model-based parts
read the right tokens (tiny random Llama), and on the real model fluent text beats shuffled words."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmlab import DecodingConfig
from slmlab.errors import BackendError, ModelUnavailableError
from slmlab.mcts.reward import (
    FLUENCY_SCALE,
    KenLMScorer,
    RewardWeights,
    answer_nll,
    brevity_reward,
    episode_reward,
    exact_match_reward,
    fluency_from_nll,
    fluency_reward,
    judge_prefill,
    judge_reward,
    next_token_logprobs,
    rating_probabilities,
    score_episode,
    token_logprobs,
)

# derandomized and without an example database, so CI sees the same examples every run
PROPERTY = settings(max_examples=200, derandomize=True, database=None, deadline=None)
MODEL_PROPERTY = settings(
    max_examples=15, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
unit = st.floats(min_value=0.0, max_value=1.0)
texts = st.text(max_size=40)


# --- exact match ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("Paris", "paris", 1.0),
        ("The Paris.", "Paris", 1.0),
        ("1,200", "1200", 1.0),
        ("12 percent", "12%", 1.0),
        ("London", "Paris", 0.0),
        ("", "Paris", 0.0),
        ("Paris is the capital", "Paris", 0.0),
        ("The capital of France is Paris.", "Paris", 1.0),
        ("7 + 5 = 12.", "12", 1.0),
        ("7 + 5 = 13.", "12", 0.0),
        ("A spider has 8 legs. Insects have 6.", "8", 1.0),
        ("The capital is Paris, not Lyon.", "Lyon", 0.0),
    ],
)
def test_exact_match_reward(answer, gold, expected):
    assert exact_match_reward(answer, gold) == expected


@PROPERTY
@given(answer=texts, gold=texts)
def test_exact_match_reward_is_zero_or_one(answer, gold):
    assert exact_match_reward(answer, gold) in (0.0, 1.0)
    assert exact_match_reward(gold, gold) == 1.0


# --- the fluency mapping and brevity ---------------------------------------------------------------
def test_fluency_mapping_points():
    assert fluency_from_nll(0.0) == 1.0
    assert fluency_from_nll(FLUENCY_SCALE) == pytest.approx(math.exp(-1))
    assert fluency_from_nll(2.0, scale=2.0) == pytest.approx(math.exp(-1))
    with pytest.raises(ValueError, match="scale must be > 0"):
        fluency_from_nll(1.0, scale=0)


@PROPERTY
@given(a=st.floats(-5, 1e6), b=st.floats(-5, 1e6), scale=st.floats(0.01, 100))
def test_fluency_mapping_is_bounded_and_decreasing(a, b, scale):
    low, high = sorted((a, b))
    assert 0.0 <= fluency_from_nll(high, scale) <= fluency_from_nll(low, scale) <= 1.0


def test_brevity_points():
    assert brevity_reward(0, 10) == 1.0 and brevity_reward(5, 10) == 0.5
    assert brevity_reward(10, 10) == 0.0 and brevity_reward(25, 10) == 0.0
    with pytest.raises(ValueError, match="budget must be >= 1 and tokens_used >= 0"):
        brevity_reward(1, 0)
    with pytest.raises(ValueError, match="budget must be >= 1 and tokens_used >= 0"):
        brevity_reward(-1, 10)


@PROPERTY
@given(used=st.integers(0, 10_000), more=st.integers(0, 100), budget=st.integers(1, 5_000))
def test_brevity_is_bounded_and_non_increasing(used, more, budget):
    assert 0.0 <= brevity_reward(used + more, budget) <= brevity_reward(used, budget) <= 1.0
    assert (brevity_reward(used, budget) == 0.0) == (used >= budget)


# --- weights and the total -------------------------------------------------------------------------
def test_default_weights_are_valid():
    weights = RewardWeights()
    assert sum(weights.as_dict().values()) == pytest.approx(1.0) and list(weights.as_dict()) == [
        "exact",
        "fluency",
        "judge",
        "brevity",
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"exact": -0.1, "fluency": 0.3}, r"finite and >= 0, got exact=-0.1"),
        ({"exact": float("nan")}, r"finite and >= 0, got exact=nan"),
        ({"exact": 0.5}, r"must sum to 1, got 0.9"),
        ({"exact": 1.0, "fluency": 0.0, "judge": 0.0, "brevity": 0.1}, r"must sum to 1, got 1.1"),
    ],
)
def test_bad_weights_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardWeights(**kwargs)


raw_weights = st.tuples(*[st.floats(0, 10)] * 4).filter(lambda w: sum(w) > 1e-3)


def normalised(raw) -> RewardWeights:
    total = sum(raw)
    return RewardWeights(*(w / total for w in raw))


@PROPERTY
@given(raw=raw_weights, values=st.tuples(unit, unit, unit, unit))
def test_episode_reward_is_a_bounded_weighted_mean(raw, values):
    weights = normalised(raw)
    components = dict(zip(["exact", "fluency", "judge", "brevity"], values))
    total = episode_reward(components, weights)
    assert 0.0 <= total <= 1.0
    assert total == pytest.approx(sum(w * v for w, v in zip(weights.as_dict().values(), values)), abs=1e-9)
    assert min(values) - 1e-9 <= total <= max(values) + 1e-9


@PROPERTY
@given(raw=raw_weights, bad=st.one_of(st.floats(1.0001, 1e9), st.floats(-1e9, -0.0001), st.just(float("nan"))))
def test_episode_reward_refuses_out_of_range_components(raw, bad):
    weights = normalised(raw)
    name = max(weights.as_dict(), key=weights.as_dict().get)  # a component that carries weight
    components = {"exact": 0.5, "fluency": 0.5, "judge": 0.5, "brevity": 0.5, name: bad}
    with pytest.raises(ValueError, match=f"Reward component '{name}'"):
        episode_reward(components, weights)


def test_zero_weight_components_may_be_missing():
    weights = RewardWeights(exact=0.5, fluency=0.0, judge=0.0, brevity=0.5)
    assert episode_reward({"exact": 1.0, "brevity": 0.5, "judge": None}, weights) == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"Reward component 'brevity' \(weight 0.5\) must be in \[0, 1\], got None"):
        episode_reward({"exact": 1.0}, weights)


# --- the model-based components on the tiny random Llama --------------------------------------------
@MODEL_PROPERTY
@given(prompt=texts, answer=texts)
def test_fluency_and_judge_are_bounded(tiny_torch, prompt, answer):
    fluency = fluency_reward(tiny_torch, prompt, answer)
    judge = judge_reward(tiny_torch, prompt, answer)
    assert 0.0 <= fluency <= 1.0 and 0.0 <= judge <= 1.0
    if not answer.strip():
        assert fluency == 0.0 and judge == 0.0


def test_rating_probabilities_are_a_distribution(tiny_torch):
    probabilities = rating_probabilities(tiny_torch, "What is 2 + 3?", "5")
    assert probabilities.shape == (5,) and np.all(probabilities >= 0) and probabilities.sum() == pytest.approx(1.0)
    expected = float(np.dot(probabilities, [1, 2, 3, 4, 5]))
    assert judge_reward(tiny_torch, "What is 2 + 3?", "5") == pytest.approx((expected - 1) / 4)
    assert judge_prefill(tiny_torch.hf_tokenizer) == "Rating:"  # ' 4' is one token there


@pytest.mark.parametrize("backend", ["torch", "mlx"])
def test_log_probabilities_line_up_with_greedy_generation(backend, request):
    """Each greedy token is the argmax of the next-token distribution, so the log-probability that
    token_logprobs gives it must be that distribution's maximum (an off-by-one shows at once)."""
    model = request.getfixturevalue(f"tiny_{backend}")
    prompt = "The capital of France"
    greedy = model.generate_ids([prompt], DecodingConfig(max_new_tokens=6))[0]
    context = model.hf_tokenizer(model.render(prompt), add_special_tokens=False)["input_ids"]
    scored = token_logprobs(model, context, greedy)
    best = [float(next_token_logprobs(model, context + greedy[:i]).max()) for i in range(len(greedy))]
    assert len(greedy) > 0 and scored == pytest.approx(best, abs=1e-4)
    assert answer_nll(model, prompt, model.decode(greedy)) >= 0


def test_scoring_needs_a_known_backend():
    stranger = types.SimpleNamespace(backend="llama.cpp")
    with pytest.raises(BackendError, match="needs the torch or mlx backend, not 'llama.cpp'"):
        token_logprobs(stranger, [1], [2])
    with pytest.raises(BackendError, match="needs the torch or mlx backend"):
        next_token_logprobs(stranger, [1])


def test_score_episode_reports_every_component(tiny_torch):
    scores = score_episode(tiny_torch, "What is the capital of France?", "Paris", "paris", 3, 12)
    assert set(scores) == {"exact", "fluency", "judge", "brevity", "total"}
    assert scores["exact"] == 1.0 and scores["brevity"] == 0.75
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    weights = RewardWeights()
    components = {k: v for k, v in scores.items() if k != "total"}
    assert scores["total"] == pytest.approx(episode_reward(components, weights))


def test_score_episode_skips_zero_weights_and_uses_kenlm_when_given(tiny_torch):
    weights = RewardWeights(exact=0.0, fluency=0.5, judge=0.0, brevity=0.5)
    scores = score_episode(tiny_torch, "Q?", "an answer", None, 0, 10, weights, kenlm=lambda text: 0.25)
    assert scores == {"exact": None, "fluency": 0.25, "judge": None, "brevity": 1.0, "total": pytest.approx(0.625)}
    with pytest.raises(ValueError, match="Reward component 'exact'"):
        score_episode(tiny_torch, "Q?", "an answer", None, 0, 10)  # exact counts, but there is no gold


# --- KenLM (optional) ------------------------------------------------------------------------------
def test_kenlm_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kenlm", None)  # makes `import kenlm` fail, installed or not
    with pytest.raises(ModelUnavailableError, match=r"needs the 'kenlm' package: `pip install kenlm` builds it from"):
        KenLMScorer(tmp_path / "model.arpa")


class _FakeKenLM:
    """Stands in for kenlm.Model: log10 probability -1 per word, sentence end included."""

    def __init__(self, path: str) -> None:
        self.path = path

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        return -1.0 * (len(sentence.split()) + eos)


def test_kenlm_scorer_maps_per_word_log10_like_fluency(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kenlm", types.SimpleNamespace(Model=_FakeKenLM))
    with pytest.raises(ModelUnavailableError, match="No KenLM model at"):
        KenLMScorer(tmp_path / "missing.arpa")
    arpa = tmp_path / "model.arpa"
    arpa.write_text("stand-in")
    scorer = KenLMScorer(arpa, scale=3.0)
    assert scorer.log10_per_word("paris is  nice") == pytest.approx(-1.0)
    assert scorer("paris is nice") == pytest.approx(math.exp(-math.log(10) / 3.0))
    assert scorer("   ") == 0.0


_ARPA = """\\data\\
ngram 1=5
ngram 2=4

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-0.5\t</s>\t0
-0.4\tparis\t-0.1
-0.6\tfrance\t-0.1

\\2-grams:
-0.2\t<s> paris
-0.3\tparis </s>
-0.25\tparis france
-0.1\tfrance </s>

\\end\\
"""


def test_kenlm_scores_a_real_arpa_file(tmp_path):
    pytest.importorskip("kenlm")
    arpa = tmp_path / "bigram.arpa"  # KenLM reads bigram models and up
    arpa.write_text(_ARPA)
    scorer = KenLMScorer(arpa)
    assert scorer.log10_per_word("paris") == pytest.approx((-0.2 - 0.3) / 2, abs=1e-4)  # <s> paris, paris </s>
    # <s> paris, paris france, france </s>; and <s> zzz (backoff -0.3, <unk> -1.0), zzz qqq (-1.0), qqq </s> (-0.5)
    assert scorer.log10_per_word("paris france") == pytest.approx((-0.2 - 0.25 - 0.1) / 3, abs=1e-4)
    assert scorer.log10_per_word("zzz qqq") == pytest.approx((-1.3 - 1.0 - 0.5) / 3, abs=1e-4)
    assert 0.0 < scorer("paris france") <= 1.0 and scorer("zzz qqq") < scorer("paris france")


# --- the real model ---------------------------------------------------------------------------------
@pytest.mark.real_model
def test_real_model_prefers_fluent_text_and_judges_in_range(real_torch):
    question = "What is the capital of France?"
    fluent, shuffled = "Paris is the capital of France.", "France. capital Paris of the is"
    assert fluency_reward(real_torch, question, fluent) > fluency_reward(real_torch, question, shuffled) + 0.2
    greedy = real_torch.chat(question, DecodingConfig(max_new_tokens=20))
    assert fluency_reward(real_torch, question, greedy) > fluency_reward(real_torch, question, shuffled)
    assert judge_prefill(real_torch.hf_tokenizer) == "Rating: "  # SmolLM2 spells ' 4' as two tokens
    for answer in (fluent, shuffled):
        assert 0.0 <= judge_reward(real_torch, question, answer) <= 1.0
