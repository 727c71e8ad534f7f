"""Pictures, tables and widgets for chapter 07's notebook: tokens with visible boundaries, the streaming loader's
memory, training curves (live and from the run's log), sampling strategies side by side, evaluation tables, and
ipywidgets panels to train, browse checkpoints and generate.

The widgets keep their logic in plain functions and small classes here, so tests drive them without a browser
(``button.click()``); a panel's helpers hang on the returned box (``panel.session``, ``panel.generate``, ...).
"""

from __future__ import annotations

import dataclasses
import html
import math
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from slmlab.checkpoints import checkpoint_step, checkpoints_dir, list_checkpoints, validation_loss
from slmlab.generation import DecodingConfig
from slmlab.models import load_model
from slmlab.playground import STYLE, DecodingControls, default_strategies
from slmlab.plots import LivePicture, draw_losses, moving_mean, png_bytes, visible
from slmlab.runlog import read_metrics
from slmlab.tinylm.evaluation import decode_raw
from slmlab.tinylm.tokenizer import merges, readable
from slmlab.tinylm.training import LMTrainConfig, LMTrainResult, train_lm
from slmlab.trainloop import IGNORE_INDEX, Callback, TrainState

if TYPE_CHECKING:
    from slmlab.backends.base import LanguageModel

PIECE_COLOURS = ("#dbe9f6", "#fde2c8", "#d9f0d3", "#eadcf3", "#f9d5d3")
CURVE_COLOURS = {"train": "#4c72b0", "valid": "#dd8452", "lr": "#55a868", "grad_norm": "#8172b3"}


# --- tokens -----------------------------------------------------------------------------------------------
def merges_table(tokenizer, n: int = 20) -> pd.DataFrame:
    """The first ``n`` merges the BPE learned, in order: left + right → merged (whitespace made visible)."""
    rows = [
        {"rank": rank, "left": visible(left), "right": visible(right), "merged": visible(left + right)}
        for rank, (left, right) in enumerate(merges(tokenizer, n), start=1)
    ]
    return pd.DataFrame(rows, columns=["rank", "left", "right", "merged"]).set_index("rank")


def pieces_html(pieces: Sequence[str], ids: Sequence[int] | None = None) -> str:
    """Each token as a coloured box (its id on hover), whitespace visible, HTML escaped; a newline also breaks
    the line so code keeps its shape."""
    spans = []
    for index, piece in enumerate(pieces):
        colour = PIECE_COLOURS[index % len(PIECE_COLOURS)]
        title = f' title="id {ids[index]}"' if ids is not None else ""
        spans.append(
            f'<span class="tok"{title} style="background:{colour};border:1px solid #999;border-radius:3px;'
            f'padding:0 1px;margin:0 1px">{html.escape(visible(piece))}</span>' + "<br>" * piece.count("\n")
        )
    return (
        '<div style="font-family:monospace;line-height:1.9;white-space:pre">' + "".join(spans) + "</div>"
        f"<p>{len(pieces)} tokens</p>"
    )


def token_view(tokenizer, text: str):
    """``text`` cut into the tokenizer's pieces, shown as HTML (an ``IPython.display.HTML``; ``.data`` is the HTML)."""
    from IPython.display import HTML

    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    pieces = [readable(token) for token in tokenizer.convert_ids_to_tokens(ids)]
    return HTML(pieces_html(pieces, ids))


def batch_table(batch: Mapping[str, object]) -> pd.DataFrame:
    """One row per tensor of a loader batch: shape, dtype, and how many positions are real (mask 1) or ignored."""
    rows = []
    for name, tensor in batch.items():
        values = tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)
        rows.append(
            {
                "tensor": name,
                "shape": tuple(values.shape),
                "dtype": str(values.dtype),
                "min": int(values.min()),
                "max": int(values.max()),
                f"ignored ({IGNORE_INDEX})": int((values == IGNORE_INDEX).sum()) if name == "labels" else 0,
            }
        )
    return pd.DataFrame(rows).set_index("tensor")


# --- the streaming loader's memory --------------------------------------------------------------------------
def plot_streaming_rss(table: pd.DataFrame):
    """Bars per corpus size: the token file's size against the resident memory the streaming run added."""
    import matplotlib.pyplot as plt

    labels = [f"{tokens / 1e6:g}M tokens" for tokens in table["corpus tokens"]]
    x = np.arange(len(table))
    figure, axis = plt.subplots(figsize=(6.5, 3.2))
    axis.bar(x - 0.2, table["file MB"], width=0.4, color="#999999", label="token file (MB)")
    axis.bar(x + 0.2, table["rss growth MB"], width=0.4, color=CURVE_COLOURS["train"], label="memory growth (MB)")
    for position, value in zip(x + 0.2, table["rss growth MB"]):
        axis.text(position, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(x, labels)
    axis.set_ylabel("MB")
    axis.set_title(f"streaming {int(table['batches'].iloc[0])} batches: memory stays flat as the corpus grows")
    axis.legend()
    figure.tight_layout()
    return figure


# --- the model --------------------------------------------------------------------------------------------
def parameter_table(model) -> pd.DataFrame:
    """Parameters by part of the decoder (embeddings, attention, MLP, norms, output layer), a tied matrix once."""
    parts: dict[str, int] = {}
    for name, parameter in model.named_parameters():  # a tied output matrix is listed once, as the embeddings
        part = (
            "embeddings"
            if "embed" in name
            else "attention"
            if "self_attn" in name
            else "MLP"
            if "mlp" in name
            else "norms"
            if "norm" in name
            else "output layer"
            if "lm_head" in name
            else "other"
        )
        parts[part] = parts.get(part, 0) + parameter.numel()
    table = pd.DataFrame({"parameters": pd.Series(parts)})
    table["share"] = (table["parameters"] / table["parameters"].sum()).round(3)
    table.loc["total"] = [table["parameters"].sum(), 1.0]
    table["parameters"] = table["parameters"].astype(int)
    return table


def plot_overfit(curve: Sequence[float], vocab_size: int | None = None):
    """The one-batch shape check: loss per step, with the loss of a uniform guess (ln V) for reference."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 3))
    axis.plot(np.arange(1, len(curve) + 1), curve, color=CURVE_COLOURS["train"], label="loss on the one batch")
    if vocab_size:
        axis.axhline(math.log(vocab_size), color="#999999", ls="--", label=f"ln {vocab_size} (uniform guess)")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (nats/token)")
    axis.set_title("overfitting one batch: the loss must fall towards zero")
    axis.legend()
    figure.tight_layout()
    return figure


# --- training curves --------------------------------------------------------------------------------------
def _draw_loss(axis, train: Sequence[tuple[int, float]], valid: Sequence[tuple[int, float]], window: int) -> None:
    colours = (CURVE_COLOURS["train"], CURVE_COLOURS["valid"])
    draw_losses(axis, train, valid, smooth=window, colours=colours, ylabel="loss (nats/token)", legend="upper right")


def _draw_series(axis, points: Sequence[tuple[int, float]], key: str, label: str) -> None:
    if points:
        steps, values = zip(*points)
        axis.plot(steps, values, color=CURVE_COLOURS[key])
    axis.set_xlabel("step")
    axis.set_ylabel(label)


class LivePlot:
    """A :func:`~slmlab.tinylm.training.train_lm` callback that redraws loss (train and valid) and learning rate
    in place every ``every`` steps, at each evaluation and at the end.

    ``target`` is an ``ipywidgets.Image`` or None (an IPython display updated in place): see
    :class:`slmlab.plots.LivePicture`. Drawn with matplotlib's object API, not pyplot, so a thread never touches
    pyplot's state.
    """

    def __init__(self, every: int = 10, target=None, smooth: int = 10, size: tuple[float, float] = (10.0, 3.2)):
        self.every, self.smooth, self.size = max(1, every), smooth, size
        self.picture = LivePicture(target)
        self.state: TrainState | None = None
        self.lr: list[tuple[int, float]] = []

    @property
    def target(self):
        return self.picture.target

    @property
    def handle(self):
        return self.picture.handle

    @property
    def draws(self) -> int:
        return self.picture.draws

    def __call__(self, event: str, state: TrainState) -> None:
        self.state = state
        if event == "step" and "lr" in state.scalars:
            self.lr.append((state.step, float(state.scalars["lr"])))
        if event in ("eval", "end") or (event == "step" and (state.step % self.every == 0 or len(self.lr) == 1)):
            self.draw()

    def figure(self):
        """The current picture as a matplotlib Figure (not registered with pyplot)."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=self.size)
        loss_axis, lr_axis = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        state = self.state or TrainState()
        _draw_loss(loss_axis, state.train_loss, state.valid_loss, self.smooth)
        _draw_series(lr_axis, self.lr, "lr", "learning rate")
        rate = f" · {state.tokens_per_second:,.0f} tokens/s" if state.trained_tokens else ""
        loss_axis.set_title(f"step {state.step}/{state.total_steps}{rate}")
        lr_axis.set_title("learning rate (warmup, cosine)")
        figure.tight_layout()
        return figure

    def png(self) -> bytes:
        return png_bytes(self.figure(), dpi=90)

    def draw(self) -> None:
        self.picture.show(self.png())


def loss_curves(run_dir: str | Path, smooth: int = 10):
    """Train loss, validation loss, learning rate and gradient norm (before clipping) of a run, from its
    ``metrics.jsonl``, as a 2×2 figure."""
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    series = {key: [(r["step"], r[key]) for r in records if key in r] for key in ("loss", "valid_loss", "lr", "grad_norm")}
    figure, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    _draw_loss(axes[0, 0], series["loss"], [], smooth)
    axes[0, 0].set_title(f"train loss (faint: per step; line: mean of {smooth})")
    _draw_loss(axes[0, 1], [], series["valid_loss"], smooth)
    if series["loss"]:
        steps, losses = zip(*series["loss"])
        axes[0, 1].plot(steps, moving_mean(losses, smooth), color=CURVE_COLOURS["train"], alpha=0.5, label="train (mean)")
        axes[0, 1].legend(loc="upper right")
    axes[0, 1].set_title("validation loss (held-out documents)")
    _draw_series(axes[1, 0], series["lr"], "lr", "learning rate")
    axes[1, 0].set_title("learning rate")
    _draw_series(axes[1, 1], series["grad_norm"], "grad_norm", "gradient norm")
    axes[1, 1].set_title("gradient norm before clipping")
    figure.tight_layout()
    return figure


# --- the training panel -----------------------------------------------------------------------------------
class TrainingSession:
    """One background training thread at a time on a run folder: :meth:`start` with a config, :meth:`stop`
    (the run ends after the current step and leaves a checkpoint), :meth:`start` again to resume."""

    def __init__(
        self,
        data_dir: str | Path,
        run_dir: str | Path,
        callbacks: Sequence[Callback] = (),
        tensorboard: bool = True,
        on_done: Callable[[TrainingSession], None] | None = None,
    ):
        self.data_dir, self.run_dir = Path(data_dir), Path(run_dir)
        self.callbacks, self.tensorboard, self.on_done = list(callbacks), tensorboard, on_done
        self.thread: threading.Thread | None = None
        self.active = False  # set while train_lm runs (off before on_done is called)
        self.stop_event = threading.Event()
        self.result: LMTrainResult | None = None
        self.error: BaseException | None = None
        self.first_step: int | None = None  # the first step this start trained (1 + the step it resumed from)
        self.last_step = 0

    @property
    def running(self) -> bool:
        return self.active

    def start(self, config: LMTrainConfig) -> bool:
        """Train in a background thread; False (nothing started) while a run is going."""
        if self.running:
            return False
        self.stop_event = threading.Event()
        self.result = self.error = self.first_step = None
        self.active = True
        self.thread = threading.Thread(target=self._train, args=(config,), name="slmlab-tiny-lm", daemon=True)
        self.thread.start()
        return True

    def stop(self) -> None:
        """Ask the run to end after its current step."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.thread is None or not self.thread.is_alive()

    def _watch(self, event: str, state: TrainState) -> None:
        if event == "step":
            self.first_step = state.step if self.first_step is None else self.first_step
            self.last_step = state.step

    def _train(self, config: LMTrainConfig) -> None:
        try:
            self.result = train_lm(
                self.data_dir,
                self.run_dir,
                config,
                callbacks=[self._watch, *self.callbacks],
                progress=False,
                stop=self.stop_event,
                tensorboard=self.tensorboard,
            )
        except BaseException as problem:  # shown in the panel: a thread's exception would otherwise vanish
            self.error = problem
        finally:
            self.active = False
            if self.on_done is not None:
                self.on_done(self)

    def describe(self) -> str:
        """One line on the latest start: running, stopped, finished or failed, and where it resumed."""
        resumed = f" (resumed after step {self.first_step - 1})" if self.first_step and self.first_step > 1 else ""
        if self.running:
            return f"training… step {self.last_step}{resumed}"
        if self.error is not None:
            return f"failed: {type(self.error).__name__}: {self.error}"
        if self.result is None:
            return "ready"
        verb = "stopped" if self.result.stopped else "finished"
        loss = self.result.final_valid_loss
        valid = f", validation loss {loss:.3f}" if loss == loss else ""
        return f"{verb} at step {self.result.state.step}{resumed}{valid}; checkpoints in {checkpoints_dir(self.run_dir)}"


def panel_config(config: LMTrainConfig, steps: int, learning_rate: float, batch_size: int) -> LMTrainConfig:
    """``config`` with the panel's settings."""
    return dataclasses.replace(config, steps=int(steps), learning_rate=float(learning_rate), batch_size=int(batch_size))


def training_panel(data_dir: str | Path, run_dir: str | Path, config: LMTrainConfig, every: int = 5, tensorboard: bool = True):
    """Steps, learning rate and batch size; Start (trains in a background thread, resuming the run folder's
    newest checkpoint made with the same settings) and Stop (ends after the current step with a checkpoint);
    a live loss plot. The box carries ``.session`` (a :class:`TrainingSession`) and ``.live`` (its LivePlot)."""
    import ipywidgets as w

    style = {"description_width": "110px"}
    steps = w.BoundedIntText(value=config.steps, min=1, max=1_000_000, description="Steps (total)", style=style)
    learning_rate = w.BoundedFloatText(
        value=config.learning_rate, min=1e-6, max=1.0, step=1e-4, description="Learning rate", style=style
    )
    batch_size = w.BoundedIntText(value=config.batch_size, min=1, max=4096, description="Batch size", style=style)
    start = w.Button(description="Start", button_style="success", icon="play")
    stop = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
    status = w.HTML(value="ready")
    picture = w.Image(format="png", layout=w.Layout(width="95%"))
    live = LivePlot(every=every, target=picture)

    def refresh(session: TrainingSession | None = None) -> None:
        start.disabled, stop.disabled = panel.session.running, not panel.session.running
        status.value = html.escape(panel.session.describe())

    def on_start(_=None) -> None:
        live.lr.clear()
        chosen = panel_config(config, steps.value, learning_rate.value, batch_size.value)
        if panel.session.start(chosen):
            refresh()

    def on_stop(_=None) -> None:
        panel.session.stop()
        status.value = html.escape("stopping after the current step…")

    def on_step(event: str, state: TrainState) -> None:
        if event == "step" and state.step % every == 0:
            status.value = html.escape(panel.session.describe())

    start.on_click(on_start)
    stop.on_click(on_stop)
    settings = w.HBox([w.VBox([steps, learning_rate, batch_size]), w.VBox([start, stop])])
    panel = w.VBox([settings, status, picture])
    panel.session = TrainingSession(data_dir, run_dir, callbacks=[live, on_step], tensorboard=tensorboard, on_done=refresh)
    panel.live = live
    return panel


# --- generation -------------------------------------------------------------------------------------------
def load_lm(folder: str | Path) -> LanguageModel:
    """A trained model folder (a run folder or one of its checkpoints) loaded on torch."""
    return load_model(str(folder), backend="torch")


def continuations(model: LanguageModel, prompts: Sequence[str], config: DecodingConfig) -> list[str]:
    """The new text after each prompt (one batch per ``config.batch_size`` prompts), exactly as generated:
    no chat template, and the leading whitespace that code continues with is kept."""
    ids = model.generate_ids(list(prompts), config, chat=False)
    return [decode_raw(model.hf_tokenizer, row) for row in ids]


def sample_batch(model: LanguageModel, prompt: str, config: DecodingConfig, n: int = 4) -> list[str]:
    """``n`` continuations of one prompt generated together in one batch (different draws when sampling)."""
    return continuations(model, [prompt] * n, config.with_(batch_size=max(n, 1)))


def compare_continuations(
    model: LanguageModel,
    prompts: Sequence[str],
    configs: Mapping[str, DecodingConfig] | None = None,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Every prompt continued as raw text (no chat template, whitespace kept: :func:`continuations`) under every
    decoding config (default: :func:`slmlab.playground.default_strategies`), all prompts of a config in one batch;
    one row per (prompt, strategy) with the continuation and seconds per prompt. A chat model's replies under the
    same strategies: :func:`slmlab.playground.compare_strategies`."""
    configs = configs or default_strategies(max_new_tokens=max_new_tokens, seed=seed)
    rows = []
    for label, config in configs.items():
        start = time.perf_counter()
        texts = continuations(model, prompts, config)
        seconds = (time.perf_counter() - start) / max(len(prompts), 1)
        rows += [
            {"prompt": prompt, "strategy": label, "continuation": text, "seconds": round(seconds, 3)}
            for prompt, text in zip(prompts, texts)
        ]
    return pd.DataFrame(rows, columns=["prompt", "strategy", "continuation", "seconds"])


def strategies_view(table: pd.DataFrame):
    """:func:`compare_continuations`' table as HTML: one row per strategy, one column per prompt, code kept as code."""
    from IPython.display import HTML

    prompts = list(dict.fromkeys(table["prompt"]))
    head = "".join(f"<th>{html.escape(visible(p))}</th>" for p in prompts)
    rows = []
    for strategy, group in table.groupby("strategy", sort=False):
        texts = dict(zip(group["prompt"], group["continuation"]))
        cells = "".join(
            f"<td style='vertical-align:top;text-align:left'><pre>{html.escape(p)}<b>"
            f"{html.escape(texts.get(p, ''))}</b></pre></td>"
            for p in prompts
        )
        rows.append(f"<tr><th>{html.escape(strategy)}</th>{cells}</tr>")
    return HTML(f"<table><tr><th>strategy</th>{head}</tr>{''.join(rows)}</table>")


def samples_html(prompt: str, texts: Sequence[str]) -> str:
    """Samples as HTML blocks: the prompt in grey, the continuation in bold, both escaped."""
    blocks = [
        f"<pre style='margin:4px 0;padding:4px;border:1px solid #ddd'><span style='color:#888'>"
        f"{html.escape(prompt)}</span><b>{html.escape(text)}</b></pre>"
        for text in texts
    ]
    return "".join(blocks)


def samples_view(prompt: str, texts: Sequence[str]):
    """:func:`samples_html` as an ``IPython.display.HTML``."""
    from IPython.display import HTML

    return HTML(samples_html(prompt, texts))


def generation_panel(
    model_dir: str | Path | None = None, model: LanguageModel | None = None, prompt: str = "def ", samples: int = 3
):
    """Prompt, strategy (greedy / sample / beam), temperature, top-k, top-p, beams, max new tokens, samples per
    batch, seed; Generate shows the continuations. Loads ``model_dir`` with ``slmlab.load_model`` unless a
    ``model`` is given. The box carries ``.generate()`` (the Generate button), ``.load(model)`` (another model,
    e.g. from :func:`checkpoints_panel`) and ``.replies`` (the latest texts)."""
    import ipywidgets as w

    prompt_box = w.Textarea(value=prompt, description="Prompt", layout=w.Layout(width="95%", height="70px"), style=STYLE)
    defaults = DecodingConfig(strategy="sample", temperature=0.8, top_k=40, top_p=0.95, max_new_tokens=48)
    decoding = DecodingControls(defaults, max_tokens_limit=256)
    count = w.IntSlider(value=samples, min=1, max=16, description="Samples (batch)", style=STYLE)
    button = w.Button(description="Generate", button_style="primary", icon="play")
    source = w.HTML()
    output = w.HTML(layout=w.Layout(width="95%"))

    def load(new_model: LanguageModel) -> None:
        panel.model = new_model
        source.value = html.escape(f"model: {new_model.path}")

    def generate(_=None) -> list[str]:
        try:
            config = decoding.config()
        except ValueError as problem:
            output.value = html.escape(str(problem))
            return []
        start = time.perf_counter()
        panel.replies = sample_batch(panel.model, prompt_box.value, config, count.value)
        seconds = time.perf_counter() - start
        output.value = samples_html(prompt_box.value, panel.replies) + html.escape(
            f"{config.describe()} · {count.value} in one batch · {seconds:.2f} s"
        )
        return panel.replies

    button.on_click(generate)
    controls = w.VBox([*decoding.widgets[:-1], count, decoding.seed, button])
    panel = w.VBox([source, prompt_box, controls, output])
    panel.replies, panel.generate, panel.load = [], generate, load
    load(model if model is not None else load_lm(model_dir))
    return panel


# --- checkpoints ------------------------------------------------------------------------------------------
def folder_megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def checkpoint_table(run_dir: str | Path) -> pd.DataFrame:
    """The run's complete checkpoints, oldest first: step, validation loss at that step, size and time saved."""
    rows = [
        {
            "step": checkpoint_step(path),
            "valid loss": validation_loss(path),
            "MB": round(folder_megabytes(path), 2),
            "saved": datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S"),
            "path": str(path),
        }
        for path in list_checkpoints(run_dir)
    ]
    return pd.DataFrame(rows, columns=["step", "valid loss", "MB", "saved", "path"])


def delete_checkpoint(folder: str | Path) -> None:
    """Remove one checkpoint folder (refusing anything that is not a checkpoint of a run)."""
    folder = Path(folder)
    if folder not in list_checkpoints(folder.parent.parent):
        raise ValueError(f"{folder} is not a complete checkpoint folder of a run")
    shutil.rmtree(folder)


def _checkpoint_label(row: Mapping) -> str:
    loss = row["valid loss"]
    shown = f"{loss:.3f}" if isinstance(loss, float) and loss == loss else "–"
    return f"step {row['step']:>6} · valid {shown} · {row['MB']:.1f} MB · {row['saved']}"


def checkpoints_panel(run_dir: str | Path, on_load: Callable[[LanguageModel], None] | None = None):
    """The run's checkpoints in a list; Load (``slmlab.load_model`` of that folder, handed to ``on_load`` — e.g. a
    generation panel's ``.load``), Delete (removes the folder) and Refresh. The box carries ``.refresh()``,
    ``.select(step)`` and ``.loaded`` (the latest model loaded)."""
    import ipywidgets as w

    chooser = w.Select(options=[], rows=6, layout=w.Layout(width="95%"), description="Checkpoints")
    load_button = w.Button(description="Load", button_style="primary", icon="upload")
    delete_button = w.Button(description="Delete", button_style="danger", icon="trash")
    refresh_button = w.Button(description="Refresh", icon="refresh")
    status = w.HTML()

    def refresh(_=None) -> pd.DataFrame:
        table = checkpoint_table(run_dir)
        chooser.options = [(_checkpoint_label(row), row["path"]) for row in table.to_dict("records")]
        chooser.value = chooser.options[-1][1] if chooser.options else None
        status.value = html.escape(f"{len(table)} checkpoints in {checkpoints_dir(run_dir)}")
        return table

    def select(step: int) -> None:
        chooser.value = next(path for _, path in chooser.options if checkpoint_step(Path(path)) == step)

    def load(_=None) -> None:
        if chooser.value is None:
            return
        panel.loaded = load_lm(chooser.value)
        status.value = html.escape(f"loaded {chooser.value}")
        if on_load is not None:
            on_load(panel.loaded)

    def delete(_=None) -> None:
        if chooser.value is None:
            return
        removed = chooser.value
        delete_checkpoint(removed)
        refresh()
        status.value = html.escape(f"deleted {removed}; {len(chooser.options)} left")

    load_button.on_click(load)
    delete_button.on_click(delete)
    refresh_button.on_click(refresh)
    panel = w.VBox([chooser, w.HBox([load_button, delete_button, refresh_button]), status])
    panel.refresh, panel.select, panel.loaded = refresh, select, None
    refresh()
    return panel


# --- evaluation -------------------------------------------------------------------------------------------
SCORE_COLUMNS = ("bits_per_byte", "perplexity", "loss_nats_per_token", "bleu", "rougeL")


def scores_table(report: Mapping) -> pd.DataFrame:
    """:func:`~slmlab.tinylm.runs.evaluate_run`'s report as one row per system (model, bigram)."""
    rows = {system: {column: report[system].get(column) for column in SCORE_COLUMNS} for system in ("model", "bigram")}
    return pd.DataFrame.from_dict(rows, orient="index").astype(float).round(3)


def continuations_view(examples: pd.DataFrame, n: int = 3):
    """The first ``n`` held-out prefixes with the true continuation and each system's, as HTML columns."""
    from IPython.display import HTML

    systems = [column for column in ("truth", "model", "bigram") if column in examples.columns]
    head = "".join(f"<th>{name}</th>" for name in ["prefix", *systems])
    rows = []
    for record in examples.head(n).to_dict("records"):
        cells = "".join(
            f"<td style='vertical-align:top;text-align:left'><pre>{html.escape(str(record[name]))}</pre></td>"
            for name in ["prefix", *systems]
        )
        rows.append(f"<tr>{cells}</tr>")
    return HTML(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
