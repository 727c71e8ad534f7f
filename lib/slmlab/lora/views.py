"""Plots and widgets of chapters 01–04: pattern counts and browser, data statistics, the live loss plot,
and the baseline-vs-tuned comparison. The logic they draw lives in the sibling modules.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from slmlab.lora.datagen import SPLITS, dataset_stats, load_split
from slmlab.lora.patterns import Pattern, category_order, pattern_counts
from slmlab.plots import LivePicture, draw_losses, png_bytes
from slmlab.trainloop import TrainState


def plot_counts(patterns: Sequence[Pattern]):
    """Bar chart of patterns and paraphrases per category; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    counts = pattern_counts(patterns).set_index("category")
    figure, axis = plt.subplots(figsize=(7, 3.2))
    counts.plot.bar(ax=axis, color=["#4c72b0", "#dd8452"], rot=0)
    axis.set_xlabel("")
    axis.set_ylabel("count")
    axis.set_title(f"{len(patterns)} patterns, {int(counts['paraphrases'].sum())} paraphrases")
    for container in axis.containers:
        axis.bar_label(container, fontsize=8)
    figure.tight_layout()
    return figure


def render_pattern(pattern: Pattern) -> str:
    """A pattern as plain text: header, input, paraphrases, output."""
    lines = [
        f"{pattern.id} · {pattern.category} · {pattern.source}",
        "",
        "input:",
        f"  {pattern.input}",
        "",
        f"paraphrases ({len(pattern.paraphrases)}):",
    ]
    lines += [f"  - {text}" for text in pattern.paraphrases] or ["  (none)"]
    lines += ["", "output:"] + [f"  {line}" for line in pattern.output.splitlines()]
    return "\n".join(lines)


def pattern_browser(patterns: Sequence[Pattern]):
    """An ipywidgets browser: a category dropdown and a slider over that category's patterns.

    The returned widget has ``show(index) -> str``: it selects pattern ``index`` of the current category
    (what the slider does) and returns the text displayed, so a test can drive it without a kernel.
    """
    import ipywidgets as w

    patterns = list(patterns)
    style = {"description_width": "80px"}
    category = w.Dropdown(options=["all", *category_order(patterns)], value="all", description="Category", style=style)
    slider = w.IntSlider(
        value=0, min=0, max=max(len(patterns) - 1, 0), description="Pattern", style=style, continuous_update=True
    )
    view = w.HTML(layout=w.Layout(border="1px solid #ccc", padding="6px", width="95%"))

    def selection() -> list[Pattern]:
        return [p for p in patterns if category.value in ("all", p.category)]

    def render(_=None) -> str:
        chosen = selection()
        text = render_pattern(chosen[slider.value]) if chosen else "(no patterns)"
        view.value = f"<pre style='white-space: pre-wrap; margin: 0'>{html.escape(text)}</pre>"
        return text

    def change_category(_=None) -> None:
        slider.value = 0
        slider.max = max(len(selection()) - 1, 0)
        render()

    def show(index: int) -> str:
        slider.value = min(max(int(index), 0), slider.max)
        return render()

    category.observe(change_category, names="value")
    slider.observe(render, names="value")
    render()
    browser = w.VBox([w.HBox([category, slider]), view])
    browser.show = show  # lets a test or a notebook cell pick a pattern programmatically
    return browser


def plot_stats(folder: str | Path):
    """Rows per category and split (bars) and the prompt-length histogram; returns the figure."""
    import matplotlib.pyplot as plt
    import pandas as pd

    table = dataset_stats(folder).drop(index="total")
    lengths = pd.DataFrame(
        [{"split": s, "chars": len(r["messages"][0]["content"])} for s in SPLITS for r in load_split(folder, s)]
    )
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    table.plot.bar(ax=left, title="rows per category")
    left.tick_params(axis="x", rotation=0)
    for split in SPLITS:
        right.hist(lengths.loc[lengths["split"] == split, "chars"], bins=20, alpha=0.6, label=split)
    right.set_title("prompt length (characters)")
    right.legend()
    figure.tight_layout()
    return figure


def plot_losses(state_or_metrics, ax=None):
    """Train (thin) and valid (dots) loss against step, from a TrainState or training_metrics.json dict."""
    import matplotlib.pyplot as plt

    train = state_or_metrics["train_loss"] if isinstance(state_or_metrics, dict) else state_or_metrics.train_loss
    valid = state_or_metrics["valid_loss"] if isinstance(state_or_metrics, dict) else state_or_metrics.valid_loss
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    ax.clear()
    draw_losses(ax, train, valid)
    ax.figure.tight_layout()
    return ax.figure


class LiveLossPlot:
    """A callback that redraws the loss plot in a notebook every ``every`` steps and at each eval, in place (or into
    an ``ipywidgets.Image`` ``target``)."""

    def __init__(self, every: int = 10, target=None):
        import matplotlib.pyplot as plt

        self.every = every
        self.figure, self.ax = plt.subplots(figsize=(7, 3.2))
        plt.close(self.figure)
        self.picture = LivePicture(target)

    def __call__(self, event: str, state: TrainState) -> None:
        if event == "step" and state.step % self.every:
            return
        plot_losses(state, self.ax)
        self.picture.show(png_bytes(self.figure))


def plot_comparison(summary: dict):
    """Grouped bars: baseline vs tuned normalized accuracy per category and overall."""
    import pandas as pd

    rows = {
        cat: {
            "baseline": summary["baseline"]["per_category"][cat]["normalized"],
            "tuned": summary["tuned"]["per_category"].get(cat, {}).get("normalized", 0.0),
        }
        for cat in summary["baseline"]["per_category"]
    }
    rows["overall"] = {"baseline": summary["baseline"]["normalized_match"], "tuned": summary["tuned"]["normalized_match"]}
    frame = pd.DataFrame(rows).T
    axis = frame.plot.bar(figsize=(8, 3.4), color=["#999999", "#2a9d8f"], rot=0)
    axis.set_ylabel("normalized match (%)")
    axis.set_ylim(0, 100)
    axis.set_title(f"held-out test set: {summary['improvement']['normalized_match']:+.1f} points after LoRA")
    for container in axis.containers:
        axis.bar_label(container, fmt="%.0f", fontsize=8)
    axis.figure.tight_layout()
    return axis.figure
