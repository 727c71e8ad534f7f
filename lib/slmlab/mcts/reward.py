"""The episode reward of chapter 06: a weighted mean of bounded components, each in [0, 1].

- ``exact``: 1 when the visible answer, or the answer pulled out of its first sentence
  (:func:`slmlab.mcts.qa.final_answer`: "7 + 5 = 12." → "12"), matches the gold answer after chapter 05's
  normalisation, else 0.
- ``fluency``: how natural the frozen model finds its own answer. The mean negative log-likelihood
  ``nll`` (nats per answer token, given the prompt) maps to ``exp(-nll / scale)``: the geometric-mean
  token probability raised to ``1 / scale``. With the default ``scale`` of :data:`FLUENCY_SCALE` nats, an
  answer the model finds as likely as its own greedy text scores high, shuffled words score low
  (see :func:`fluency_reward`). An optional :class:`KenLMScorer` maps an n-gram model's per-word score
  the same way.
- ``judge``: G-Eval style — the model rates the answer 1–5; the rating is the probability-weighted mean
  of the digit tokens "1".."5" (renormalised over the five) that follow the rating prompt, mapped to
  ``(E[r] - 1) / 4``.
- ``brevity``: ``1 - tokens_used / budget``, clipped at 0 (1 for no tokens, 0 at or over the budget).

Weights (:class:`RewardWeights`) are non-negative and sum to 1, so the total stays in [0, 1]. Empty
answers score 0 on fluency and judge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slmlab.errors import BackendError, ModelUnavailableError
from slmlab.generation import Prompt
from slmlab.mcts.qa import qa_correct

FLUENCY_SCALE = 4.0  # nats per token at which fluency is exp(-1) ≈ 0.37
KENLM_SCALE = 6.0  # nats per word, the same role for an n-gram model (words are rarer than tokens)
DIGITS = "12345"
JUDGE_PROMPT = (
    "Rate the answer to the question on a scale from 1 to 5, where 1 means wrong or unhelpful and 5 means "
    "correct, complete and clear. Reply with a single digit.\n\nQuestion: {question}\nAnswer: {answer}"
)
JUDGE_PREFILL = "Rating:"  # starts the model's reply so the next token is the digit (see judge_prefill)


# --- components -------------------------------------------------------------------------------------
def exact_match_reward(answer: str, gold: str) -> float:
    """1.0 when ``answer`` or its :func:`~slmlab.mcts.qa.final_answer` equals ``gold`` after normalisation
    (numbers, case, articles), else 0.0."""
    return float(qa_correct(answer, gold))


def fluency_from_nll(nll: float, scale: float = FLUENCY_SCALE) -> float:
    """Map a mean negative log-likelihood in nats to [0, 1]: ``exp(-nll / scale)``."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return float(min(1.0, math.exp(-max(nll, 0.0) / scale)))


def answer_nll(model, prompt: Prompt, answer: str, chat: bool = True) -> float:
    """Mean negative log-likelihood (nats per token) of ``answer`` right after the rendered ``prompt``."""
    tokenizer = model.hf_tokenizer
    context = tokenizer(model.render(prompt, chat=chat), add_special_tokens=False)["input_ids"]
    target = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not context or not target:
        raise ValueError("answer_nll needs a non-empty prompt and answer")
    return -float(np.mean(token_logprobs(model, context, target)))


def fluency_reward(model, prompt: Prompt, answer: str, scale: float = FLUENCY_SCALE, chat: bool = True) -> float:
    """How natural the frozen model finds ``answer`` after ``prompt``, in [0, 1] (0 for an empty answer).

    ``exp(-nll / scale)`` of the mean per-token NLL (see :func:`answer_nll`). Measured with SmolLM2-135M
    and the default scale: its own greedy answers nll 0.4–0.8 (fluency 0.8–0.9), other fluent sentences
    1–1.5 (0.7–0.75), the same words shuffled 4.7–7.6 (0.15–0.3), random words 10–12 (about 0.05). A terse
    correct answer the model would have phrased differently ("5" for "What is 2 + 3?") also scores low
    (nll 6.9, 0.18), which is why fluency gets a small weight.
    """
    answer = answer.strip()
    if not answer:
        return 0.0
    return fluency_from_nll(answer_nll(model, prompt, answer, chat=chat), scale)


def judge_prefill(tokenizer) -> str:
    """The start of the judge's reply: 'Rating:' where ' 4' is one token (the digit then carries its space),
    else 'Rating: ' (SmolLM2 spells ' 4' as a space token and '4', so the space goes into the prefill)."""
    # Measured on SmolLM2-135M: with the prefill 88–97 % of the next-token mass falls on the five digits,
    # without it (the bare start of the assistant turn) 1–35 %.
    return JUDGE_PREFILL if len(tokenizer(" 4", add_special_tokens=False)["input_ids"]) == 1 else JUDGE_PREFILL + " "


def rating_probabilities(model, question: str, answer: str, prefill: str | None = None) -> np.ndarray:
    """The model's probabilities of rating the answer 1..5 (the digit tokens after the judge prompt and
    ``prefill``, default :func:`judge_prefill`), renormalised over the five digits."""
    tokenizer = model.hf_tokenizer
    prefill = judge_prefill(tokenizer) if prefill is None else prefill
    text = model.render(JUDGE_PROMPT.format(question=question.strip(), answer=answer.strip())) + prefill
    logprobs = next_token_logprobs(model, tokenizer(text, add_special_tokens=False)["input_ids"])
    mass = np.array([np.exp(logprobs[ids]).sum() for ids in _digit_token_ids(tokenizer)], dtype=np.float64)
    if mass.sum() <= 0:  # float underflow: no opinion, so the middle rating
        return np.full(len(DIGITS), 1 / len(DIGITS))
    return mass / mass.sum()


def judge_reward(model, question: str, answer: str, prefill: str | None = None) -> float:
    """G-Eval style judgement in [0, 1]: ``(E[r] - 1) / 4`` with ``E[r]`` the probability-weighted rating
    from :func:`rating_probabilities`. An empty answer scores 0 without asking.

    A 135M judge is weak: on SmolLM2-135M right, wrong and garbage answers all land near 0.5–0.65. It is
    here to show the technique; give it weight with a bigger model.
    """
    if not answer.strip():
        return 0.0
    probabilities = rating_probabilities(model, question, answer, prefill)
    expected = float(np.dot(probabilities, np.arange(1, len(DIGITS) + 1)))
    return min(1.0, max(0.0, (expected - 1) / (len(DIGITS) - 1)))


def brevity_reward(tokens_used: int, budget: int) -> float:
    """``1 - tokens_used / budget`` clipped to [0, 1]: 1 for no tokens, falling linearly to 0 at the budget
    (and staying 0 beyond it)."""
    if budget < 1 or tokens_used < 0:
        raise ValueError(f"budget must be >= 1 and tokens_used >= 0, got {budget}, {tokens_used}")
    return 1.0 - min(tokens_used, budget) / budget


class KenLMScorer:
    """Optional fluency from a user-supplied KenLM n-gram model (ARPA or KenLM binary).

    No pip package ships a usable n-gram model, and ``kenlm`` itself builds from PyPI source (about
    75 s with a C++ compiler), so it is imported only here. Calling the scorer on a text gives
    ``exp(-nll / scale)`` of the per-word NLL in nats (the end-of-sentence token counts as a word).
    """

    def __init__(self, arpa_path: str | Path, scale: float = KENLM_SCALE) -> None:
        try:
            import kenlm
        except ImportError:
            raise ModelUnavailableError(
                "KenLM scoring needs the 'kenlm' package: `pip install kenlm` builds it from source "
                "(about 75 s, needs a C++ compiler)."
            ) from None
        self.path = Path(arpa_path)
        if not self.path.is_file():
            raise ModelUnavailableError(f"No KenLM model at {self.path}: pass the path of an ARPA or binary file.")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self._model = kenlm.Model(str(self.path))

    def log10_per_word(self, text: str) -> float:
        """KenLM's total log10 probability (with sentence start and end) divided by words + 1."""
        words = text.split()
        return float(self._model.score(" ".join(words), bos=True, eos=True)) / (len(words) + 1)

    def __call__(self, text: str) -> float:
        if not text.strip():
            return 0.0
        return fluency_from_nll(-self.log10_per_word(text) * math.log(10), self.scale)


# --- combining --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardWeights:
    """How much each component counts; non-negative and summing to 1, so the total is in [0, 1]."""

    exact: float = 0.6
    fluency: float = 0.1
    judge: float = 0.2
    brevity: float = 0.1

    def __post_init__(self) -> None:
        values = self.as_dict()
        bad = [f"{name}={value}" for name, value in values.items() if not (math.isfinite(value) and value >= 0)]
        if bad:
            raise ValueError(f"Reward weights must be finite and >= 0, got {', '.join(bad)}")
        if not math.isclose(sum(values.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"Reward weights must sum to 1, got {sum(values.values()):g} ({values})")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def episode_reward(components: dict[str, float | None], weights: RewardWeights) -> float:
    """The weighted sum of the components, in [0, 1]. A component with weight 0 may be missing or None;
    every other one must be present and in [0, 1]."""
    total = 0.0
    for name, weight in weights.as_dict().items():
        if weight == 0:
            continue
        value = components.get(name)
        if value is None or not 0.0 <= value <= 1.0:  # NaN fails the comparison too
            raise ValueError(f"Reward component '{name}' (weight {weight:g}) must be in [0, 1], got {value}")
        total += weight * value
    return min(1.0, max(0.0, total))  # the weights sum to 1 only up to rounding


def score_episode(
    model,
    question: str,
    answer: str,
    gold: str | None,
    tokens_used: int,
    budget: int,
    weights: RewardWeights | None = None,
    kenlm: KenLMScorer | None = None,
) -> dict[str, float | None]:
    """Every component and the ``total`` for one finished episode.

    ``answer`` is the visible text (thoughts excluded). Fluency comes from ``kenlm`` when given, else from
    the model. Components with weight 0 cost nothing: they are not computed and come back as None (so
    ``gold`` may be None when the exact weight is 0).
    """
    weights = weights or RewardWeights()
    wanted = {name for name, weight in weights.as_dict().items() if weight > 0}
    components: dict[str, float | None] = {
        "exact": exact_match_reward(answer, gold) if "exact" in wanted and gold is not None else None,
        "fluency": None,
        "judge": judge_reward(model, question, answer) if "judge" in wanted else None,
        "brevity": brevity_reward(tokens_used, budget),
    }
    if "fluency" in wanted:
        components["fluency"] = kenlm(answer) if kenlm is not None else fluency_reward(model, question, answer)
    return {**components, "total": episode_reward(components, weights)}


# --- the model's probabilities ----------------------------------------------------------------------
def token_logprobs(model, context_ids: Sequence[int], target_ids: Sequence[int]) -> list[float]:
    """Log-probability (nats) of each target token given the context and the targets before it, from
    one forward pass of the frozen model (torch or MLX backend)."""
    ids, start = list(context_ids) + list(target_ids), len(context_ids) - 1
    if model.backend == "torch":
        import torch

        with torch.inference_mode():
            logits = model.model(torch.tensor([ids], device=model.device)).logits[0, start:-1].float()
            targets = torch.tensor(list(target_ids), device=logits.device)[:, None]
            return torch.log_softmax(logits, dim=-1).gather(1, targets)[:, 0].cpu().tolist()
    if model.backend == "mlx":
        import mlx.core as mx

        logits = model.model(mx.array([ids]))[0, start:-1].astype(mx.float32)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return mx.take_along_axis(logprobs, mx.array(list(target_ids))[:, None], axis=1)[:, 0].tolist()
    raise BackendError(f"Scoring text needs the torch or mlx backend, not '{model.backend}'.")


def reply_mean_logprob(model, prompt: Prompt, reply_ids: Sequence[int]) -> float:
    """Mean log-probability (nats per token) of the reply tokens right after the rendered ``prompt``; -inf for
    an empty reply. Unlike :func:`answer_nll` it scores the very tokens generated, not a re-tokenised text."""
    if not reply_ids:
        return float("-inf")
    context = model.hf_tokenizer(model.render(prompt), add_special_tokens=False)["input_ids"]
    values = token_logprobs(model, context, list(reply_ids))
    return float(np.mean(values))


def next_token_logprobs(model, ids: Sequence[int]) -> np.ndarray:
    """Log-probabilities (nats) over the vocabulary of the token that follows ``ids``."""
    if model.backend == "torch":
        import torch

        with torch.inference_mode():
            logits = model.model(torch.tensor([list(ids)], device=model.device)).logits[0, -1].float()
            return torch.log_softmax(logits, dim=-1).cpu().numpy()
    if model.backend == "mlx":
        import mlx.core as mx

        logits = model.model(mx.array([list(ids)]))[0, -1].astype(mx.float32)
        return np.array(logits - mx.logsumexp(logits, keepdims=True))
    raise BackendError(f"Scoring text needs the torch or mlx backend, not '{model.backend}'.")


def _digit_token_ids(tokenizer) -> list[list[int]]:
    """For each digit 1..5, the single tokens that spell it ("4" and, where it is one token, " 4")."""
    found = []
    for digit in DIGITS:
        spellings = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (digit, " " + digit)]
        ids = sorted({s[0] for s in spellings if len(s) == 1})
        if not ids:
            raise BackendError(f"The tokenizer has no single token for the rating '{digit}'; the judge cannot read it.")
        found.append(ids)
    return found
