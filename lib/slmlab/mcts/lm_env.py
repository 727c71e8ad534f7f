"""The language-model environment of chapter 06: a frozen model, steered one macro-action at a time.

:class:`LMEnvironment` implements :class:`slmlab.mcts.core.Environment` for a single player. A state holds
the token ids so far (rendered prompt + kept spans + thought markers), the model's KV cache for exactly
those ids, the next-token logits after them and the running sum of the last hidden states (for the
features of :mod:`slmlab.mcts.features`). :meth:`LMEnvironment.step` returns a new state and leaves the
old one usable, because a search tree expands the same parent many times.

How each macro-action is carried out (the rules themselves live in :mod:`slmlab.mcts.macro`):

- ``CONTINUE``: decode up to ``min(span_tokens, tokens_left)`` tokens (greedy by default), stopping early
  at end of sequence (EOS). The EOS token itself is neither kept nor fed to the model.
- ``RESAMPLE``: go back to the state before the last span (the cache is cropped) and decode it again at
  ``resample_temperature`` with seed ``seed + n`` for the episode's n-th resample (so resamples differ).
- ``THINK_BEGIN`` / ``THINK_END``: feed the marker text (:attr:`~slmlab.mcts.spec.EnvConfig.think_begin` / ``think_end``)
  through the model, so the cache and the logits see it. Markers cost no budget and never show;
  thought spans never show in :attr:`LMEnvironment.visible_text` nor in :meth:`LMEnvironment.macro_trace`.
- ``STOP``: nothing is decoded; the state is terminal and drops its cache.

End of sequence. A state has *ended* when its last span stopped at EOS or the model's most likely next
token is EOS (under greedy decoding the same thing). An ended state does not offer ``CONTINUE`` or
``THINK_BEGIN`` — the model has finished, so what is left is to STOP, RESAMPLE the last span or close a
thought — unless nothing else is legal (e.g. the answer is still empty), when all of MacroState's actions
stay on offer. Before the model has ended, STOP is not offered while budget is left (``early_stop=False``,
the default): cutting a reply mid-sentence never helps an answer, and a search that may do it learns to stop
after the first span to collect the brevity reward. A span is never empty: EOS is masked for the first token
of every span (as HF's ``min_new_tokens=1``), which only matters in that fallback or when sampling.

KV-cache reuse (``reuse_cache=True``): a child starts from a *fork* of its parent's cache. transformers'
``DynamicLayer`` never writes into its tensors — ``update`` concatenates into new ones and ``crop`` slices —
so a fork that copies the layer objects but shares their tensors is safe and costs ~0.05 ms, where
``copy.deepcopy`` copies every tensor (measured on SmolLM2-135M, 2-core CPU: 1.4 ms at 50 tokens, 1.9 ms at
200, against ~33 ms for decoding one token). Other cache layer types fall back to ``deepcopy``. With
``reuse_cache=False`` states keep no cache and every step re-encodes the whole sequence first (the
benchmark's baseline); both ways decode identical tokens under greedy decoding.

Each state in a tree owns a full cache (46 KB per token for SmolLM2-135M in float32), so keep
trees to a few hundred nodes; terminal states drop theirs.

Terminal value: the episode reward ``r`` in [0, 1] from ``reward_fn`` maps to ``2r - 1`` in [-1, 1], the
range of :mod:`slmlab.mcts.core`, where 0 (an unvisited child) then sits halfway between the worst and
the best answer. :meth:`LMEnvironment.reward` gives ``r`` itself.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from slmlab.backends.continuous import cache_keyword, left_pad
from slmlab.errors import BackendError
from slmlab.generation import Prompt, as_messages
from slmlab.mcts.macro import Macro, MacroActionError, MacroState, Span, as_macro, trace_step
from slmlab.mcts.reward import RewardWeights, score_episode
from slmlab.mcts.spec import EnvConfig

PLAYER = 1  # the only player: values are never negated

if TYPE_CHECKING:
    from transformers import Cache

RewardFn = Callable[["LMEnvironment"], float]


@dataclass(frozen=True)
class _Point:
    """The model's view after ``length`` tokens: next-token logits and the sum of last hidden states."""

    length: int
    logits: torch.Tensor  # [vocab] float32
    hidden_sum: torch.Tensor  # [hidden] float32


@dataclass(frozen=True)
class _SpanPlan:
    """A span to decode: after ``ids[:length]``, at most ``max_tokens``, at ``temperature`` with ``seed``;
    ``previous`` are the spans kept before it."""

    length: int
    max_tokens: int
    previous: tuple[Span, ...]
    temperature: float
    seed: int


@dataclass(frozen=True)
class _Episode:
    """What every state of one episode shares."""

    model: Any
    prompt: Prompt
    config: EnvConfig
    gold: str | None
    reward_fn: RewardFn
    eos: int
    markers: dict[Macro, tuple[int, ...]]
    # compute spent by every state of the episode together (a search steps many of them)
    spent: dict[str, int] = field(default_factory=lambda: {"steps": 0, "fed": 0})


def default_reward(env: LMEnvironment) -> float:
    """Exact match against ``gold`` (weight 0.9) plus brevity (0.1). Without a gold answer exact match
    cannot be scored, so the model's own fluency takes its weight (one forward pass per finished episode)."""
    gold = env.gold
    weights = (
        RewardWeights(exact=0.9, fluency=0.0, judge=0.0, brevity=0.1)
        if gold is not None
        else RewardWeights(exact=0.0, fluency=0.9, judge=0.0, brevity=0.1)
    )
    macro = env.macro
    return score_episode(env.model, env.prompt_text, env.visible_text, gold, macro.tokens_used, macro.budget, weights)["total"]


def fork_cache(cache: Cache) -> Cache:
    """A copy of a KV cache that the caller may extend or crop without touching ``cache``.

    ``DynamicLayer`` replaces its tensors instead of writing into them, so for caches made only of those
    the copy shares the tensors (cheap); anything else is deep-copied.
    """
    from transformers.cache_utils import DynamicLayer

    if all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
        fork = copy.copy(cache)
        fork.layers = [copy.copy(layer) for layer in cache.layers]
        return fork
    return copy.deepcopy(cache)


class LMEnvironment:
    """One state of an episode: a prompt, the macro-actions taken so far and the model's view of them.

    ``LMEnvironment(model, prompt, config, gold=..., reward_fn=...)`` is the root (it encodes the
    chat-rendered prompt once); :meth:`step` makes the children. Only the torch backend is supported.
    """

    def __init__(
        self,
        model,
        prompt: Prompt,
        config: EnvConfig | None = None,
        gold: str | None = None,
        reward_fn: RewardFn | None = None,
        system: str | None = None,
    ) -> None:
        if getattr(model, "backend", None) != "torch":
            raise BackendError(
                f"The MCTS language-model environment needs the torch backend (it reuses transformers' KV "
                f"cache), not '{getattr(model, 'backend', None)}': load the model with backend='torch'."
            )
        config = config or EnvConfig()
        tokenizer = model.hf_tokenizer
        markers = {
            action: tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
            for action, text in ((Macro.THINK_BEGIN, config.think_begin), (Macro.THINK_END, config.think_end))
        }
        self._episode = _Episode(model, prompt, config, gold, reward_fn or default_reward, tokenizer.eos_token_id, markers)
        self.ids: tuple[int, ...] = tuple(tokenizer(model.render(prompt, system=system), add_special_tokens=False)["input_ids"])
        if not self.ids:
            raise ValueError("the rendered prompt is empty")
        self.prompt_length = len(self.ids)
        self.macro = MacroState(budget=config.budget, max_resamples=config.max_resamples)
        cache, self._point = self._encode(self.ids)
        self._cache = cache if config.reuse_cache else None  # without reuse no state keeps a cache
        self._before: _Point | None = None  # the view before the last span, for RESAMPLE
        self.hit_eos = False  # the last span stopped at end of sequence
        self._trace: tuple[dict, ...] = ()
        self._reward: float | None = None

    # --- what a state holds ---------------------------------------------------------------------
    @property
    def model(self):
        return self._episode.model

    @property
    def config(self) -> EnvConfig:
        return self._episode.config

    @property
    def prompt(self) -> Prompt:
        return self._episode.prompt

    @property
    def prompt_text(self) -> str:
        """The prompt's own words (every non-system message), without the chat template."""
        return "\n".join(m["content"] for m in as_messages(self.prompt) if m.get("role") != "system")

    @property
    def gold(self) -> str | None:
        return self._episode.gold

    @property
    def next_token_logits(self) -> torch.Tensor:
        """The logits of the token that would follow :attr:`ids` (float32, ``[vocab]``)."""
        return self._point.logits

    @property
    def hidden_mean(self) -> torch.Tensor:
        """The model's last hidden state averaged over every token of :attr:`ids` (float32, ``[hidden]``)."""
        return self._point.hidden_sum / self._point.length

    @property
    def visible_text(self) -> str:
        """The answer as a user sees it: the visible spans decoded together as ``model.generate`` decodes
        (special tokens dropped, surrounding space stripped); never a thought or a marker."""
        return self.model.decode([t for span in self.macro.spans if not span.thought for t in span.token_ids])

    @property
    def generated_ids(self) -> tuple[int, ...]:
        """Everything after the prompt: kept spans and markers."""
        return self.ids[self.prompt_length :]

    @property
    def ended(self) -> bool:
        """The model has finished: its last span stopped at EOS or EOS is its most likely next token."""
        return self.hit_eos or int(self._point.logits.argmax()) == self._episode.eos

    @property
    def spent(self) -> dict[str, int]:
        """What the whole episode has cost so far, over every state stepped from the same root (a search
        steps many): ``steps`` taken and tokens ``fed`` through the model after the prompt."""
        return dict(self._episode.spent)

    def macro_trace(self) -> list[dict]:
        """One dict per macro-action so far: ``action``, ``tokens`` (kept span tokens), ``fed`` (tokens run
        through the model), ``ms`` and, for spans, ``thought`` and ``text`` (:data:`~slmlab.mcts.macro.THOUGHT_PLACEHOLDER`
        for a thought)."""
        return [dict(step) for step in self._trace]

    def __repr__(self) -> str:
        actions = " ".join(step["action"] for step in self._trace) or "-"
        return (
            f"LMEnvironment(actions=[{actions}], tokens_used={self.macro.tokens_used}/{self.macro.budget}, "
            f"terminal={self.is_terminal()})"
        )

    # --- the Environment protocol ---------------------------------------------------------------
    def legal_actions(self) -> tuple[Macro, ...]:
        """MacroState's legal actions; once the model has :attr:`ended`, without CONTINUE and THINK_BEGIN;
        before that, without STOP while budget is left (unless ``early_stop``); in either case only when
        something else would be left."""
        legal = self.macro.legal_actions()
        if self.ended:
            closing = tuple(a for a in legal if a not in (Macro.CONTINUE, Macro.THINK_BEGIN))
            return closing or legal
        if not self.config.early_stop and self.macro.tokens_left > 0:
            going_on = tuple(a for a in legal if a is not Macro.STOP)
            return going_on or legal
        return legal

    def is_terminal(self) -> bool:
        return self.macro.is_final

    def to_play(self) -> int:
        return PLAYER

    def reward(self) -> float:
        """The episode reward in [0, 1] of a terminal state (computed once)."""
        if not self.is_terminal():
            raise ValueError("only a finished episode (after STOP) has a reward")
        if self._reward is None:
            value = float(self._episode.reward_fn(self))
            if not 0.0 <= value <= 1.0:  # NaN fails too
                raise ValueError(f"reward_fn must return a value in [0, 1], got {value}")
            self._reward = value
        return self._reward

    def terminal_value(self) -> float:
        """The reward mapped to the search's value range: ``2 * reward - 1`` in [-1, 1]."""
        return 2.0 * self.reward() - 1.0

    def step(self, action: Macro | str) -> LMEnvironment:
        """The state after ``action``; this one is left unchanged. Raises MacroActionError when the action
        is not in :meth:`legal_actions`."""
        action = self._check_legal(action)
        start = time.perf_counter()
        if action in (Macro.CONTINUE, Macro.RESAMPLE):
            child, span, fed = self._generate(action)
        elif action is Macro.STOP:  # nothing to decode; a terminal state never steps, so it needs no cache
            child, span, fed = self._child(self.ids, self.macro.apply(action), None, self._point, self.hit_eos), None, 0
        else:
            child, span, fed = self._think(action)
        return self._record(child, action, span, (time.perf_counter() - start) * 1000, fed)

    @staticmethod
    def step_batch(pairs: Sequence[tuple[LMEnvironment, Macro | str]]) -> list[LMEnvironment]:
        """``[state.step(action) for state, action in pairs]``, computed together: the CONTINUE and RESAMPLE
        spans of states that reuse their cache and share a model are decoded in one batch (one forward pass
        per token over their forked caches, left-padded to one width); other actions step one by one.
        Each child's trace carries its share of the batch's time."""
        pairs = [(state, state._check_legal(action)) for state, action in pairs]
        children: list[LMEnvironment | None] = [None] * len(pairs)
        groups: dict[int, list[int]] = {}
        for index, (state, action) in enumerate(pairs):
            if action in (Macro.CONTINUE, Macro.RESAMPLE) and state.config.reuse_cache:
                groups.setdefault(id(state.model), []).append(index)
            else:
                children[index] = state.step(action)
        for indices in groups.values():
            for index, child in zip(indices, _generate_together([pairs[i] for i in indices])):
                children[index] = child
        return children

    def _check_legal(self, action: Macro | str) -> Macro:
        action = as_macro(action)
        if action not in self.legal_actions():
            reason = self.macro.why_illegal(action) or (
                "the model has ended its reply (end of sequence)"
                if self.ended
                else f"the model has not ended its reply and {self.macro.tokens_left} tokens of budget are left "
                f"(EnvConfig.early_stop=True allows it)"
            )
            raise MacroActionError(f"{action.name} is illegal: {reason}.")
        return action

    def _record(self, child: LMEnvironment, action: Macro, span: Span | None, ms: float, fed: int) -> LMEnvironment:
        """Append the step to the child's trace and to the episode's compute."""
        child._trace = self._trace + (trace_step(action, span, ms, fed=fed),)
        self._episode.spent["steps"] += 1
        self._episode.spent["fed"] += fed
        return child

    # --- carrying out actions ---------------------------------------------------------------------
    def _child(self, ids: tuple[int, ...], macro: MacroState, cache: Cache | None, point: _Point, hit_eos: bool) -> LMEnvironment:
        child = copy.copy(self)  # shares the episode; every field a step changes is set here
        child.ids, child.macro, child._cache, child._point, child.hit_eos = ids, macro, cache, point, hit_eos
        child._before, child._reward = None, None
        return child

    def _think(self, action: Macro) -> tuple[LMEnvironment, None, int]:
        marker = self._episode.markers[action]
        cache, point = self._resume(len(self.ids), marker)
        child = self._child(self.ids + marker, self.macro.apply(action), cache, point, hit_eos=False)
        return child, None, self._fed(len(self.ids)) + len(marker)

    def _generate(self, action: Macro) -> tuple[LMEnvironment, Span, int]:
        plan = self._span_plan(action)
        cache, before = self._resume(plan.length)
        ids, hit_eos, point = self._decode(cache, before, plan.max_tokens, plan.temperature, plan.seed)
        return self._span_child(action, plan, cache, before, ids, hit_eos, point)

    def _span_plan(self, action: Macro) -> _SpanPlan:
        """Where a CONTINUE or RESAMPLE span starts, how long it may be and how it is decoded."""
        config, macro = self.config, self.macro
        if action is Macro.RESAMPLE:  # back to before the last span, whose tokens go back to the budget
            return _SpanPlan(
                self._before.length,
                min(config.span_tokens, macro.tokens_left + len(macro.spans[-1])),
                macro.spans[:-1],
                config.resample_temperature,
                config.seed + macro.total_resamples + 1,
            )
        return _SpanPlan(
            len(self.ids), min(config.span_tokens, macro.tokens_left), macro.spans, config.continue_temperature, config.seed
        )

    def _span_child(
        self, action: Macro, plan: _SpanPlan, cache: Cache, before: _Point, ids: tuple[int, ...], hit_eos: bool, point: _Point
    ) -> tuple[LMEnvironment, Span, int]:
        span = Span(
            self._span_text(plan.previous, ids), ids, thought=self.macro.in_thought, seed=plan.seed, temperature=plan.temperature
        )
        child = self._child(
            self.ids[: plan.length] + span.token_ids,
            self.macro.apply(action, span),
            cache if self.config.reuse_cache else None,
            point,
            hit_eos,
        )
        child._before = before
        return child, span, self._fed(plan.length) + len(ids)

    def _fed(self, length: int) -> int:
        """Tokens re-encoded to resume after ``ids[:length]``: none when the cache is reused."""
        return 0 if self.config.reuse_cache else length

    def _resume(self, length: int, extra: Sequence[int] = ()) -> tuple[Cache, _Point]:
        """A private cache and view for ``ids[:length]`` followed by ``extra``: forked (and cropped) from
        this state's cache when reusing, else re-encoded from scratch."""
        if not self.config.reuse_cache:
            return self._encode(self.ids[:length] + tuple(extra))
        cache = fork_cache(self._cache)
        if length < len(self.ids):
            cache.crop(length - len(self.ids))  # a negative count: tokens removed from the end
            point = self._before  # only RESAMPLE goes back, and only by the last span
        else:
            point = self._point
        if extra:
            point = self._forward(list(extra), cache, point)
        return cache, point

    def _encode(self, ids: Sequence[int]) -> tuple[Cache, _Point]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.model.config)
        hidden = torch.zeros(self.model.model.config.get_text_config().hidden_size)
        return cache, self._forward(list(ids), cache, _Point(0, torch.empty(0), hidden))

    def _forward(self, ids: list[int], cache: Cache, point: _Point) -> _Point:
        """Run ``ids`` through the model on top of ``cache`` (which grows); the view after them."""
        model = self.model
        with torch.inference_mode():
            out = model.model(
                input_ids=torch.tensor([ids], device=model.device),
                use_cache=True,
                output_hidden_states=True,
                logits_to_keep=1,
                **{cache_keyword(type(model.model)): cache},
            )
        hidden = out.hidden_states[-1][0].float().sum(0).cpu()
        return _Point(point.length + len(ids), out.logits[0, -1].float().cpu(), point.hidden_sum + hidden)

    def _decode(
        self, cache: Cache, point: _Point, max_tokens: int, temperature: float, seed: int
    ) -> tuple[tuple[int, ...], bool, _Point]:
        """Up to ``max_tokens`` tokens from ``point``; returns (ids, stopped at EOS, view after them)."""
        generator = torch.Generator().manual_seed(seed) if temperature > 0 else None
        eos, ids = self._episode.eos, []
        while len(ids) < max_tokens:
            token = _pick(point.logits, temperature, generator, forbid=eos if not ids else None)
            if token == eos:
                return tuple(ids), True, point
            ids.append(token)
            point = self._forward([token], cache, point)
        return tuple(ids), False, point

    def _span_text(self, previous: Sequence[Span], ids: Sequence[int]) -> str:
        """The text a span adds to the spans of its kind before it. Decoding it in context keeps
        characters split across spans and the tokenizer's clean-up right."""
        thought = self.macro.in_thought
        context = [t for span in previous if span.thought == thought for t in span.token_ids][-16:]
        decode = self.model.hf_tokenizer.decode
        before, after = decode(context, skip_special_tokens=True), decode(context + list(ids), skip_special_tokens=True)
        return after[len(before) :] if after.startswith(before) else decode(list(ids), skip_special_tokens=True)


def _generate_together(pairs: list[tuple[LMEnvironment, Macro]]) -> list[LMEnvironment]:
    """The children of CONTINUE / RESAMPLE ``pairs`` (states of one model that reuse their caches), their
    spans decoded in one batch; equal, token for token, to stepping each pair on its own."""
    start = time.perf_counter()
    plans = [state._span_plan(action) for state, action in pairs]
    resumed = [state._resume(plan.length) for (state, _), plan in zip(pairs, plans)]
    decoded = _decode_batch(pairs[0][0], resumed, plans)
    ms = (time.perf_counter() - start) * 1000 / len(pairs)
    children = []
    for (state, action), plan, (_, before), (ids, hit_eos, point, cache) in zip(pairs, plans, resumed, decoded):
        child, span, fed = state._span_child(action, plan, cache, before, ids, hit_eos, point)
        children.append(state._record(child, action, span, ms, fed))
    return children


def _decode_batch(
    env: LMEnvironment, resumed: list[tuple[Cache, _Point]], plans: list[_SpanPlan]
) -> list[tuple[tuple[int, ...], bool, _Point, Cache]]:
    """:meth:`LMEnvironment._decode` for several rows at once: per row (ids, stopped at EOS, view after
    them, its own cache). The rows' caches are left-padded to one width and stacked; each row keeps its
    own positions (RoPE), generator and stopping rule, and a row that has stopped feeds a masked dummy
    token until every row is done. Hand-written: transformers' ``generate`` cannot start rows from
    different, already-computed caches."""
    model, eos = env.model, env._episode.eos
    lengths = [point.length for _, point in resumed]
    width, rows = max(lengths), len(resumed)
    cache = _stack_caches([c for c, _ in resumed], width, model.model.config)
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths], device=model.device)
    generators = [torch.Generator().manual_seed(p.seed) if p.temperature > 0 else None for p in plans]
    points, ids = [point for _, point in resumed], [[] for _ in resumed]
    live, hit_eos = [p.max_tokens > 0 for p in plans], [False] * rows
    while any(live):
        step = []
        for row in range(rows):
            token = eos
            if live[row]:
                token = _pick(points[row].logits, plans[row].temperature, generators[row], forbid=eos if not ids[row] else None)
                if token == eos:
                    live[row], hit_eos[row] = False, True
                else:
                    ids[row].append(token)
            step.append(token)
        feeding = list(live)  # the rows that picked a token this step (a row that stopped feeds a masked dummy)
        if not any(feeding):
            break
        mask = torch.cat([mask, torch.tensor([[int(f)] for f in feeding], device=model.device)], dim=1)
        positions = torch.tensor([[lengths[r] + len(ids[r]) - 1] for r in range(rows)], device=model.device)
        with torch.inference_mode():
            out = model.model(
                input_ids=torch.tensor([[t] for t in step], device=model.device),
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                output_hidden_states=True,
                logits_to_keep=1,
                **{cache_keyword(type(model.model)): cache},
            )
        logits, hidden = out.logits[:, -1].float().cpu(), out.hidden_states[-1][:, -1].float().cpu()
        for row in range(rows):
            if feeding[row]:
                old = points[row]
                points[row] = _Point(old.length + 1, logits[row], old.hidden_sum + hidden[row])
                live[row] = len(ids[row]) < plans[row].max_tokens
    return [
        (
            tuple(ids[r]),
            hit_eos[r],
            points[r],
            _row_cache(cache, r, width - lengths[r], lengths[r] + len(ids[r]), model.model.config),
        )
        for r in range(rows)
    ]


def _stack_caches(caches: list[Cache], width: int, config) -> Cache:
    """One batch cache from single-row caches, each left-padded with zeros to ``width`` tokens."""
    from transformers import DynamicCache

    stacked = DynamicCache(config=config)
    for index in range(len(caches[0].layers)):
        keys = torch.cat([left_pad(cache.layers[index].keys, width, -2) for cache in caches])
        values = torch.cat([left_pad(cache.layers[index].values, width, -2) for cache in caches])
        stacked.update(keys, values, index)
    return stacked


def _row_cache(stacked: Cache, row: int, start: int, length: int, config) -> Cache:
    """Row ``row`` of a batch cache as a single-row cache of its ``length`` real tokens (padding dropped);
    the tensors are copied so the batch's memory is freed."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for index, layer in enumerate(stacked.layers):
        cache.update(
            layer.keys[row : row + 1, :, start : start + length].clone(),
            layer.values[row : row + 1, :, start : start + length].clone(),
            index,
        )
    return cache


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None, forbid: int | None) -> int:
    """Argmax (temperature 0) or a sample from softmax(logits / T); ``forbid`` gets no probability."""
    if forbid is not None:
        logits = logits.clone()
        logits[forbid] = float("-inf")
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def greedy_episode(
    model, prompt: Prompt, config: EnvConfig | None = None, gold: str | None = None, reward_fn: RewardFn | None = None
) -> LMEnvironment:
    """The plain-greedy baseline: CONTINUE (greedy) until the model ends or the budget is spent, then STOP.

    Its :attr:`~LMEnvironment.visible_text` equals ``model.generate`` greedy output with
    ``max_new_tokens=budget`` — except when that output is empty or blank, which MacroState cannot stop
    on (then the episode goes on with EOS masked, or RESAMPLEs).
    """
    env = LMEnvironment(model, prompt, replace(config or EnvConfig(), continue_temperature=0.0), gold=gold, reward_fn=reward_fn)
    while not env.is_terminal():
        legal = env.legal_actions()
        env = env.step(next((a for a in (Macro.CONTINUE, Macro.STOP) if a in legal), legal[0]))
    return env
