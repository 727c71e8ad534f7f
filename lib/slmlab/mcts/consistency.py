"""The test-time value of chapter 06 without a gold answer: self-consistency among the answers of finished
branches, each vote weighted by how likely the model finds its own reply.

At test time nothing knows the gold, so the value of a finished branch is the share of all finished branches
(of one search, or of ``n`` samples) whose normalised final answer agrees with it — the self-consistency of
Wang et al. (2023), used here as a value instead of only as a final vote. A vote weighs
``exp(sharpness * mean token log-probability)``, the model's geometric-mean token probability of the reply raised
to ``sharpness``, in (0, 1]: a reply the model finds likely counts more than a rambling one, and length does not
decide. Sharpness 0 is the plain vote; a large one keeps the single most likely reply. Measured on the 40 self-play
items with SmolLM2-135M (four to eight samples at temperature 0.3): the plain vote ties greedy decoding, weights
with sharpness 1 gain about 5 points and sharpness 4 about 10. An unfinished branch has no answer yet: its
value is ``prior``. :func:`settled` says when the finished branches agree so well that more search would only
confirm them (the search then stops early and spends its budget only where answers differ).

Everything here is pure (answers and log-probabilities in, values out), so it is tested on hand-made branch
sets; :class:`AnswerPool` is the small mutable record one search keeps of its finished branches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from slmlab.mcts.qa import first_sentence
from slmlab.mcts.spec import ConsistencySettings
from slmlab.metrics import normalize_text

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
SHARPNESS = 1.0  # the vote functions' default: a vote weighs the reply's geometric-mean token probability itself


def answer_key(text: str) -> str:
    """The normalised final answer of a reply, found without a gold answer to say its kind: the last number of
    its first sentence when that sentence holds one, else the last word of its first clause ('' when blank).
    Agrees with :func:`~slmlab.mcts.qa.final_answer` whenever the reply's kind matches the gold's."""
    sentence = first_sentence(text)
    numbers = _NUMBER.findall(sentence.replace(",", ""))
    if numbers:
        return normalize_text(numbers[-1])
    words = _WORD.findall(sentence.split(",", 1)[0])
    return normalize_text(words[-1]) if words else normalize_text(text)


def vote_weight(mean_logprob: float | None, sharpness: float = SHARPNESS) -> float:
    """A finished branch's vote: ``exp(sharpness * mean token log-probability)`` in [0, 1]; 1 when it is not known."""
    if mean_logprob is None:
        return 1.0
    if math.isnan(mean_logprob):
        raise ValueError("a branch's mean log-probability is NaN")
    return math.exp(sharpness * min(mean_logprob, 0.0)) if sharpness else 1.0


def answer_shares(
    answers: Sequence[str | None], mean_logprobs: Sequence[float | None] | None = None, sharpness: float = SHARPNESS
) -> dict[str, float]:
    """Each answer's weighted share of the finished branches' votes (``None`` marks an unfinished branch and
    does not vote; a blank answer never wins a vote). Empty when nothing has finished."""
    weights = [vote_weight(lp, sharpness) for lp in (mean_logprobs if mean_logprobs is not None else [None] * len(answers))]
    if len(weights) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(weights)} log-probabilities")
    votes: dict[str, float] = {}
    for answer, weight in zip(answers, weights):
        if answer is not None:
            votes[answer] = votes.get(answer, 0.0) + weight
    total = sum(votes.values())
    return {answer: (weight / total if answer else 0.0) for answer, weight in votes.items()} if total > 0 else {}


def consistency_values(
    answers: Sequence[str | None],
    mean_logprobs: Sequence[float | None] | None = None,
    prior: float = 0.5,
    sharpness: float = SHARPNESS,
) -> list[float]:
    """The test-time value in [0, 1] of every branch: a finished branch's is the weighted share of finished
    branches that agree with its answer; an unfinished branch's (``None``) is ``prior``."""
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be in [0, 1], got {prior}")
    shares = answer_shares(answers, mean_logprobs, sharpness)
    return [prior if answer is None else shares[answer] for answer in answers]


def majority_answer(
    answers: Sequence[str | None], mean_logprobs: Sequence[float | None] | None = None, sharpness: float = SHARPNESS
) -> int | None:
    """The index of the first branch carrying the answer with the largest weighted share (ties: the answer
    seen first), or None when no branch has finished."""
    shares = answer_shares(answers, mean_logprobs, sharpness)
    if not shares:
        return None
    best = max(shares.values())
    winner = next(answer for answer in shares if shares[answer] == best)  # dicts keep first-seen order
    return answers.index(winner)


def settled(
    answers: Sequence[str | None],
    mean_logprobs: Sequence[float | None] | None = None,
    min_finished: int = ConsistencySettings.min_finished,
    share: float = ConsistencySettings.share,
    sharpness: float = SHARPNESS,
) -> bool:
    """Whether more search can hardly change the vote: at least ``min_finished`` branches have finished and one
    (non-blank) answer holds ``share`` of their weighted votes."""
    finished = sum(answer is not None for answer in answers)
    shares = answer_shares(answers, mean_logprobs, sharpness)
    return finished >= min_finished and max(shares.values(), default=0.0) >= share


@dataclass
class AnswerPool:
    """The finished branches one search has seen so far: reply text, answer key, mean token log-probability
    and the branch's final state. Every finished branch votes once, also when its reply repeats another
    branch's word for word (an independent draw that agrees); a state added again is not counted twice."""

    settings: ConsistencySettings = ConsistencySettings()
    texts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    mean_logprobs: list[float | None] = field(default_factory=list)
    states: list = field(default_factory=list, repr=False)
    _seen: set = field(default_factory=set, repr=False)

    def add(self, text: str, mean_logprob: float | None = None, state=None) -> None:
        key = id(state) if state is not None else len(self.texts)
        if key in self._seen:
            return
        self._seen.add(key)
        self.texts.append(text)
        self.answers.append(answer_key(text))
        self.mean_logprobs.append(mean_logprob)
        self.states.append(state)

    def value(self, text: str) -> float:
        """The consistency value of a reply against the pool (its share of the votes; 0 when its answer has none)."""
        return answer_shares(self.answers, self.mean_logprobs, self.settings.sharpness).get(answer_key(text), 0.0)

    def best(self) -> int | None:
        """The index of the reply that carries the pool's majority answer."""
        return majority_answer(self.answers, self.mean_logprobs, self.settings.sharpness)

    def settled(self) -> bool:
        """:func:`settled` with this pool's settings, or ``max_finished`` branches finished: the search may stop."""
        s = self.settings
        return len(self.answers) >= s.max_finished or settled(
            self.answers, self.mean_logprobs, s.min_finished, s.share, s.sharpness
        )
