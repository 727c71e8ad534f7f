"""Macro-actions that steer a frozen model, and the rules that say which one is legal when.

The search does not pick tokens; it picks one of five macro-actions and the controller carries it out:

- ``CONTINUE``: generate a span of visible text (or of thought, inside a thought);
- ``THINK_BEGIN`` / ``THINK_END``: open / close a hidden thought span, never shown in the answer;
- ``RESAMPLE``: throw away the span just generated and generate it again (another seed or temperature);
- ``STOP``: the answer is final.

:class:`MacroState` is the immutable record of an episode: :meth:`MacroState.apply` returns a new state or
raises :class:`MacroActionError` and leaves the old one as it was, so a search tree can share states.

The rules (one reason per illegal action, see :meth:`MacroState.why_illegal`):

1. Nothing is legal after ``STOP``.
2. ``CONTINUE`` needs budget left; its span must be non-empty, fit the budget and be in the current mode
   (``thought=True`` inside a thought).
3. ``THINK_BEGIN`` needs budget left and no open thought (thoughts do not nest).
4. ``THINK_END`` needs an open thought that already holds a span (an empty thought is no thought).
5. ``RESAMPLE`` is legal exactly when the previous action was ``CONTINUE`` or ``RESAMPLE`` — so the last
   span was generated in the current mode and no thought boundary lies between it and now — fewer than
   ``max_resamples`` resamples happened in a row, and budget is left. The new span replaces the last one
   (same mode, non-empty, fits the budget once the old span's tokens are given back).
6. ``STOP`` needs no open thought, and visible text that is not just whitespace — unless the budget is
   spent, when ``STOP`` is the way out even with an empty answer (which the reward scores 0).

Budget: ``tokens_used`` counts the tokens of the spans kept (thoughts included; the thought markers and
discarded spans cost nothing), and never exceeds ``budget``.

No dead ends: before ``STOP`` some action is always legal, and the closing policy of
:func:`closing_action` ("close the thought, then stop; generate while neither is legal yet") reaches
``STOP``. Every ``CONTINUE`` uses at least one token, every thought holds a span and resamples come at
most ``max_resamples`` in a row, so every episode ends within :attr:`MacroState.max_steps` actions.

What an episode may show: a controller (anything with the :class:`Controller` protocol) hands out a
:class:`ControllerResult` with the visible text only; its trace (one :func:`trace_step` per action) shows
:data:`THOUGHT_PLACEHOLDER` instead of a thought span's text. Both the language-model environment and the
HTTP server build and redact traces with these, so there is one definition of what stays hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from slmlab.errors import SlmLabError
from slmlab.mcts.spec import BUDGET, MAX_RESAMPLES

THOUGHT_PLACEHOLDER = "[thought hidden]"  # what a trace shows instead of a thought span's text


class Macro(str, Enum):
    """The macro-actions, in the fixed order of :data:`MACROS` (and of :func:`action_mask`)."""

    CONTINUE = "continue"
    THINK_BEGIN = "think_begin"
    THINK_END = "think_end"
    RESAMPLE = "resample"
    STOP = "stop"


MACROS: tuple[Macro, ...] = tuple(Macro)
_GENERATING = (Macro.CONTINUE, Macro.RESAMPLE)  # the actions that carry a span


class MacroActionError(SlmLabError, ValueError):
    """A macro-action that the rules forbid in this state, or a span that does not fit it."""


@dataclass(frozen=True)
class Span:
    """One generated piece: its text and token ids, whether it is thought, and how it was sampled."""

    text: str
    token_ids: tuple[int, ...]
    thought: bool = False
    seed: int = 0
    temperature: float = 0.0  # 0 = greedy

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", tuple(self.token_ids))  # lists welcome; kept hashable
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class MacroState:
    """An episode so far. Start with ``MacroState(budget=...)`` and :meth:`apply` actions."""

    budget: int = BUDGET  # tokens the kept spans may use in all
    spans: tuple[Span, ...] = ()
    in_thought: bool = False
    stopped: bool = False
    last_action: Macro | None = None
    resamples: int = 0  # RESAMPLEs in a row just now (reset by any other action)
    total_resamples: int = 0  # RESAMPLEs in the whole episode, for reports
    max_resamples: int = MAX_RESAMPLES  # cap on RESAMPLEs in a row

    def __post_init__(self) -> None:
        if self.budget < 1 or self.max_resamples < 0:
            raise ValueError(f"budget must be >= 1 and max_resamples >= 0, got {self.budget}, {self.max_resamples}")
        if self.tokens_used > self.budget:
            raise ValueError(f"spans use {self.tokens_used} tokens, over the budget of {self.budget}")

    # --- what the episode holds -----------------------------------------------------------------
    @property
    def tokens_used(self) -> int:
        return sum(len(span) for span in self.spans)

    @property
    def tokens_left(self) -> int:
        return self.budget - self.tokens_used

    @property
    def visible_text(self) -> str:
        """The answer as the user sees it: visible spans only, never thought."""
        return "".join(span.text for span in self.spans if not span.thought)

    @property
    def thought_text(self) -> str:
        """The hidden thought spans, joined."""
        return "".join(span.text for span in self.spans if span.thought)

    @property
    def is_final(self) -> bool:
        return self.stopped

    @property
    def max_steps(self) -> int:
        """An upper bound on the number of actions of any episode from an empty state with this budget:
        at most ``budget`` CONTINUEs (each adds a span of at least one token, and a RESAMPLE only ever
        replaces a span), each followed by at most ``max_resamples``
        RESAMPLEs, at most ``budget`` thoughts (each holds a span) opened and closed, and one STOP."""
        return self.budget * (3 + self.max_resamples) + 1

    # --- the rules ------------------------------------------------------------------------------
    def why_illegal(self, action: Macro) -> str | None:
        """Why ``action`` is illegal here, or None when it is legal (before looking at any span)."""
        if self.stopped:
            return "the episode has already stopped"
        rules = {
            Macro.CONTINUE: self._budget_spent,
            Macro.THINK_BEGIN: self._why_not_think_begin,
            Macro.THINK_END: self._why_not_think_end,
            Macro.RESAMPLE: self._why_not_resample,
        }
        return rules.get(action, self._why_not_stop)()

    def _budget_spent(self) -> str | None:
        return f"the token budget of {self.budget} is spent" if self.tokens_left <= 0 else None

    def _why_not_think_begin(self) -> str | None:
        return "a thought is already open (thoughts do not nest)" if self.in_thought else self._budget_spent()

    def _why_not_think_end(self) -> str | None:
        if not self.in_thought:
            return "no thought is open"
        return "the open thought is still empty (CONTINUE first)" if self.last_action is Macro.THINK_BEGIN else None

    def _why_not_resample(self) -> str | None:
        if self.last_action not in _GENERATING:
            return "the previous action did not generate a span in the current mode"
        if self.resamples >= self.max_resamples:
            return f"{self.resamples} resamples in a row already (max_resamples={self.max_resamples})"
        return self._budget_spent()

    def _why_not_stop(self) -> str | None:
        if self.in_thought:
            return "a thought is still open (THINK_END first)"
        if not self.visible_text.strip() and self.tokens_left > 0:
            return "there is no visible text yet"
        return None

    def legal_actions(self) -> tuple[Macro, ...]:
        """The legal actions in :data:`MACROS` order; empty only after STOP."""
        return tuple(action for action in MACROS if self.why_illegal(action) is None)

    def apply(self, action: Macro | str, span: Span | None = None) -> MacroState:
        """The state after ``action``. CONTINUE and RESAMPLE take the generated ``span``; the others none.

        Raises :class:`MacroActionError` (naming the action and the reason) for an illegal action or a
        span that does not fit; ``self`` never changes.
        """
        action = as_macro(action)
        reason = self.why_illegal(action) or self._span_problem(action, span)
        if reason:
            raise MacroActionError(f"{action.name} is illegal: {reason}.")
        common = {"last_action": action, "resamples": 0}
        if action is Macro.CONTINUE:
            return replace(self, spans=self.spans + (span,), **common)
        if action is Macro.RESAMPLE:
            return replace(
                self,
                spans=self.spans[:-1] + (span,),
                last_action=action,
                resamples=self.resamples + 1,
                total_resamples=self.total_resamples + 1,
            )
        if action is Macro.THINK_BEGIN:
            return replace(self, in_thought=True, **common)
        if action is Macro.THINK_END:
            return replace(self, in_thought=False, **common)
        return replace(self, stopped=True, **common)

    def _span_problem(self, action: Macro, span: Span | None) -> str | None:
        if action not in _GENERATING:
            return None if span is None else "it takes no span"
        if not isinstance(span, Span):
            return "it needs the generated span"
        if span.thought != self.in_thought:
            mode = "inside a thought" if self.in_thought else "outside a thought"
            return f"{mode} the span must have thought={self.in_thought}"
        if len(span) == 0:
            return "the span is empty (an immediate end of sequence is a reason to STOP or RESAMPLE)"
        room = self.tokens_left + (len(self.spans[-1]) if action is Macro.RESAMPLE else 0)
        if len(span) > room:
            return f"the span has {len(span)} tokens but only {room} fit the budget"
        return None


def as_macro(action: Macro | str) -> Macro:
    """``action`` as a :class:`Macro`; a name such as ``"continue"`` or ``"CONTINUE"`` is accepted."""
    if isinstance(action, Macro):
        return action
    try:
        return Macro(str(action).lower())  # "continue" or "CONTINUE"
    except ValueError:
        names = ", ".join(m.value for m in MACROS)
        raise MacroActionError(f"'{action}' is not a macro-action; use one of {names}.") from None


def action_mask(state: MacroState) -> tuple[bool, ...]:
    """One flag per action of :data:`MACROS`: True where the action is legal (for a policy network)."""
    legal = state.legal_actions()
    return tuple(action in legal for action in MACROS)


def closing_action(state: MacroState) -> Macro:
    """The action of the simple closing policy: close an open thought, then STOP; CONTINUE (generate)
    while neither is legal yet. It reaches STOP from every state (the episode's no-dead-end guarantee)."""
    legal = state.legal_actions()
    for action in (Macro.THINK_END, Macro.STOP, Macro.CONTINUE):
        if action in legal:
            return action
    raise MacroActionError("STOP is illegal: the episode has already stopped.")


# --- what an episode may show -----------------------------------------------------------------------------
def trace_step(action: Macro, span: Span | None = None, ms: float = 0.0, fed: int | None = None) -> dict:
    """The trace entry of one macro-action: ``action``, ``tokens`` (kept span tokens), ``fed`` (tokens run
    through the model, when given), ``ms`` and, for spans, ``thought`` and ``text`` — a thought span's text
    is replaced by :data:`THOUGHT_PLACEHOLDER`."""
    step: dict[str, Any] = {"action": action.value, "tokens": len(span) if span else 0}
    if fed is not None:
        step["fed"] = fed
    step["ms"] = round(ms, 2)
    if span is not None:
        step["thought"] = span.thought
        step["text"] = THOUGHT_PLACEHOLDER if span.thought else span.text
    return step


def redact_trace(trace: Sequence[dict]) -> list[dict]:
    """A copy of ``trace`` with the text of every thought step replaced (defence in depth for any controller)."""
    return [{**step, "text": THOUGHT_PLACEHOLDER} if step.get("thought") else dict(step) for step in trace]


@dataclass
class ControllerResult:
    """One finished episode, safe to show: visible text, a redacted macro trace and counts.

    ``macro_trace`` has one dict per macro-action (see :func:`trace_step`). ``tokens`` counts every kept
    token, thoughts included; ``thought_tokens`` the thought part of it.
    """

    visible_text: str
    macro_trace: list[dict] = field(default_factory=list)
    tokens: int = 0
    thought_tokens: int = 0
    total_ms: float = 0.0


@runtime_checkable
class Controller(Protocol):
    """Anything that answers a prompt within a token budget by macro-actions."""

    def run(self, prompt: str, budget: int, seed: int) -> ControllerResult:
        """Run one episode to STOP and return what may be shown."""
        ...
