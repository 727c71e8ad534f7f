"""Chapter 07 evaluation: metrics against known values, the bigram baseline, the shared scoring convention and
BLEU / ROUGE of continuations, on a tiny random Llama and hand-made models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from slmlab.errors import CorpusError
from slmlab.testing import make_tiny_tokenizer
from slmlab.tinylm.evaluation import (
    BigramModel,
    LMScores,
    bits_per_byte,
    continuation_examples,
    continuation_samples,
    continuation_scores,
    evaluate_lm,
    fit_bigram,
    perplexity,
    prediction_windows,
    score_continuations,
    token_byte_lengths,
)

DOCUMENTS = [
    "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
    "The capital of France is Paris. Héllo wörld, naïve café — ünïcödé 🙂 text.",
    "A small language model learns patterns from examples. " * 6,
    "x",
]


@dataclass(frozen=True)
class Doc:
    source: str
    text: str


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


class ZeroLogits(torch.nn.Module):
    """A uniform causal LM: every logit is zero, shaped like a transformers output."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros((*input_ids.shape, self.vocab_size)))


def test_metric_helpers_match_known_values():
    assert bits_per_byte(math.log(2) * 8, 8) == pytest.approx(1.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(7)) == pytest.approx(7.0)
    assert perplexity(1e6) == math.inf
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)
    scores = LMScores.from_totals(math.log(4) * 10, 10, 20)
    assert scores.as_dict() == pytest.approx(
        {"loss_nats_per_token": math.log(4), "perplexity": 4.0, "bits_per_byte": 1.0, "tokens": 10, "bytes": 20}
    )


def test_windows_predict_every_token_once_and_count_the_text_bytes(tokenizer):
    windows = prediction_windows(tokenizer, DOCUMENTS, context_length=8)
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in DOCUMENTS]
    eos = tokenizer.eos_token_id
    targets = np.concatenate([w.targets for w in windows])
    assert targets.tolist() == [token for ids in encoded for token in [*ids, eos]]
    assert all(len(w.inputs) == len(w.targets) <= 8 for w in windows)
    assert all((w.inputs[1:] == w.targets[:-1]).all() for w in windows)  # targets are the inputs shifted by one
    lengths = token_byte_lengths(tokenizer)
    assert lengths[eos] == 0
    assert int(lengths[targets].sum()) == sum(len(text.encode("utf-8")) for text in DOCUMENTS)
    capped = prediction_windows(tokenizer, DOCUMENTS, context_length=8, max_tokens=21)
    assert np.concatenate([w.targets for w in capped]).tolist() == targets[:21].tolist()


def test_a_uniform_model_has_the_log_of_the_vocabulary_as_loss(tokenizer):
    vocab = len(tokenizer)
    scores = evaluate_lm(ZeroLogits(vocab), tokenizer, [Doc("a.py", t) for t in DOCUMENTS], context_length=16, batch_size=3)
    assert scores.loss_nats_per_token == pytest.approx(math.log(vocab), rel=1e-6)
    assert scores.perplexity == pytest.approx(vocab, rel=1e-5)
    assert scores.bits_per_byte == pytest.approx(scores.tokens * math.log2(vocab) / scores.bytes, rel=1e-6)


def test_the_bigram_learns_a_cycle_and_continues_it():
    ids = np.tile([0, 1, 2], 300)
    bigram = BigramModel(3, smoothing=1e-6).fit(ids)
    assert bigram.pairs == len(ids) - 1
    assert -np.mean(bigram.log_prob(ids[:-1], ids[1:])) < 1e-4
    assert bigram.greedy_continuation([5 % 3, 0], 7) == [1, 2, 0, 1, 2, 0, 1]
    assert bigram.greedy_continuation([2], 5, stop_id=1) == [0]


def test_add_k_smoothing_matches_hand_computed_probabilities():
    bigram = BigramModel(4, smoothing=0.5).fit([0, 1, 0, 2, 0, 1])  # pairs: 01 x2, 10, 02, 20
    assert bigram.log_prob(0, 1) == pytest.approx(math.log(2.5 / (3 + 2)))
    assert bigram.log_prob(0, 0) == pytest.approx(math.log(0.5 / 5))
    assert bigram.log_prob(1, 0) == pytest.approx(math.log(1.5 / (1 + 2)))
    assert bigram.log_prob(3, 2) == pytest.approx(math.log(0.25))  # a row never seen is uniform
    rows = np.exp(bigram.log_prob(np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4))).reshape(4, 4)
    assert rows.sum(axis=1) == pytest.approx(np.ones(4))
    assert bigram.greedy_continuation([3], 2) == [0, 1]  # unseen row: the most frequent token, then its best next
    again = BigramModel(4, smoothing=0.5).fit([0, 1, 0, 2]).fit([0, 1])  # counts add up across calls
    assert again.log_prob(0, 1) == pytest.approx(math.log(2.5 / 5))


def test_evaluate_lm_on_the_tiny_llama_is_deterministic_and_matches_the_bigram_positions(tiny_torch):
    model, tokenizer = tiny_torch.model, tiny_torch.tokenizer
    first = evaluate_lm(model, tokenizer, DOCUMENTS, context_length=16, batch_size=4)
    assert first == evaluate_lm(model, tokenizer, DOCUMENTS, context_length=16, batch_size=4)
    one_by_one = evaluate_lm(model, tokenizer, DOCUMENTS, context_length=16, batch_size=1)
    assert one_by_one.loss_nats_per_token == pytest.approx(first.loss_nats_per_token, rel=1e-5)  # padding is masked
    assert first.bytes == sum(len(text.encode("utf-8")) for text in DOCUMENTS)
    assert first.tokens == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in DOCUMENTS)
    assert 0 < first.loss_nats_per_token < 2 * math.log(len(tokenizer))
    bigram = fit_bigram(tokenizer, DOCUMENTS)
    baseline = bigram.evaluate(tokenizer, DOCUMENTS, context_length=16)
    assert (baseline.tokens, baseline.bytes) == (first.tokens, first.bytes)
    assert baseline.loss_nats_per_token < first.loss_nats_per_token  # counted on these very documents
    capped = evaluate_lm(model, tokenizer, DOCUMENTS, context_length=16, max_tokens=30)
    capped_bigram = bigram.evaluate(tokenizer, DOCUMENTS, context_length=16, max_tokens=30)
    assert capped.tokens == capped_bigram.tokens == 30 and capped.bytes == capped_bigram.bytes


class OracleLM:
    """An slmlab-style model whose greedy continuation is the true next text."""

    def __init__(self, answers: dict[str, list[int]]) -> None:
        self.answers = answers

    def generate_ids(self, prompts, config=None, chat=True, progress=False):
        assert not chat and config.strategy == "greedy"
        return [self.answers[p][: config.max_new_tokens] for p in prompts]


def test_continuations_of_the_truth_score_full_marks_next_to_the_bigram(tokenizer):
    documents = [DOCUMENTS[2], DOCUMENTS[0] * 3]
    settings = dict(prefix_tokens=8, continuation_tokens=12, samples=6, seed=3)
    samples = continuation_samples(tokenizer, documents, **settings)
    assert samples == continuation_samples(tokenizer, documents, **settings)  # seeded
    assert all(len(s.prefix_ids) == 8 and len(s.truth_ids) == 12 for s in samples)
    answers = {
        tokenizer.decode(s.prefix_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False): s.truth_ids for s in samples
    }
    bigram = fit_bigram(tokenizer, DOCUMENTS[1:2])
    scores = continuation_scores(OracleLM(answers), tokenizer, documents, bigram=bigram, **settings)
    assert list(scores.index) == ["model", "bigram"]
    assert list(scores.columns) == ["bleu", "rougeL", "rouge1", "rouge2", "samples"]
    assert scores.loc["model", "bleu"] == pytest.approx(100.0)
    assert scores.loc["model", ["rougeL", "rouge1", "rouge2"]].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert scores.loc["bigram", "bleu"] < 100 and scores["samples"].tolist() == [6, 6]
    examples = continuation_examples(OracleLM(answers), tokenizer, documents, **settings)
    assert (examples["model"] == examples["truth"]).all() and "bigram" not in examples.columns
    assert examples["truth"].str.startswith(" ").any() or examples["truth"].str.contains("\n").any()  # raw text


def test_continuations_of_the_tiny_llama_run_through_the_generation_api(tiny_torch):
    tokenizer = tiny_torch.tokenizer
    bigram = fit_bigram(tokenizer, DOCUMENTS)
    examples = continuation_examples(
        tiny_torch, tokenizer, [DOCUMENTS[2]], prefix_tokens=6, continuation_tokens=5, samples=3, bigram=bigram
    )
    assert list(examples.columns) == ["document", "offset", "prefix", "truth", "model", "bigram"]
    scores = score_continuations(examples)
    assert scores["samples"].tolist() == [3, 3] and ((scores["bleu"] >= 0) & (scores["bleu"] <= 100)).all()
    with pytest.raises(CorpusError, match="no held-out document"):
        continuation_samples(tokenizer, ["short"], prefix_tokens=6, continuation_tokens=5)
