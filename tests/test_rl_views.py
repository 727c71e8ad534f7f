"""Chapter 08's pictures on small synthetic inputs: each returns a Figure with the expected axes and lines, and empty
input gives an empty-state figure or a ValueError as the module docstring says."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from slmlab.rl.monitor import token_report
from slmlab.rl.views import (
    plot_hint_events,
    plot_next_token_probabilities,
    plot_pass_at_1,
    plot_task_curves,
    plot_token_usage,
    plot_training_curves,
    plot_weight_histograms,
)

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def is_empty_state(figure: Figure) -> bool:
    return len(figure.axes) == 1 and not figure.axes[0].axison and len(figure.axes[0].texts) == 1


def test_weight_histograms_grid() -> None:
    rng = np.random.default_rng(0)
    histograms = {f"model.layers.{i}.mlp.up_proj.weight": np.histogram(rng.normal(size=100), bins=10) for i in range(4)}
    figure = plot_weight_histograms(histograms, columns=3)
    assert isinstance(figure, Figure) and len(figure.axes) == 4  # the fifth and sixth cells are removed
    assert len(plot_weight_histograms(dict(list(histograms.items())[:1])).axes) == 1
    with pytest.raises(ValueError):
        plot_weight_histograms({})


def next_token_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "position": range(n),
            "token_id": range(n),
            "token": [" x", "\n", "=", "1"][:n],
            "probability": [0.9, 0.2, 0.5, 0.05][:n],
            "entropy": [0.3, 2.1, 1.0, 3.0][:n],
            "alternatives": [["a"]] * n,
            "alternative_probabilities": [[0.9]] * n,
        }
    )


def test_next_token_probabilities_strip() -> None:
    figure = plot_next_token_probabilities(next_token_frame(4))
    bars, twin = figure.axes
    assert len(bars.patches) == 4 and len(twin.lines) == 1
    assert [label.get_text() for label in bars.get_xticklabels()] == ["·x", "↵", "=", "1"]
    with pytest.raises(ValueError):
        plot_next_token_probabilities(next_token_frame(0))


def test_training_curves_tolerate_missing_keys() -> None:
    records = [
        {
            "step": step,
            "reward": 0.1 * step,
            "pass_rate": 0.05 * step,
            "loss": 1.0 / step,
            "grad_norm": 0.5,
            "weight_change": 1e-4,
            "lr": 1e-4,
        }
        for step in range(1, 6)
    ]
    figure = plot_training_curves(records)
    assert len(figure.axes) == 6
    lines = [len(ax.lines) for ax in figure.axes]
    assert lines == [2, 1, 0, 2, 1, 0]  # entropy/kl and duplicate_rate/hints were not logged
    assert figure.axes[3].get_yscale() == "log"
    assert figure.axes[2].texts[0].get_text() == "not logged"
    full = [{**record, "temperature": 0.9, "duplicate_rate": 0.25, "hints": 1} for record in records]
    twins = plot_training_curves(full).axes
    assert len(twins) == 8 and [len(ax.lines) for ax in twins[6:]] == [1, 1]  # temperature and hints on their own axes
    assert is_empty_state(plot_training_curves([]))


def test_task_curves_lines_or_heatmap() -> None:
    few = pd.DataFrame({"a": [0.1, np.nan, 0.5], "b": [np.nan, 1.0, 1.0]}, index=pd.Index([1, 2, 3], name="step"))
    figure = plot_task_curves(few)
    assert len(figure.axes) == 1 and len(figure.axes[0].lines) == 2 and figure.axes[0].get_legend() is not None
    many = pd.DataFrame(np.random.default_rng(0).random((5, 20)), columns=[f"task{i}" for i in range(20)])
    heatmap = plot_task_curves(many)
    assert len(heatmap.axes) == 2 and len(heatmap.axes[0].images) == 1  # the heatmap and its colour bar
    assert is_empty_state(plot_task_curves(pd.DataFrame()))


def test_token_usage_with_and_without_references() -> None:
    codes = ["x = 1\ny = x\n", "x = 'a'\n"]
    assert len(plot_token_usage(token_report(codes)).axes) == 1
    figure = plot_token_usage(token_report(codes, reference_codes=["x = 2\n"]), top=5)
    assert len(figure.axes) == 3
    assert len(figure.axes[0].patches) == 5 and len(figure.axes[2].patches) == 1  # "2" is the only underused token
    assert is_empty_state(plot_token_usage(token_report([])))


def test_hint_events_before_and_after() -> None:
    events = pd.DataFrame(
        {
            "task": ["a", "a", "b"],
            "attempt": [9, 12, 9],
            "given": [True, False, True],
            "score_before": [0.1, 0.2, 0.5],
            "score_after": [0.6, 0.2, None],
        }
    )
    figure = plot_hint_events(events)
    ax = figure.axes[0]
    assert len(figure.axes) == 1 and len(ax.lines) == 2 and len(ax.collections) == 1
    assert [label.get_text() for label in ax.get_xticklabels()] == ["a @9", "b @9"]
    assert is_empty_state(plot_hint_events(events[~events["given"]]))


def test_pass_at_1_grouped_bars() -> None:
    before = pd.DataFrame({"tasks": [2, 3, 5], "pass_at_1": [0.0, 1 / 3, 0.2]}, index=["math", "strings", "all"])
    after = pd.DataFrame(
        {"tasks": [2, 3, 1, 6], "pass_at_1": [0.5, 2 / 3, 1.0, 2 / 3]}, index=["math", "strings", "lists", "all"]
    )
    figure = plot_pass_at_1(before, after)
    ax = figure.axes[0]
    assert len(figure.axes) == 1 and len(ax.patches) == 8  # four families, before and after
    assert [label.get_text() for label in ax.get_yticklabels()] == ["math", "strings", "lists", "all"]
    assert len(ax.texts) == 7  # "lists" has no value before
    with pytest.raises(ValueError):
        plot_pass_at_1(before.iloc[0:0], after.iloc[0:0])
