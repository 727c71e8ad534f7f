"""Chapter 06, part two: a frozen model writing a program one line at a time, as a single-player MCTS environment.

:class:`CodeEnvironment` implements :class:`slmlab.mcts.core.Environment`. A state holds the token ids so far (the
chat-rendered :func:`~slmlab.execution.tasks.task_prompt` followed by the lines generated), its own KV cache for exactly
those ids, the next-token logits after them and the :class:`CodeLine` rows generated. :meth:`CodeEnvironment.step`
returns a new state and leaves the old one usable: a child starts from a :func:`~slmlab.mcts.lm_env.fork_cache` of its
parent's cache, so a search tree can expand the same parent many times.

A line. Decoding a line takes tokens until one whose text contains a newline (kept: with a byte-level tokenizer such a
token may carry the next line's indentation too, "\\n   "), until end of sequence (EOS, neither kept nor fed) or until
``line_tokens`` tokens, fewer when the program's ``max_new_tokens`` are nearly spent.

The macro-actions (:class:`LineAction`):

- ``CONTINUE`` decodes the next line greedily. Greedy lines are remembered by the tokens before them (one per state
  stepped, plus the first line of each greedy playout), so a state whose ids were seen before — a resample that drew
  the same line again — continues without decoding.
- ``RESAMPLE`` drops the last line and draws another at ``resample_temperature``, one that differs from every line
  tried at that point (the last line and those it replaced): each tried line's probability is taken out of the
  distribution token by token while the new line still agrees with it, which is sampling conditioned on "not tried
  yet" exactly (when nothing else is left, it samples as usual). Its seed is a hash of the search's seed, the tokens
  before the line and how many times that line has been resampled, so the same tree is drawn again on every run.
- ``STOP`` ends the episode (the state is terminal and drops its cache).

The rules, in :meth:`CodeEnvironment.legal_actions` (CONTINUE or STOP first, so ties go to them):

- The program has *ended* when the reply's code block is closed (a ``` after the line that opened the first one: from
  there :func:`~slmlab.execution.tasks.extract_code` reads the same program whatever follows), when the last line
  stopped at EOS, or when ``max_new_tokens`` are spent. Before that CONTINUE is legal and STOP is not; once ended,
  STOP is legal and CONTINUE is not.
- RESAMPLE needs a line to resample and fewer than ``max_resamples`` resamples of that line (CONTINUE starts a new
  line, whose count is 0). A line that is only an EOS is a line: resampling it may go on where the model stopped.
  ``untried_chance`` is the probability left for RESAMPLE to find, the search's prior for it.
- After STOP nothing is legal.

Value. ``terminal_value`` asks the episode's ``value_fn`` (the search plugs in the visible tests,
:mod:`slmlab.mcts.code`); the default, :func:`likelihood_value`, is ``2 * likelihood - 1`` in [-1, 1].
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch

from slmlab.backends.continuous import cache_keyword
from slmlab.errors import BackendError
from slmlab.execution.tasks import CodeTask, extract_code, task_prompt
from slmlab.mcts.lm_env import fork_cache
from slmlab.mcts.spec import CodeSearchConfig

if TYPE_CHECKING:
    from transformers import Cache

PLAYER = 1  # the only player: values are never negated
FENCE = "```"
LEFT_MIN = 1e-6  # probability a resample must have left besides the lines tried; below it, float32 rounding is all there is


class LineAction(str, Enum):
    """The macro-actions over lines of code."""

    CONTINUE = "continue"
    RESAMPLE = "resample"
    STOP = "stop"


class LineActionError(ValueError):
    """An action that is not legal in the state it was asked of; the message says why."""


@dataclass(frozen=True)
class CodeLine:
    """One decoded line: its tokens, its text (decoded in context), and per token picked — the EOS that ended it
    included, though EOS is not among ``token_ids`` — the model's log-probability at temperature 1 (``logprobs``) and
    at the resample temperature (``repeat_logprobs``); how it was drawn (temperature 0 is greedy; ``seed`` is None for
    greedy lines)."""

    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]
    repeat_logprobs: tuple[float, ...]
    hit_eos: bool
    temperature: float
    seed: int | None

    @property
    def repeat_chance(self) -> float:
        """The chance that a draw at the resample temperature gives this very line: near 1 for a line the model is sure
        of (a code fence), lower where it hesitated between ways to go on."""
        return math.exp(sum(self.repeat_logprobs))

    def picks(self, eos: int) -> tuple[int, ...]:
        """The tokens drawn for the line: its tokens, and EOS when that ended it."""
        return self.token_ids + ((eos,) if self.hit_eos else ())


ValueFn = Callable[["CodeEnvironment"], float]


@dataclass(frozen=True)
class _Episode:
    """What every state of one episode shares."""

    model: Any
    task: CodeTask  # the prompt part only (see prompt_only)
    config: CodeSearchConfig
    eos: int
    value_fn: ValueFn
    prompt_length: int
    # compute spent by every state of the episode together (a search steps many of them)
    spent: dict[str, int] = field(default_factory=lambda: {"tokens": 0, "lines": 0})
    continued: dict[tuple[int, ...], CodeEnvironment] = field(default_factory=dict)  # ids → their greedy next line


def prompt_only(task: CodeTask) -> CodeTask:
    """``task`` as the search may hold it: what :func:`task_prompt` and :func:`extract_code` read (prompt, kind, entry
    point, signature) and nothing else — no test, test code or reference."""
    return CodeTask(
        name=task.name,
        prompt=task.prompt,
        kind=task.kind,
        entry_point=task.entry_point,
        signature=task.signature,
        tests=(),
        test_code=None,
    )


def fence_closed(reply: str) -> bool:
    """Whether ``reply`` has opened a code block and closed it: a ``` after the line holding the first one."""
    opening = reply.find(FENCE)
    if opening < 0:
        return False
    newline = reply.find("\n", opening)
    return newline >= 0 and reply.find(FENCE, newline) >= 0


def line_seed(seed: int, before: tuple[int, ...], resample: int) -> int:
    """The seed of the ``resample``-th resample of the line that follows the generated tokens ``before``: a stable hash
    (the same on every run and machine), different for every line and every resample of it."""
    text = f"{seed}|{resample}|{','.join(map(str, before))}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1  # fits torch's int64


def likelihood_value(env: CodeEnvironment) -> float:
    """The value without tests: the model's likelihood of the reply (:attr:`CodeEnvironment.likelihood`) mapped to
    [-1, 1] as ``2 * likelihood - 1``."""
    return 2.0 * env.likelihood - 1.0


class CodeEnvironment:
    """One state of a program being written: ``CodeEnvironment(model, task, config)`` is the root (it encodes the
    chat-rendered prompt once); :meth:`step` and :meth:`playout` make the others. Only the torch backend is supported.

    ``task`` is only prompted with: the state keeps :func:`prompt_only` of it, never a test."""

    def __init__(self, model, task: CodeTask, config: CodeSearchConfig | None = None, value_fn: ValueFn | None = None):
        if getattr(model, "backend", None) != "torch":
            raise BackendError(
                f"The code search needs the torch backend (it forks transformers' KV cache), not "
                f"'{getattr(model, 'backend', None)}': load the model with backend='torch'."
            )
        config = config or CodeSearchConfig()
        tokenizer = model.hf_tokenizer
        kept = prompt_only(task)
        ids = tuple(tokenizer(model.render(task_prompt(kept)), add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError("the rendered prompt is empty")
        self._episode = _Episode(model, kept, config, tokenizer.eos_token_id, value_fn or likelihood_value, len(ids))
        self.ids: tuple[int, ...] = ids
        self.lines: tuple[CodeLine, ...] = ()
        self.resamples = 0  # resamples of the last line so far
        self.replaced: tuple[CodeLine, ...] = ()  # the earlier tries of the last line, which RESAMPLE replaced
        self.stopped = False
        self._cache = _new_cache(model)
        self._logits = _forward(model, list(ids), self._cache)
        self._before: torch.Tensor | None = None  # the logits before the last line, for RESAMPLE
        self._value: float | None = None
        self.end_reason: str | None = self._end_reason()

    # --- what a state holds ---------------------------------------------------------------------------------------
    @property
    def model(self):
        return self._episode.model

    @property
    def task(self) -> CodeTask:
        """The task's prompt part, without tests."""
        return self._episode.task

    @property
    def config(self) -> CodeSearchConfig:
        return self._episode.config

    @property
    def prompt_length(self) -> int:
        return self._episode.prompt_length

    @property
    def generated_ids(self) -> tuple[int, ...]:
        return self.ids[self.prompt_length :]

    @property
    def tokens_used(self) -> int:
        return len(self.ids) - self.prompt_length

    @property
    def tokens_left(self) -> int:
        return self.config.max_new_tokens - self.tokens_used

    @property
    def reply_text(self) -> str:
        """The reply so far, special tokens dropped."""
        return self.model.hf_tokenizer.decode(list(self.generated_ids), skip_special_tokens=True)

    @property
    def program(self) -> str:
        """The program of the reply so far (:func:`extract_code`, which puts HumanEval's prompt back when needed)."""
        return extract_code(self.reply_text, self.task)

    @property
    def ended(self) -> bool:
        """The program is finished: code block closed, EOS, or ``max_new_tokens`` spent (see :attr:`end_reason`)."""
        return self.end_reason is not None

    @property
    def likelihood(self) -> float:
        """exp(mean log-probability) of every pick of the reply (EOS included); 0 before the first line."""
        picks = [p for line in self.lines for p in line.logprobs]
        return math.exp(sum(picks) / len(picks)) if picks else 0.0

    @property
    def untried_chance(self) -> float:
        """The chance, at the resample temperature, of a last line other than those tried (the last line and the ones it
        replaced): what is left for RESAMPLE to find. 0 before the first line."""
        if not self.lines:
            return 0.0
        return max(0.0, 1.0 - sum(line.repeat_chance for line in self.replaced + self.lines[-1:]))

    @property
    def next_token_logits(self) -> torch.Tensor:
        """The logits of the token after :attr:`ids` (float32, ``[vocab]``)."""
        return self._logits

    @property
    def spent(self) -> dict[str, int]:
        """What the whole episode has cost so far, over every state stepped from the same root: generated ``tokens``
        (fed through the model) and ``lines`` decoded."""
        return dict(self._episode.spent)

    def __repr__(self) -> str:
        return (
            f"CodeEnvironment(lines={len(self.lines)}, tokens_used={self.tokens_used}/{self.config.max_new_tokens}, "
            f"ended={self.end_reason}, terminal={self.stopped})"
        )

    # --- the Environment protocol ---------------------------------------------------------------------------------
    def legal_actions(self) -> tuple[LineAction, ...]:
        """CONTINUE before the program has ended, STOP after; RESAMPLE while the last line has been resampled fewer
        than ``max_resamples`` times; nothing after STOP."""
        if self.stopped:
            return ()
        first = LineAction.STOP if self.ended else LineAction.CONTINUE
        if self.lines and self.resamples < self.config.max_resamples:
            return (first, LineAction.RESAMPLE)
        return (first,)

    def is_terminal(self) -> bool:
        return self.stopped

    def to_play(self) -> int:
        return PLAYER

    def terminal_value(self) -> float:
        """The episode's ``value_fn`` of this stopped state, in [-1, 1] (computed once)."""
        if not self.stopped:
            raise ValueError("only a stopped state has a terminal value")
        if self._value is None:
            value = float(self._episode.value_fn(self))
            if not -1.0 <= value <= 1.0:  # NaN fails too
                raise ValueError(f"value_fn must return a value in [-1, 1], got {value}")
            self._value = value
        return self._value

    def step(self, action: LineAction | str) -> CodeEnvironment:
        """The state after ``action``; this one is left unchanged. Raises :class:`LineActionError` when illegal."""
        action = self._check_legal(action)
        if action is LineAction.CONTINUE:
            return self._continued(remember=True)
        if action is LineAction.RESAMPLE:
            return self._resample()
        child = copy.copy(self)
        child.stopped, child._cache = True, None  # a terminal state never steps, so it needs no cache
        return child

    def playout(self, temperature: float = 0.0, seed: int | None = None) -> CodeEnvironment:
        """The state reached by decoding lines from here until the program has ended (not stopped): greedy at
        temperature 0 — exactly CONTINUE after CONTINUE — else every line sampled at ``temperature`` from one
        generator seeded with ``seed``."""
        if self.stopped:
            raise ValueError("a stopped state cannot be played out")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if temperature == 0:  # the first line is the likeliest next step of a search: it is remembered
            state = self if self.ended else self._continued(remember=True)
            while not state.ended:
                state = state._continued(remember=False)
            return state
        generator, state = torch.Generator().manual_seed(seed or 0), self
        while not state.ended:
            state = state._extend(temperature, generator, seed)
        return state

    def _check_legal(self, action: LineAction | str) -> LineAction:
        try:
            action = LineAction(action)
        except ValueError:
            raise LineActionError(f"unknown action {action!r}; choose from {', '.join(a.value for a in LineAction)}") from None
        if action not in self.legal_actions():
            raise LineActionError(f"{action.name} is illegal here: {self._why_illegal(action)}.")
        return action

    def _why_illegal(self, action: LineAction) -> str:
        if self.stopped:
            return "the episode has stopped"
        if action is LineAction.CONTINUE:
            return f"the program has ended ({self.end_reason})"
        if action is LineAction.STOP:
            return "the program has not ended (its code block is open, no EOS, tokens left)"
        if not self.lines:
            return "there is no line to resample"
        return f"the last line was resampled {self.resamples} times (max_resamples={self.config.max_resamples})"

    # --- carrying out actions -------------------------------------------------------------------------------------
    def _end_reason(self) -> str | None:
        if self.lines and self.lines[-1].hit_eos:
            return "eos"
        if fence_closed(self.reply_text):
            return "fence"
        return "budget" if self.tokens_left <= 0 else None

    def _child(
        self, lines: tuple[CodeLine, ...], cache: Cache, logits: torch.Tensor, before, replaced: tuple[CodeLine, ...]
    ) -> CodeEnvironment:
        child = copy.copy(self)  # shares the episode; every field a step changes is set here
        child.ids = self.ids[: self.prompt_length] + tuple(t for line in lines for t in line.token_ids)
        child.lines, child._cache, child._logits, child._before = lines, cache, logits, before
        child.replaced, child.resamples, child.stopped, child._value = replaced, len(replaced), False, None
        child.end_reason = child._end_reason()
        return child

    def _continued(self, remember: bool) -> CodeEnvironment:
        """This state with its greedy next line: remembered by ids, decoded only the first time (``remember``: keep it)."""
        child = self._episode.continued.get(self.ids)
        if child is None:
            child = self._extend(0.0, None, None)
            if remember:
                self._episode.continued[self.ids] = child
        return child

    def _extend(self, temperature: float, generator: torch.Generator | None, seed: int | None) -> CodeEnvironment:
        """This state with one more line."""
        cache = self._cache_of(len(self.ids))
        limit = min(self.config.line_tokens, self.tokens_left)
        plan = _LinePlan(len(self.ids), limit, temperature, generator, seed, ())
        line, logits = self._decode_line(cache, self._logits, plan)
        return self._child(self.lines + (line,), cache, logits, self._logits, ())

    def _resample(self) -> CodeEnvironment:
        """This state with its last line replaced by one not tried yet, drawn at the resample temperature."""
        config, last = self.config, self.lines[-1]
        start = len(self.ids) - len(last.token_ids)
        cache = self._cache_of(start)
        tried = self.replaced + (last,)
        seed = line_seed(config.seed, self.ids[self.prompt_length : start], len(tried))
        limit = min(config.line_tokens, self.tokens_left + len(last.token_ids))
        plan = _LinePlan(start, limit, config.resample_temperature, torch.Generator().manual_seed(seed), seed, tried)
        line, logits = self._decode_line(cache, self._before, plan)
        return self._child(self.lines[:-1] + (line,), cache, logits, self._before, tried)

    def _cache_of(self, length: int) -> Cache:
        """A cache of its own for ``ids[:length]`` (this state's tokens or fewer): a fork of this state's cache, cropped
        to ``length`` — or, with ``reuse_cache`` off (the benchmark's baseline), the prefix encoded again from scratch."""
        if not self.config.reuse_cache:
            cache = _new_cache(self.model)
            _forward(self.model, list(self.ids[:length]), cache)
            return cache
        cache = fork_cache(self._cache)
        cache.crop(length - len(self.ids))  # a negative count: tokens removed from the end (0 removes none)
        return cache

    def _decode_line(self, cache: Cache, logits: torch.Tensor, plan: _LinePlan) -> tuple[CodeLine, torch.Tensor]:
        """One line after ``self.ids[:plan.start]`` (whose cache and logits are given; the cache grows): at most
        ``plan.limit`` tokens, up to and including the first one whose text holds a newline, or up to EOS, never one of
        ``plan.avoid`` while anything else is possible. Returns the line and the logits after it."""
        model, tokenizer, eos = self.model, self.model.hf_tokenizer, self._episode.eos
        avoid = [line.picks(eos) for line in plan.avoid]
        avoid_logprobs = [line.repeat_logprobs for line in plan.avoid]
        ids: list[int] = []
        logprobs: list[float] = []
        repeat: list[float] = []
        hit_eos = False
        while len(ids) < plan.limit:
            taken = _taken(avoid, avoid_logprobs, ids)
            token = _pick(logits, plan.temperature, plan.generator, taken)
            logprobs.append(float(torch.log_softmax(logits, dim=-1)[token]))
            repeat.append(float(torch.log_softmax(logits / self.config.resample_temperature, dim=-1)[token]))
            if token == eos:
                hit_eos = True
                break
            ids.append(token)
            logits = _forward(model, [token], cache)
            if "\n" in tokenizer.decode([token]):
                break
        self._episode.spent["tokens"] += len(ids)
        self._episode.spent["lines"] += 1
        text = _text_added(tokenizer, list(self.ids[self.prompt_length : plan.start]), ids)
        return CodeLine(tuple(ids), text, tuple(logprobs), tuple(repeat), hit_eos, plan.temperature, plan.seed), logits


@dataclass(frozen=True)
class _LinePlan:
    """A line to decode after ``ids[:start]``: at most ``limit`` tokens, at ``temperature`` (0: greedy) with
    ``generator`` (recorded as ``seed``), differing from every line of ``avoid``."""

    start: int
    limit: int
    temperature: float
    generator: torch.Generator | None
    seed: int | None
    avoid: tuple[CodeLine, ...]


def _taken(avoid: list[tuple[int, ...]], avoid_logprobs: list[tuple[float, ...]], so_far: list[int]) -> dict[int, float]:
    """Token → the probability, at the resample temperature, of completing one of the ``avoid`` lines (picks and their
    log-probabilities) that agree with ``so_far``, through that token next."""
    taken: dict[int, float] = {}
    at = len(so_far)
    for picks, logprobs in zip(avoid, avoid_logprobs):
        if len(picks) > at and list(picks[:at]) == so_far:
            taken[picks[at]] = taken.get(picks[at], 0.0) + math.exp(sum(logprobs[at:]))
    return taken


def _text_added(tokenizer, previous: list[int], ids: list[int]) -> str:
    """The text ``ids`` add after ``previous``; decoding in context keeps characters split across lines right."""
    before = tokenizer.decode(previous, skip_special_tokens=True)
    after = tokenizer.decode(previous + ids, skip_special_tokens=True)
    return after[len(before) :] if after.startswith(before) else tokenizer.decode(ids, skip_special_tokens=True)


def _new_cache(model) -> Cache:
    from transformers import DynamicCache  # lazy: transformers loads only when a state is built

    return DynamicCache(config=model.model.config)


def _forward(model, ids: list[int], cache: Cache) -> torch.Tensor:
    """Run ``ids`` through the model on top of ``cache`` (which grows); the logits of the next token."""
    with torch.inference_mode():
        out = model.model(
            input_ids=torch.tensor([ids], device=model.device),
            use_cache=True,
            logits_to_keep=1,
            **{cache_keyword(type(model.model)): cache},
        )
    return out.logits[0, -1].float().cpu()


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None, taken: dict[int, float]) -> int:
    """Argmax (temperature 0) or a draw from softmax(logits / T) with the ``taken`` probability of each token removed
    (unless less than :data:`LEFT_MIN` would be left: then from softmax(logits / T) itself)."""
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    if taken:
        left = probs.clone()
        for token, mass in taken.items():
            left[token] = max(float(left[token]) - mass, 0.0)
        if float(left.sum()) > LEFT_MIN:  # multinomial takes weights that need not sum to 1
            probs = left
    return int(torch.multinomial(probs, 1, generator=generator))
