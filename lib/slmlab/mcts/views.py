"""Pictures and tables for chapter 06's notebook: a search tree, a macro-trace, self-play rewards (also the reward
curve of a long run from its folder), the controller comparison, the policy-value network's training curves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from slmlab.mcts.macro import Macro
from slmlab.mcts.selfplay import episodes_done
from slmlab.plots import moving_mean
from slmlab.runlog import read_metrics

ACTION_COLOURS = {
    Macro.CONTINUE.value: "#4c72b0",
    Macro.THINK_BEGIN.value: "#dd8452",
    Macro.THINK_END.value: "#c44e52",
    Macro.RESAMPLE.value: "#8172b3",
    Macro.STOP.value: "#55a868",
}

METHOD_COLOURS = {
    "greedy": "#999999",
    "best-of-n": "#dd8452",
    "majority-vote": "#55a868",
    "mcts": "#4c72b0",
    "filtering": "#dd8452",
}


def _label(action) -> str:
    return getattr(action, "value", None) or ("root" if action is None else str(action))


def _layout(tree: dict) -> list[tuple[dict, float, int, tuple[float, int] | None]]:
    """(node, x, depth, parent position) for every node: leaves spaced evenly, a parent centred over its
    children. Written by hand because matplotlib has no tree layout and networkx's needs Graphviz."""
    placed: list[tuple[dict, float, int, tuple[float, int] | None]] = []
    next_leaf = [0.0]

    def place(node: dict, depth: int) -> float:
        xs = [place(child, depth + 1) for child in node["children"]]
        if xs:
            x = float(np.mean([xs[0], xs[-1]]))
        else:
            x, next_leaf[0] = next_leaf[0], next_leaf[0] + 1.0
        node["_x"] = x
        return x

    place(tree, 0)

    def collect(node: dict, depth: int, parent: tuple[float, int] | None) -> None:
        placed.append((node, node["_x"], depth, parent))
        for child in node["children"]:
            collect(child, depth + 1, (node["_x"], depth))

    collect(tree, 0, None)
    return placed


def _visits_and_value(node: dict) -> str:
    return f"{_label(node['action'])}\nN={node['visits']}  Q={node['value']:+.2f}"


def code_node_label(node: dict) -> str:
    """A node of :func:`~slmlab.mcts.code.describe_tree`: its action, the line it wrote (shortened), its visits and
    the visible-test pass rate of the program its value came from ("-" where none was run)."""
    line = node.get("line", "").strip()
    line = line if len(line) <= 22 else line[:21] + "…"
    rate = node.get("rate")
    shown = "-" if rate is None else f"{rate:.0%}"
    return f"{_label(node['action'])}\n{line}\nN={node['visits']}  visible {shown}"


def plot_search_tree(tree: dict, ax=None, title: str | None = None, label: Callable[[dict], str] = _visits_and_value):
    """Draw :func:`~slmlab.mcts.core.search_tree`'s dict: one box per visited node (``label``: action, visits N, mean
    value Q by default), edge width by visits, colour by macro-action. Returns the figure."""
    import matplotlib.pyplot as plt

    placed = _layout(tree)
    width = max(x for _, x, _, _ in placed) + 1
    depth = max(d for _, _, d, _ in placed) + 1
    if ax is None:
        _, ax = plt.subplots(figsize=(min(2.0 + 1.6 * width, 16), 1.2 + 1.5 * depth))
    most = max(node["visits"] for node, *_ in placed) or 1
    for node, x, d, parent in placed:
        if parent is not None:
            ax.plot([parent[0], x], [-parent[1], -d], color="#999999", lw=0.5 + 4 * node["visits"] / most, zorder=1)
    for node, x, d, _ in placed:
        action = _label(node["action"])
        colour = ACTION_COLOURS.get(action, "#777777")
        ax.text(
            x,
            -d,
            label(node),
            ha="center",
            va="center",
            fontsize=8,
            color="white",
            zorder=2,
            bbox={"boxstyle": "round,pad=0.3", "fc": colour, "ec": "none"},
        )
    ax.set_xlim(-0.8, width - 0.2)
    ax.set_ylim(-depth + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title or "search tree (visited nodes; edge width ∝ visits; Q from the chooser's side)")
    ax.figure.tight_layout()
    return ax.figure


def plot_code_tree(tree: dict, ax=None, title: str | None = None):
    """Draw a search over lines of code (:func:`~slmlab.mcts.code.describe_tree`): each box the line its action wrote
    and the visible-test pass rate that valued it."""
    return plot_search_tree(
        tree, ax, title or "search over lines (edge width ∝ visits; visible = share of visible tests passed)", code_node_label
    )


def trace_table(trace: Sequence[dict]) -> pd.DataFrame:
    """A macro-trace as a table: step, action, kept tokens, tokens fed, ms, thought flag and text."""
    rows = [
        {
            "step": i,
            "action": s["action"],
            "tokens": s.get("tokens", 0),
            "fed": s.get("fed", 0),
            "ms": s.get("ms", 0.0),
            "thought": bool(s.get("thought", False)),
            "text": s.get("text", ""),
        }
        for i, s in enumerate(trace)
    ]
    return pd.DataFrame(rows, columns=["step", "action", "tokens", "fed", "ms", "thought", "text"])


def plot_macro_trace(trace: Sequence[dict], ax=None, title: str = "macro-trace of one episode"):
    """One bar per macro-action, as long as the tokens it kept (markers and STOP get a thin sliver),
    coloured by action. Returns the figure."""
    import matplotlib.pyplot as plt

    table = trace_table(trace)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 1.8))
    left = 0.0
    for _, row in table.iterrows():
        size = max(float(row["tokens"]), 0.6)
        ax.barh(
            0,
            size,
            left=left,
            color=ACTION_COLOURS.get(row["action"], "#777777"),
            edgecolor="white",
            hatch="//" if row["thought"] else None,
        )
        ax.text(left + size / 2, 0, row["action"].replace("_", "\n"), ha="center", va="center", fontsize=7, color="white")
        left += size
    ax.set_yticks([])
    ax.set_xlabel("tokens kept (hatched: hidden thought)")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def plot_rewards(episodes: Sequence[dict], window: int = 5, ax=None):
    """Self-play reward per episode with a moving mean. Returns the figure."""
    import matplotlib.pyplot as plt

    rewards = np.array([e["reward"] for e in episodes], dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.plot(np.arange(len(rewards)), rewards, "o", ms=3, alpha=0.6, label="episode")
    if len(rewards) >= window > 1:  # the mean of full windows only
        ax.plot(np.arange(window - 1, len(rewards)), moving_mean(rewards, window)[window - 1 :], label=f"mean of {window}")
    ax.set_xlabel("self-play episode")
    ax.set_ylabel("reward")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    ax.figure.tight_layout()
    return ax.figure


def plot_reward_curve(run_dir: str | Path, window: int = 25, ax=None):
    """The self-play reward of every episode in a run folder's ``episodes.jsonl`` (dots) and its moving average
    over ``window`` episodes (line), for a long run. Returns the figure."""
    import matplotlib.pyplot as plt

    rewards = np.array([e["reward"] for e in episodes_done(run_dir)], dtype=float)
    if not len(rewards):
        raise ValueError(f"{run_dir} holds no finished self-play episode")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.2))
    episodes = np.arange(len(rewards))
    ax.plot(episodes, rewards, ".", ms=3, alpha=0.35, color="#4c72b0", label="episode reward")
    window = max(1, min(window, len(rewards)))
    average = moving_mean(rewards, window)[window - 1 :]  # full windows only
    ax.plot(episodes[window - 1 :], average, color="#c44e52", lw=2, label=f"moving average of {window}")
    ax.set_xlabel("self-play episode")
    ax.set_ylabel("reward")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"self-play reward over {len(rewards)} episodes")
    ax.legend(loc="upper left")
    ax.figure.tight_layout()
    return ax.figure


def plot_comparison(summary: pd.DataFrame):
    """Accuracy, tokens spent (with their multiple of greedy's) and median latency per method, side by side.
    Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    panels = (
        ("accuracy", "exact match (%)"),
        ("tokens_spent", "tokens spent per item"),
        ("latency_p50_ms", "median latency (ms)"),
    )
    for ax, (column, label) in zip(axes, panels):
        ax.bar(summary["method"], summary[column], color=[METHOD_COLOURS.get(m, "#777777") for m in summary["method"]])
        ax.set_title(label)
        ratios = summary["tokens_x_greedy"] if column == "tokens_spent" and "tokens_x_greedy" in summary else None
        for x, value in enumerate(summary[column]):
            text = f"{value:g}" if ratios is None else f"{value:g} ({ratios.iloc[x]:g}×)"
            ax.text(x, value, text, ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def plot_training(metrics_path: str | Path, ax=None, smooth: int = 1):
    """Policy, value and total loss against step from ``metrics.jsonl``; ``smooth`` > 1 draws a moving
    mean over that many steps. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    steps = np.array([r["step"] for r in records])
    for key, label in (("policy_loss", "policy"), ("value_loss", "value"), ("total_loss", "total")):
        values = np.array([r[key] for r in records], dtype=float)
        if smooth > 1 and len(values) >= smooth:  # full windows only
            ax.plot(steps[smooth - 1 :], moving_mean(values, smooth)[smooth - 1 :], label=label)
        else:
            ax.plot(steps, values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.figure.tight_layout()
    return ax.figure


def plot_code_comparison(summary: pd.DataFrame):
    """Part two's table drawn: hidden-test pass@1 per method, grouped by task set and model (base, adapter), each bar
    labelled with its tokens as a multiple of greedy's. Returns the figure."""
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(zip(summary["task_set"], summary["model"])))
    methods = list(dict.fromkeys(summary["method"]))
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * len(groups), 3.4))
    width = 0.8 / len(methods)
    for index, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index(["task_set", "model"]).reindex(groups)
        xs = np.arange(len(groups)) + (index - (len(methods) - 1) / 2) * width
        bars = ax.bar(xs, rows["pass_at_1"], width, label=method, color=METHOD_COLOURS.get(method, "#777777"))
        for bar, ratio in zip(bars, rows["tokens_x_greedy"]):
            ax.annotate(
                f"{ratio:.1f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7
            )
    ax.set_xticks(np.arange(len(groups)), [f"{task_set}\n{model}" for task_set, model in groups])
    ax.set_ylabel("pass@1 on hidden tests (%)")
    ax.set_ylim(0, 105)
    ax.set_title("greedy vs sampling + filtering vs MCTS (label: tokens × greedy's)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
