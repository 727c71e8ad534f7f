"""Chapter 08 hints: given only when a task is stuck, in order, with backoff, a seeded coin and a cap on refusals;
analytics per decision and a state that resumes exactly."""

from __future__ import annotations

import json

import pytest

from slmlab.execution.tasks import CodeTask, TestCase
from slmlab.rl.hints import HintConfig, HintSchedule, HintStateError, prompt_with_hint

HINTS = tuple(f"hint {i}" for i in range(10))


def make_task(name: str = "add_two", hints: tuple[str, ...] = HINTS) -> CodeTask:
    return CodeTask(
        name=name,
        prompt="Write add_two(x).",
        kind="function",
        entry_point="add_two",
        signature=None,
        tests=(TestCase([1], 3),),
        test_code=None,
        hints=hints,
    )


def run(schedule: HintSchedule, task: CodeTask, scores: list[float]) -> list[int]:
    """Asks for a hint before each attempt, records its score; the attempts at which a hint was given."""
    given = []
    for score in scores:
        attempt = schedule.attempts(task)
        if schedule.hint_for(task) is not None:
            given.append(attempt)
        schedule.record(task, score)
    return given


def test_an_improving_task_is_never_stuck():
    schedule, task = HintSchedule(HintConfig(hint_probability=1.0)), make_task()
    assert run(schedule, task, [0.01 * i for i in range(60)]) == []
    assert not schedule.events()["stuck"].any()


def test_a_flat_window_makes_a_task_stuck():
    schedule, task = HintSchedule(HintConfig(window=8, hint_probability=1.0)), make_task()
    for _ in range(8):
        schedule.record(task, 0.1)
    assert not schedule.is_stuck(task)  # no attempt before the window yet
    schedule.record(task, 0.12)  # an improvement within min_improvement
    assert schedule.is_stuck(task)
    assert schedule.hint_for(task) == "hint 0"
    schedule.record(task, 0.5)  # a real improvement ends it
    assert not schedule.is_stuck(task)


def test_a_solved_task_is_not_stuck():
    schedule, task = HintSchedule(HintConfig(hint_probability=1.0)), make_task()
    assert run(schedule, task, [1.0] * 30) == []


def test_backoff_doubles_and_is_capped():
    config = HintConfig(window=8, hint_probability=1.0, base_backoff=4, backoff_factor=2.0, max_backoff=64)
    schedule, task = HintSchedule(config), make_task()
    assert run(schedule, task, [0.0] * 200) == [9, 13, 21, 37, 69, 133, 197]
    assert [config.backoff_after(k) for k in range(7)] == [0, 4, 8, 16, 32, 64, 64]


def test_probability_zero_never_gives_a_hint():
    schedule, task = HintSchedule(HintConfig(hint_probability=0.0)), make_task()
    assert run(schedule, task, [0.0] * 200) == []
    assert schedule.summary()["given"] == 0 and schedule.summary()["stuck"] > 0


def test_hints_come_in_order_and_run_out():
    schedule, task = HintSchedule(HintConfig(hint_probability=1.0, max_backoff=4)), make_task(hints=("a", "b", "c"))
    shown = []
    for _ in range(80):
        hint = schedule.hint_for(task)
        if hint is not None:
            shown.append(hint)
        schedule.record(task, 0.0)
    assert shown == ["a", "b", "c"]
    assert HintSchedule(HintConfig(hint_probability=1.0)).hint_for(make_task(hints=())) is None


def test_a_second_call_for_the_same_attempt_repeats_the_decision():
    schedule, task = HintSchedule(HintConfig(hint_probability=1.0)), make_task()
    for _ in range(9):
        schedule.record(task, 0.0)
    assert schedule.hint_for(task) == schedule.hint_for(task) == "hint 0"
    assert len(schedule.events()) == 1


def test_the_cap_forces_a_hint_after_refused_stuck_checks():
    # a coin that almost never says yes: every hint comes from the cap, after exactly max_stuck_checks refusals
    config = HintConfig(window=8, hint_probability=1e-9, max_stuck_checks=3, base_backoff=4, max_backoff=4)
    schedule, task = HintSchedule(config), make_task()
    given = run(schedule, task, [0.0] * 40)
    assert given == [12, 19, 26, 33]  # 3 refusals, a forced hint, 3 attempts of backoff (not counted), ...
    events = schedule.events()
    assert events.loc[events["given"], "forced"].all()
    assert schedule.summary()["forced"] == 4
    # a cap of 0 gives a hint at the first stuck check
    assert run(HintSchedule(HintConfig(hint_probability=1e-9, max_stuck_checks=0)), make_task(), [0.0] * 10) == [9]


def test_a_non_stuck_check_ends_the_streak_of_refusals():
    config = HintConfig(window=2, min_improvement=0.05, hint_probability=1e-9, max_stuck_checks=2)
    schedule, task = HintSchedule(config), make_task()
    scores = [0.0, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.3, 0.3]  # stuck at 3, 4; improving at 5, 6; stuck again at 7, 8
    assert run(schedule, task, scores) == []
    assert run(schedule, task, [0.3]) == [9]


def test_analytics_rows_and_score_after():
    schedule, task = HintSchedule(HintConfig(hint_probability=1.0)), make_task()
    run(schedule, task, [0.2] * 9 + [0.7, 0.7])
    events = schedule.events()
    assert len(events) == 11 and list(events["attempt"]) == list(range(11))
    row = events[events["given"]].iloc[0]
    assert (row["attempt"], row["hint_index"], row["stuck"], row["requested"]) == (9, 0, True, True)
    assert (row["best_before"], row["score_before"], row["score_after"]) == (0.2, 0.2, 0.7)
    assert events["score_after"].notna().all()
    summary = schedule.summary()
    assert summary["given"] == 1 and summary["requested"] == 1 and summary["checks"] == 11
    assert summary["mean_score_change_after_hint"] == pytest.approx(0.5)
    schedule.hint_for(task)
    assert schedule.events()["score_after"].isna().sum() == 1  # the attempt not yet scored


def interleaved(schedule: HintSchedule, tasks: list[CodeTask], steps: range) -> None:
    """One attempt per task per step, as a training loop over a task set makes them."""
    for step in steps:
        for number, task in enumerate(tasks):
            schedule.hint_for(task)
            schedule.record(task, round(0.1 + 0.0125 * ((step * 7 + number) % 5), 4))


def test_state_round_trip_continues_exactly():
    config = HintConfig(window=4, hint_probability=0.5, max_stuck_checks=2, base_backoff=2, seed=3)
    tasks = [make_task("alpha"), make_task("beta"), make_task("gamma", hints=("only",))]
    whole = HintSchedule(config)
    interleaved(whole, tasks, range(60))
    split = HintSchedule(config)
    interleaved(split, tasks, range(23))
    resumed = HintSchedule(config)
    resumed.load_state_dict(json.loads(json.dumps(split.state_dict())))
    interleaved(resumed, tasks, range(23, 60))
    assert resumed.events().equals(whole.events())
    assert resumed.state_dict() == whole.state_dict()
    assert 3 < whole.summary()["given"] < whole.summary()["requested"]
    # saved between a decision and the score of its attempt: the decision is repeated, its score_after filled later
    midway = HintSchedule(config)
    interleaved(midway, tasks, range(23))
    decided = [midway.hint_for(task) for task in tasks]
    again = HintSchedule(config)
    again.load_state_dict(json.loads(json.dumps(midway.state_dict())))
    assert [again.hint_for(task) for task in tasks] == decided
    interleaved(again, tasks, range(23, 60))
    assert again.events().equals(whole.events())


def test_loading_another_config_is_refused():
    state = HintSchedule(HintConfig(seed=1)).state_dict()
    with pytest.raises(HintStateError, match="config"):
        HintSchedule(HintConfig(seed=2)).load_state_dict(state)
    with pytest.raises(HintStateError, match="version"):
        HintSchedule(HintConfig(seed=1)).load_state_dict({**state, "version": 99})


def test_same_seed_same_decisions_other_seed_differs():
    def given(seed: int) -> list[int]:
        config = HintConfig(window=4, hint_probability=0.3, max_stuck_checks=50, base_backoff=1, max_backoff=1, seed=seed)
        return run(HintSchedule(config), make_task(hints=HINTS * 20), [0.0] * 300)

    assert given(7) == given(7)
    assert given(7) != given(8)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="hint_probability"):
        HintConfig(hint_probability=1.5)
    with pytest.raises(ValueError, match="max_backoff"):
        HintConfig(base_backoff=10, max_backoff=5)


def test_prompt_with_hint_appends_the_hint():
    assert prompt_with_hint("Write f.\n", "use a loop") == "Write f.\n\nHint: use a loop\n"
