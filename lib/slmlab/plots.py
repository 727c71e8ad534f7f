"""The drawing every chapter shares: loss curves with a moving mean, whitespace made visible in token labels, and a
picture that redraws in place in a notebook while a run trains. Chapter ``views`` modules build on these."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

VISIBLE = {" ": "·", "\n": "↵", "\t": "⇥"}  # how whitespace is drawn inside a token


def visible(text: str) -> str:
    """``text`` with spaces, newlines and tabs drawn as ``·``, ``↵`` and ``⇥``."""
    return "".join(VISIBLE.get(char, char) for char in text)


def moving_mean(values: Sequence[float], window: int) -> np.ndarray:
    """The mean of each value and up to ``window - 1`` before it (same length as ``values``)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or not len(values):
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def draw_losses(
    axis,
    train: Sequence[tuple[int, float]],
    valid: Sequence[tuple[int, float]],
    smooth: int = 1,
    colours: tuple[str | None, str | None] = (None, None),
    ylabel: str = "loss",
    legend: str = "best",
) -> None:
    """Train loss against step (with ``smooth`` > 1: faint, under its moving mean) and validation loss as dots."""
    train_colour, valid_colour = colours
    if train:
        steps, losses = zip(*train)
        if smooth > 1:
            axis.plot(steps, losses, color=train_colour, alpha=0.3, lw=0.8)
            axis.plot(steps, moving_mean(losses, smooth), color=train_colour, label="train")
        else:
            axis.plot(steps, losses, color=train_colour, lw=1, alpha=0.7, label="train")
    if valid:
        steps, losses = zip(*valid)
        axis.plot(steps, losses, "o-", color=valid_colour, label="valid")
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel)
    axis.legend(loc=legend)


def png_bytes(figure, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class LivePicture:
    """A picture that redraws in place: into an ``ipywidgets.Image`` ``target`` (its value becomes the PNG; safe from a
    training thread) or, with no target, an IPython display created at the first draw and updated after (under
    papermill the last picture stays in the executed notebook)."""

    def __init__(self, target=None):
        self.target, self.handle, self.draws = target, None, 0

    def show(self, png: bytes) -> None:
        if self.target is not None:
            self.target.value = png
        else:
            from IPython.display import DisplayHandle, Image

            if self.handle is None:
                self.handle = DisplayHandle()
                self.handle.display(Image(data=png))
            else:
                self.handle.update(Image(data=png))
        self.draws += 1
