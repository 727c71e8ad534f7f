"""Chapter 06 macro-actions: each rule on its own, then random episodes that must keep the invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmlab.errors import SlmLabError
from slmlab.mcts.macro import MACROS, Macro, MacroActionError, MacroState, Span, action_mask, closing_action

C, TB, TE, R, S = Macro.CONTINUE, Macro.THINK_BEGIN, Macro.THINK_END, Macro.RESAMPLE, Macro.STOP
# derandomized and without an example database, so CI sees the same examples every run
PROPERTY = settings(max_examples=150, derandomize=True, database=None, deadline=None)


def span(state: MacroState, tokens: int = 2, seed: int = 0) -> Span:
    """A span in the state's current mode; thought text is '#', visible text 'v', so leaks are visible."""
    char = "#" if state.in_thought else "v"
    return Span(char * tokens, tuple(range(tokens)), thought=state.in_thought, seed=seed, temperature=0.7)


def step(state: MacroState, action: Macro, tokens: int = 2) -> MacroState:
    return state.apply(action, span(state, tokens) if action in (C, R) else None)


def run(actions, budget: int = 20, **kwargs) -> MacroState:
    state = MacroState(budget=budget, **kwargs)
    for action in actions:
        state = step(state, action)
    return state


# --- one rule at a time -----------------------------------------------------------------------------
def test_a_fresh_state_can_only_generate_or_think():
    state = MacroState(budget=10)
    assert state.legal_actions() == (C, TB)
    assert action_mask(state) == (True, True, False, False, False)
    assert MACROS == (C, TB, TE, R, S)


def test_continue_appends_visible_text():
    state = run([C, C])
    assert state.visible_text == "vvvv" and state.tokens_used == 4 and state.tokens_left == 16
    assert state.thought_text == "" and not state.is_final


def test_thoughts_do_not_nest():
    state = run([TB])
    with pytest.raises(MacroActionError, match=r"THINK_BEGIN is illegal: a thought is already open \(thoughts"):
        step(state, TB)


def test_think_end_needs_an_open_thought_that_holds_a_span():
    with pytest.raises(MacroActionError, match="THINK_END is illegal: no thought is open"):
        step(run([C]), TE)
    with pytest.raises(MacroActionError, match="THINK_END is illegal: the open thought is still empty"):
        step(run([TB]), TE)
    closed = run([TB, C, TE, C])
    assert closed.thought_text == "##" and closed.visible_text == "vv" and not closed.in_thought


def test_thought_spans_must_match_the_mode():
    state = run([TB])
    with pytest.raises(MacroActionError, match="inside a thought the span must have thought=True"):
        state.apply(C, Span("v", (1,), thought=False))
    with pytest.raises(MacroActionError, match="outside a thought the span must have thought=False"):
        MacroState().apply(C, Span("#", (1,), thought=True))


def test_generating_actions_need_a_non_empty_span_and_the_others_none():
    with pytest.raises(MacroActionError, match="CONTINUE is illegal: it needs the generated span"):
        MacroState().apply(C)
    with pytest.raises(MacroActionError, match="CONTINUE is illegal: the span is empty"):
        MacroState().apply(C, Span("", ()))
    with pytest.raises(MacroActionError, match="THINK_BEGIN is illegal: it takes no span"):
        MacroState().apply(TB, Span("v", (1,)))
    with pytest.raises(MacroActionError, match="RESAMPLE is illegal: it needs the generated span"):
        run([C]).apply(R)


def test_resample_replaces_the_last_span():
    state = run([C])
    again = state.apply(R, Span("w", (9,), seed=1, temperature=1.0))
    assert again.visible_text == "w" and again.tokens_used == 1
    assert again.resamples == 1 and again.total_resamples == 1 and len(again.spans) == 1


@pytest.mark.parametrize("actions", [[], [TB], [C, TB], [TB, C, TE], [C, S]])
def test_resample_needs_a_span_generated_in_the_current_mode(actions):
    state = run(actions)
    assert R not in state.legal_actions()
    with pytest.raises(MacroActionError, match="RESAMPLE is illegal"):
        step(state, R)


def test_resample_inside_a_thought_replaces_the_thought_span():
    state = run([C, TB, C])
    assert R in state.legal_actions()
    assert step(state, R, tokens=1).thought_text == "#" and state.visible_text == "vv"


def test_resamples_in_a_row_are_capped():
    with pytest.raises(MacroActionError, match=r"2 resamples in a row already \(max_resamples=2\)"):
        step(run([C, R, R], max_resamples=2), R)
    state = run([C, R, R, R])
    assert R not in state.legal_actions() and state.total_resamples == 3
    state = run([C, R, R, R, C, R])  # a CONTINUE resets the count, the total keeps counting
    assert state.resamples == 1 and state.total_resamples == 4


def test_resample_may_reuse_the_tokens_it_gives_back():
    state = run([C], budget=3)  # 2 used, 1 left; the old span's 2 come back
    assert step(state, R, tokens=3).tokens_used == 3
    with pytest.raises(MacroActionError, match="the span has 4 tokens but only 3 fit the budget"):
        step(state, R, tokens=4)


def test_stop_needs_visible_text_and_a_closed_thought():
    with pytest.raises(MacroActionError, match="STOP is illegal: there is no visible text yet"):
        step(MacroState(), S)
    with pytest.raises(MacroActionError, match="STOP is illegal: there is no visible text yet"):
        MacroState().apply(C, Span("  \n", (1, 2))).apply(S)  # whitespace is no answer
    with pytest.raises(MacroActionError, match=r"STOP is illegal: a thought is still open \(THINK_END first\)"):
        step(run([C, TB, C]), S)
    done = run([C, TB, C, TE, S])
    assert done.is_final and done.visible_text == "vv" and done.thought_text == "##"


def test_nothing_is_legal_after_stop():
    done = run([C, S])
    assert done.legal_actions() == () and action_mask(done) == (False,) * len(MACROS)
    for action in MACROS:
        with pytest.raises(MacroActionError, match=f"{action.name} is illegal: the episode has already stopped"):
            step(done, action)


def test_a_spent_budget_leaves_only_the_closing_actions():
    with pytest.raises(MacroActionError, match="the span has 5 tokens but only 4 fit the budget"):
        step(MacroState(budget=4), C, tokens=5)
    in_thought = step(step(MacroState(budget=4), TB), C, tokens=4)
    assert in_thought.tokens_left == 0 and in_thought.legal_actions() == (TE,)
    with pytest.raises(MacroActionError, match="CONTINUE is illegal: the token budget of 4 is spent"):
        step(in_thought, C)
    closed = step(in_thought, TE)
    assert closed.legal_actions() == (S,)  # no visible text, but a spent budget must still end
    assert step(closed, S).visible_text == ""
    visible = step(MacroState(budget=4), C, tokens=4)
    assert visible.legal_actions() == (S,)


def test_actions_are_accepted_by_value_or_name_and_unknown_ones_are_named():
    assert MacroState().apply("think_begin").in_thought and MacroState().apply("THINK_BEGIN").in_thought
    with pytest.raises(MacroActionError, match="'jump' is not a macro-action; use one of continue, think_begin"):
        MacroState().apply("jump")
    assert issubclass(MacroActionError, SlmLabError)


def test_bad_states_and_spans_are_refused():
    with pytest.raises(ValueError, match="budget must be >= 1"):
        MacroState(budget=0)
    with pytest.raises(ValueError, match="over the budget of 1"):
        MacroState(budget=1, spans=(Span("vv", (1, 2)),))
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        Span("v", (1,), temperature=-1)
    assert Span("v", [1, 2]).token_ids == (1, 2)


def test_closing_policy_from_a_fresh_state():
    state, actions = MacroState(budget=5), []
    while not state.is_final:
        actions.append(closing_action(state))
        state = step(state, actions[-1], tokens=1)
    assert actions == [C, S]
    with pytest.raises(MacroActionError, match="already stopped"):
        closing_action(state)


# --- random episodes --------------------------------------------------------------------------------
budgets = st.integers(min_value=1, max_value=12)
max_resamples = st.integers(min_value=0, max_value=3)


def check_invariants(state: MacroState, depth: int) -> None:
    """What must hold in every reachable state (``depth``: thoughts opened minus closed, counted apart)."""
    assert depth in (0, 1) and bool(depth) == state.in_thought, "a thought nested or closed twice"
    assert 0 <= state.tokens_used <= state.budget
    assert all(len(s) > 0 for s in state.spans)
    assert 0 <= state.resamples <= min(state.max_resamples, state.total_resamples)
    legal = state.legal_actions()
    assert action_mask(state) == tuple(a in legal for a in MACROS)
    assert bool(legal) != state.stopped, "no legal action before STOP, or one after"
    if R in legal:
        assert state.spans and state.spans[-1].thought == state.in_thought
    if TB in legal:
        assert not state.in_thought
    assert "#" not in state.visible_text and "v" not in state.thought_text
    if state.stopped:
        assert not state.in_thought


def drive_to_stop(state: MacroState, tokens: int) -> MacroState:
    """Follow the closing policy with spans of up to ``tokens`` tokens; it must reach STOP in time."""
    for _ in range(state.max_steps + 1):
        if state.is_final:
            return state
        state = step(state, closing_action(state), tokens=min(tokens, state.tokens_left))
    raise AssertionError("the closing policy did not reach STOP")


def depth_after(depth: int, action: Macro) -> int:
    return depth + (action is TB) - (action is TE)


@PROPERTY
@given(budget=budgets, cap=max_resamples, data=st.data())
def test_random_legal_episodes_keep_the_invariants_and_end(budget, cap, data):
    state, depth = MacroState(budget=budget, max_resamples=cap), 0
    check_invariants(state, depth)
    for _step in range(1, state.max_steps + 1):
        action = data.draw(st.sampled_from(state.legal_actions()), label="action")
        room = state.tokens_left + (len(state.spans[-1]) if action is R else 0)
        tokens = data.draw(st.integers(1, max(1, room)), label="tokens") if action in (C, R) else 0
        state, depth = step(state, action, tokens), depth_after(depth, action)
        check_invariants(state, depth)
        final = drive_to_stop(state, tokens=data.draw(st.integers(1, 4), label="closing span"))
        assert final.is_final and not final.in_thought and "#" not in final.visible_text
        if state.is_final:
            break
    assert state.is_final, f"no STOP within max_steps={state.max_steps}"


@PROPERTY
@given(
    budget=budgets,
    cap=max_resamples,
    moves=st.lists(st.tuples(st.sampled_from(MACROS), st.integers(-1, 6)), max_size=40),
)
def test_random_possibly_illegal_actions_raise_and_change_nothing(budget, cap, moves):
    state, depth = MacroState(budget=budget, max_resamples=cap), 0
    for action, tokens in moves:  # tokens -1: no span at all; 0: an empty span
        candidate = (
            None
            if tokens < 0
            else Span("#" * tokens if state.in_thought else "v" * tokens, tuple(range(tokens)), thought=state.in_thought)
        )
        before, legal = state, state.legal_actions()
        try:
            state = state.apply(action, candidate)
        except MacroActionError as error:
            assert action.name in str(error)
            assert state == before, "an illegal action changed the state"
            continue
        assert action in legal, f"{action.name} was applied although it is not legal"
        assert action not in (C, R) or candidate is not None, "a span-less CONTINUE or RESAMPLE went through"
        depth = depth_after(depth, action)
        check_invariants(state, depth)
    assert drive_to_stop(state, tokens=2).is_final
