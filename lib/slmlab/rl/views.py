"""Pictures for chapter 08's notebook: weight histograms, the policy's next-token probabilities, the training curves,
per-task rewards, token usage, hints and pass@1 before and after training. Every function returns its Figure.

Empty input: the pictures of things a short run may not have yet (training records, per-task curves, token usage,
given hints) draw an empty-state figure, one blank axis saying what is missing; the others (histograms, a next-token
table, pass@1 tables) raise ValueError, since empty input there is a mistake of the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from slmlab.plots import visible
from slmlab.rl.monitor import TokenReport

COLOURS = {"before": "#999999", "after": "#4c72b0", "over": "#c44e52", "under": "#55a868", "line": "#dd8452"}
MAX_LEGEND_TASKS = 12  # more tasks than this: a heatmap instead of one line per task
# The panels of plot_training_curves: (title, metrics drawn in it, scale). "log": a log y axis; "twin": the second
# metric on its own y axis at the right (a learning rate of 1e-4 next to a temperature of 1, a rate next to a count).
TRAINING_PANELS = (
    ("reward & pass rate", ("reward", "pass_rate"), "linear"),
    ("loss", ("loss",), "linear"),
    ("entropy & KL", ("entropy", "kl"), "linear"),
    ("grad norm & weight change", ("grad_norm", "weight_change"), "log"),
    ("learning rate & temperature", ("lr", "temperature"), "twin"),
    ("duplicate rate & hints", ("duplicate_rate", "hints"), "twin"),
)


def _empty_figure(message: str, figsize: tuple[float, float] = (6, 2.5)):
    """One blank axis with ``message`` in its middle: what a view shows when there is nothing to draw yet."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.axis("off")
    return fig


def plot_weight_histograms(histograms: Mapping[str, tuple[np.ndarray, np.ndarray]], columns: int = 3):
    """One panel per tensor of :func:`slmlab.rl.initialization.histogram_data`'s ``{name: (counts, edges)}``, in a grid
    ``columns`` wide (unused cells removed). Raises ValueError when there is no histogram."""
    import matplotlib.pyplot as plt

    if not histograms:
        raise ValueError("plot_weight_histograms needs at least one histogram.")
    columns = max(1, min(columns, len(histograms)))
    rows = math.ceil(len(histograms) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.4 * rows), squeeze=False)
    flat = axes.ravel()
    for ax, (name, (counts, edges)) in zip(flat, histograms.items()):
        ax.stairs(counts, edges, fill=True, color=COLOURS["after"], alpha=0.8)
        ax.set_title(name if len(name) <= 40 else "…" + name[-39:], fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in flat[len(histograms) :]:
        fig.delaxes(ax)
    fig.supxlabel("weight value", fontsize=9)
    fig.tight_layout()
    return fig


def plot_next_token_probabilities(table: pd.DataFrame):
    """:func:`slmlab.rl.monitor.next_token_table` as a strip: one bar per completion token, as high as (and coloured
    by) the probability the model gave it, the token as tick label, and the entropy (nats) as a line on a twin axis.
    Raises ValueError for an empty table."""
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("plot_next_token_probabilities needs a table with at least one completion token.")
    positions = np.arange(len(table))
    probabilities = table["probability"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(min(3 + 0.35 * len(table), 18), 3.4))
    ax.bar(positions, probabilities, color=plt.get_cmap("viridis")(probabilities), edgecolor="none")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("probability of the chosen token")
    ax.set_xticks(positions, [visible(str(token)) for token in table["token"]], rotation=70, fontsize=7, fontfamily="monospace")
    twin = ax.twinx()
    twin.plot(positions, table["entropy"].to_numpy(dtype=float), color=COLOURS["line"], marker=".", lw=1)
    twin.set_ylabel("entropy (nats)", color=COLOURS["line"])
    twin.set_ylim(bottom=0)
    ax.set_title("what the policy expected, token by token")
    fig.tight_layout()
    return fig


def _draw_panel(ax, steps: pd.Series, frame: pd.DataFrame, drawn: Sequence[str], scale: str) -> None:
    """The metrics ``drawn`` of one training panel (see ``TRAINING_PANELS`` for ``scale``), a legend when two share it."""
    if not drawn:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="#666666")
        return
    lines = []
    for index, key in enumerate(drawn):
        values = pd.to_numeric(frame[key], errors="coerce")
        target = ax.twinx() if scale == "twin" and index == 1 else ax
        if scale == "log":
            values = values.where(values > 0)
        lines += target.plot(steps, values, label=key.replace("_", " "), lw=1.2, color=f"C{index}")
        target.tick_params(labelsize=7)
    if scale == "log":
        ax.set_yscale("log")
    if len(lines) > 1:
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7)


def plot_training_curves(records: Sequence[Mapping[str, float]]):
    """The ``metrics.jsonl`` records of a run against step, in six panels (see ``TRAINING_PANELS``: grad norm and
    weight change on a log scale, learning rate and temperature, duplicate rate and hints on two y axes). A metric
    missing from every record is left out, a panel with none says so; no records at all give an empty-state figure."""
    import matplotlib.pyplot as plt

    if not records:
        return _empty_figure("no training steps logged yet")
    frame = pd.DataFrame(list(records))
    steps = frame["step"] if "step" in frame else pd.Series(np.arange(len(frame)))
    fig, axes = plt.subplots(2, 3, figsize=(13, 5.5), sharex=True)
    for ax, (title, keys, scale) in zip(axes.ravel(), TRAINING_PANELS):
        drawn = [key for key in keys if key in frame and frame[key].notna().any()]
        _draw_panel(ax, steps, frame, drawn, scale)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


def plot_task_curves(curves: pd.DataFrame):
    """:func:`slmlab.rl.monitor.per_task_curves` against step: one line per task with a legend for up to
    ``MAX_LEGEND_TASKS`` tasks, a heatmap (task x step, reward 0 to 1, blank where the task was not drawn) for more.
    An empty frame gives an empty-state figure."""
    import matplotlib.pyplot as plt

    if curves.empty or not len(curves.columns):
        return _empty_figure("no attempts recorded yet")
    if len(curves.columns) <= MAX_LEGEND_TASKS:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        for task in curves.columns:
            drawn = curves[task].dropna()
            ax.plot(drawn.index, drawn.to_numpy(), marker=".", lw=1, label=str(task))
        ax.set_ylabel("mean reward")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        fig, ax = plt.subplots(figsize=(9, min(1.5 + 0.18 * len(curves.columns), 14)))
        image = ax.imshow(
            curves.T.to_numpy(dtype=float),
            aspect="auto",
            cmap="viridis",
            vmin=0,
            vmax=1,
            interpolation="nearest",
            extent=(-0.5, len(curves) - 0.5, len(curves.columns) - 0.5, -0.5),
        )
        ax.set_yticks(np.arange(len(curves.columns)), [str(task) for task in curves.columns], fontsize=6)
        ticks = np.linspace(0, len(curves) - 1, min(len(curves), 8)).round().astype(int)
        ax.set_xticks(ticks, [str(curves.index[i]) for i in ticks])
        fig.colorbar(image, ax=ax, label="mean reward")
    ax.set_xlabel("step")
    ax.set_title("reward per task")
    fig.tight_layout()
    return fig


def plot_token_usage(report: TokenReport, top: int = 20):
    """The ``top`` most used tokens of a :class:`~slmlab.rl.monitor.TokenReport` and, when it has references, the
    tokens used more and less than in the reference solutions (log ratio of smoothed shares). A report without any
    token gives an empty-state figure."""
    import matplotlib.pyplot as plt

    if report.frequencies.empty:
        return _empty_figure("no tokens in the generated code")
    panels = [("most used tokens", report.frequencies.head(top), "share", COLOURS["after"])]
    if report.overused is not None and report.underused is not None:
        panels += [
            ("more than the references", report.overused.head(top), "log_ratio", COLOURS["over"]),
            ("less than the references", report.underused.head(top), "log_ratio", COLOURS["under"]),
        ]
    rows = max(len(table) for _, table, _, _ in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 1.2 + 0.22 * rows), squeeze=False)
    for ax, (title, table, column, colour) in zip(axes[0], panels):
        ax.barh(np.arange(len(table)), table[column].to_numpy(dtype=float), color=colour)
        ax.set_yticks(
            np.arange(len(table)), [visible(str(token)) for token in table["token"]], fontsize=7, fontfamily="monospace"
        )
        ax.invert_yaxis()
        ax.set_xlabel("share of tokens" if column == "share" else "log(generated / reference share)", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_hint_events(events: pd.DataFrame):
    """The hints :meth:`slmlab.rl.hints.HintSchedule.events` says were given: per hint (task and attempt on the x axis)
    the score of the attempt before it and of the attempt with it, joined by a line (green up, red down). No given
    hint gives an empty-state figure."""
    import matplotlib.pyplot as plt

    given = events[events["given"].astype(bool)] if "given" in events else events.iloc[0:0]
    if given.empty:
        return _empty_figure("no hint was given")
    positions = np.arange(len(given))
    before = pd.to_numeric(given["score_before"], errors="coerce").to_numpy(dtype=float)
    after = pd.to_numeric(given["score_after"], errors="coerce").to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(min(3 + 0.45 * len(given), 16), 3.4))
    colours = [COLOURS["under"] if b2 >= b1 else COLOURS["over"] for b1, b2 in zip(before, after)]
    ax.vlines(positions, before, after, colors=colours, lw=2)
    ax.plot(positions, before, "o", color=COLOURS["before"], label="score before the hint")
    ax.plot(positions, after, "o", color=COLOURS["after"], label="score with the hint")
    ax.set_xticks(
        positions,
        [f"{task} @{attempt}" for task, attempt in zip(given["task"], given["attempt"])],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("score")
    ax.set_title("hints given, and the score they led to")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_pass_at_1(before: pd.DataFrame, after: pd.DataFrame):
    """Greedy pass@1 per family before and after training, as grouped horizontal bars labelled with their value; the
    inputs are :func:`slmlab.rl.evaluate.by_family` tables (index family with an "all" row, column pass_at_1).
    Raises ValueError when both are empty."""
    import matplotlib.pyplot as plt

    if before.empty and after.empty:
        raise ValueError("plot_pass_at_1 needs at least one by_family table with rows.")
    families = [family for family in dict.fromkeys([*before.index, *after.index]) if family != "all"]
    if "all" in before.index or "all" in after.index:
        families.append("all")
    positions = np.arange(len(families))
    height = 0.38
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.5 * len(families)))
    for offset, (label, table) in zip((-height / 2, height / 2), (("before", before), ("after", after))):
        values = table["pass_at_1"].reindex(families).to_numpy(dtype=float) if len(table) else np.full(len(families), np.nan)
        bars = ax.barh(positions + offset, np.nan_to_num(values), height, color=COLOURS[label], label=label)
        for bar, value in zip(bars, values):
            if not math.isnan(value):
                ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.0%}", va="center", fontsize=7)
    ax.set_yticks(positions, families)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("greedy pass@1")
    ax.set_title("pass@1 per family, before and after training")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
