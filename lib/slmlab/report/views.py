"""Chapter 09's figures: one per report section, drawn from the gathered numbers (never from notebook objects).

Entry points: :func:`plot_section` (a matplotlib figure, or None when a section has nothing to plot) and
:func:`write_figures` (``results/report/figures/<key>.png`` and ``.pdf``). One style for all: 16:9 at 1920×1080,
large type that stays readable in a screen recording, the same colour for the same role in every chart.
"""

from __future__ import annotations

import textwrap
from collections import OrderedDict
from pathlib import Path

from slmlab.io import atomic_write
from slmlab.report.gather import NOT_RUN, OK, Section, format_value

FIGURE_INCHES, FIGURE_DPI = (12.8, 7.2), 150  # 1920×1080 pixels: a video frame
STYLE = {
    "font.size": 17,
    "axes.titlesize": 20,
    "axes.labelsize": 17,
    "xtick.labelsize": 15,
    "ytick.labelsize": 15,
    "legend.fontsize": 15,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "figure.titlesize": 22,
    "figure.titleweight": "bold",
}
BEFORE, AFTER, OTHER = "#9aa5b1", "#1f6fd1", "#e8833a"
SERIES_COLOURS = {  # the before of every lever is grey, its after blue
    "baseline": BEFORE,
    "before": BEFORE,
    "tuned": AFTER,
    "ACE": AFTER,
    "after": AFTER,
    "train": AFTER,
    "valid": OTHER,
    "test": BEFORE,
}

REFERENCE_GROUPS = ("greedy", "bigram")
TITLE_CHARACTERS = 60  # a longer title wraps rather than running off a 16:9 frame


def _charts(section: Section) -> OrderedDict[str, OrderedDict[str, OrderedDict[str, float]]]:
    """chart → group → series → value, in the order the numbers were read."""
    charts: OrderedDict = OrderedDict()
    for number in section.numbers:
        if number.chart and isinstance(number.value, (int, float)) and not isinstance(number.value, bool):
            charts.setdefault(number.chart, OrderedDict()).setdefault(number.group, OrderedDict())[number.series] = float(
                number.value
            )
    return charts


def _bar_text(value: float, crowded: bool) -> str:
    """A bar's label: whole numbers from 1000 up, else 4 significant digits (3 on a crowded chart)."""
    if value != value:  # NaN: this group has no such series
        return ""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}" if crowded else format_value(value)


def _bars(axes, chart: str, groups: OrderedDict[str, OrderedDict[str, float]]) -> None:
    series = list(OrderedDict.fromkeys(name for values in groups.values() for name in values))
    width = 0.8 / len(series)
    for index, name in enumerate(series):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        values = [groups[group].get(name, float("nan")) for group in groups]
        colour = SERIES_COLOURS.get(name)
        if len(series) == 1:  # one series: the reference group (greedy decoding, the bigram) grey, the rest blue
            colour = [BEFORE if group in REFERENCE_GROUPS else AFTER for group in groups]
        bars = axes.bar(positions, values, width * 0.92, label=name, color=colour)
        crowded = len(groups) * len(series) > 8  # narrow bars: fewer digits, smaller type, so labels never touch
        axes.bar_label(bars, labels=[_bar_text(v, crowded) for v in values], padding=3, fontsize=11 if crowded else 13)
    axes.set_xticks(
        range(len(groups)), list(groups), rotation=0 if len(groups) <= 6 else 30, ha="center" if len(groups) <= 6 else "right"
    )
    axes.set_ylabel(chart)
    axes.margins(y=0.15)
    shown = [v for values in groups.values() for v in values.values() if v == v]  # NaN: a series this group lacks
    if min(shown) >= 0:  # counts, rates and times start at zero; an all-zero chart gets a unit axis, not ±0.06
        axes.set_ylim(0, None if max(shown) > 0 else 1)
    if len(series) > 1:
        axes.legend(frameon=False)


def plot_section(section: Section, quick: bool = False):
    """The section's figure: one panel per chart of its numbers; None when it has none (or did not run)."""
    import matplotlib.pyplot as plt

    charts = _charts(section) if section.status == OK else {}
    if not charts:
        return None
    with plt.rc_context(STYLE):
        figure, panels = plt.subplots(1, len(charts), figsize=FIGURE_INCHES, squeeze=False, layout="constrained")
        for axes, (chart, groups) in zip(panels[0], charts.items()):
            _bars(axes, chart, groups)
            if "speed-up" in chart:
                axes.axhline(1.0, color="black", linewidth=1, linestyle="--")
        title = textwrap.fill(section.title, TITLE_CHARACTERS)
        figure.suptitle(title + ("\nquick mode: a pipeline check, not the chapter's figures" if quick else ""))
    return figure


def write_figures(sections: list[Section], out_dir: str | Path, quick: bool = False) -> list[Path]:
    """Every section's figure as PNG and PDF under ``out_dir``, each written atomically; the paths written."""
    import matplotlib.pyplot as plt

    out, written = Path(out_dir), []
    for section in sections:
        figure = plot_section(section, quick)
        if figure is None:
            continue
        for suffix in ("png", "pdf"):
            path = out / f"{section.key}.{suffix}"
            written.append(atomic_write(path, lambda tmp, s=suffix, f=figure: f.savefig(tmp, dpi=FIGURE_DPI, format=s)))
        plt.close(figure)
    return written


def section_frame(section: Section):
    """The section's figures as a table: figure, value (printed one way), source file, field, when made."""
    import pandas as pd

    rows = [
        {"figure": n.label, "value": format_value(n.value), "from": n.source, "field": n.field, "made": n.created}
        for n in section.numbers
    ]
    return pd.DataFrame(rows, columns=["figure", "value", "from", "field", "made"])


def overview_frame(sections: list[Section]):
    """One row per section: its status, how many figures it has, and the command that (re)makes it."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "section": s.title,
                "status": s.status,
                "figures": len(s.numbers),
                "note": s.problem,
                "command": s.command if s.status != OK else "",
            }
            for s in sections
        ]
    )


def show_section(sections: list[Section], key: str, quick: bool = False) -> None:
    """In a notebook: the section's table and figure, or the line saying why there is none."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    section = next(s for s in sections if s.key == key)
    if section.status != OK:
        reason = "Not run" if section.status == NOT_RUN else f"Unreadable ({section.problem})"
        display(Markdown(f"**{section.title}**: {reason}; `{section.command}` makes it."))
        return
    if quick:
        display(Markdown("*Quick mode: small sizes that check the pipeline; these are not the chapter's figures.*"))
    display(section_frame(section))
    figure = plot_section(section, quick)
    if figure is not None:
        plt.show()
