"""Chapter 07's views and widgets without a browser: the live plot, the loss curves, the training, checkpoints and
generation panels driven by their buttons, the strategy table and the token view."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import pytest

from slmlab.checkpoints import checkpoint_step, list_checkpoints
from slmlab.generation import DecodingConfig
from slmlab.testing import tiny_lm_config, tiny_token_folder
from slmlab.tinylm.prepare import PreparedData
from slmlab.tinylm.training import LMTrainConfig, train_lm
from slmlab.tinylm.views import (
    LivePlot,
    batch_table,
    checkpoint_table,
    checkpoints_panel,
    compare_continuations,
    generation_panel,
    loss_curves,
    merges_table,
    parameter_table,
    pieces_html,
    plot_overfit,
    plot_streaming_rss,
    scores_table,
    token_view,
    training_panel,
    visible,
)
from slmlab.trainloop import TrainState

matplotlib.use("Agg")

CONFIG = tiny_lm_config(keep_checkpoints=3)
TINY = CONFIG.model


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PreparedData:
    return tiny_token_folder(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "tiny-lm"
    train_lm(data.folder, folder, CONFIG, progress=False, tensorboard=False)
    return folder


@pytest.fixture(scope="module")
def model(run_dir):
    import slmlab

    return slmlab.load_model(str(run_dir), backend="torch")


def test_live_plot_draws_on_steps_evaluations_and_the_end():
    class Picture:
        value = b""

    picture = Picture()
    live = LivePlot(every=2, target=picture)
    state = TrainState(total_steps=4)
    for step in range(1, 5):
        state.step, state.scalars = step, {"loss": 5.0 - step, "lr": 1e-3 * step}
        state.train_loss.append((step, 5.0 - step))
        live("step", state)
    state.valid_loss.append((4, 1.5))
    live("eval", state)
    live("end", state)
    assert live.draws == 5  # steps 1 (first), 2 and 4, the evaluation, the end
    assert picture.value.startswith(b"\x89PNG")
    assert live.lr == [(1, 1e-3), (2, 2e-3), (3, 3e-3), (4, 4e-3)]


def test_live_plot_without_a_target_updates_a_display_handle(capsys):
    live = LivePlot(every=1)
    state = TrainState(step=1, total_steps=2, train_loss=[(1, 3.0)], scalars={"loss": 3.0, "lr": 1e-3})
    live("step", state)
    live("end", state)
    assert live.draws == 2 and live.handle is not None


def test_loss_curves_has_train_valid_lr_and_grad_norm(run_dir):
    figure = loss_curves(run_dir, smooth=2)
    titles = [axis.get_title() for axis in figure.axes]
    assert len(figure.axes) == 4
    assert [label.split()[0] for label in titles] == ["train", "validation", "learning", "gradient"]
    assert all(axis.lines for axis in figure.axes)


def test_training_panel_stops_with_a_checkpoint_and_resumes(data, tmp_path):
    config = LMTrainConfig(
        model=TINY, batch_size=4, steps=200, warmup_steps=2, eval_every=50, eval_batches=1, save_every=100, learning_rate=3e-3
    )
    panel = training_panel(data.folder, tmp_path / "run", config, every=1, tensorboard=False)
    panel.session.callbacks.append(lambda event, state: time.sleep(0.02) if event == "step" else None)
    start, stop = panel.children[0].children[1].children
    start.click()
    deadline = time.monotonic() + 30
    while panel.session.last_step < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.click()
    assert panel.session.wait(30)
    stopped = panel.session.result
    assert panel.session.error is None and stopped.stopped
    assert checkpoint_step(list_checkpoints(tmp_path / "run")[-1]) == stopped.state.step < 200
    assert start.disabled is False and stop.disabled is True and "stopped" in panel.children[1].value
    assert panel.live.draws > 0 and bytes(panel.children[2].value).startswith(b"\x89PNG")

    panel.children[0].children[0].children[0].value = stopped.state.step + 2  # two steps more
    start.click()
    assert panel.session.wait(30) and panel.session.error is None
    assert panel.session.first_step == stopped.state.step + 1  # resumed after the checkpoint
    assert panel.session.result.state.step == stopped.state.step + 2 and not panel.session.result.stopped


def test_checkpoints_panel_lists_loads_and_deletes(run_dir):
    loaded = []
    panel = checkpoints_panel(run_dir, on_load=loaded.append)
    chooser = panel.children[0]
    load, delete, _ = panel.children[1].children
    table = checkpoint_table(run_dir)
    assert list(table["step"]) == [2, 4, 6] and len(chooser.options) == 3
    assert table["valid loss"].notna().all() and (table["MB"] > 0).all()

    panel.select(6)
    load.click()
    assert len(loaded) == 1 and loaded[0] is panel.loaded and loaded[0].path.name == "step-000006"

    panel.select(2)
    delete.click()
    assert [checkpoint_step(path) for path in list_checkpoints(run_dir)] == [4, 6] and len(chooser.options) == 2


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_generation_panel_generates_for_each_strategy(model, strategy):
    panel = generation_panel(model=model, prompt="def ", samples=2)
    controls = panel.children[2].children
    controls[0].value = strategy
    controls[5].value = 6  # max new tokens
    panel.children[2].children[-1].click()
    assert len(panel.replies) == 2 and all(isinstance(text, str) and text for text in panel.replies)
    assert "def " in panel.children[3].value and "one batch" in panel.children[3].value


def test_generation_panel_loads_a_folder_and_accepts_another_model(run_dir, model):
    panel = generation_panel(run_dir, samples=1)
    assert str(run_dir) in panel.children[0].value
    panel.load(model)
    assert panel.model is model


def test_compare_continuations_has_one_row_per_prompt_and_strategy(model):
    prompts = ["def ", "import "]
    configs = {
        "greedy": DecodingConfig(max_new_tokens=4),
        "top-k 5": DecodingConfig(strategy="sample", top_k=5, max_new_tokens=4),
        "beam x2": DecodingConfig(strategy="beam", num_beams=2, max_new_tokens=4),
    }
    table = compare_continuations(model, prompts, configs)
    assert len(table) == 6
    assert set(zip(table["prompt"], table["strategy"])) == {(p, s) for p in prompts for s in configs}
    assert len(compare_continuations(model, prompts, max_new_tokens=3)) == 10  # the five default strategies


def test_token_view_escapes_html_and_shows_every_piece(data):
    pieces = ["<b>", " x", "&\n", "\ty"]
    markup = pieces_html(pieces)
    assert markup.count('class="tok"') == 4 and "<b>" not in markup and "&lt;b&gt;" in markup
    assert "&amp;↵" in markup and "·x" in markup and "⇥y" in markup
    tokenizer = data.tokenizer()
    text = "def f(x):\n    return x < 1  # <script>"
    view = token_view(tokenizer, text)
    assert view.data.count('class="tok"') == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert "<script>" not in view.data


def test_tables_and_figures_of_the_notebook(data, model):
    merged = merges_table(data.tokenizer(), n=5)
    assert len(merged) == 5 and list(merged.columns) == ["left", "right", "merged"]
    assert visible(" \n") == "·↵"
    batch = data.loader("train", 32, 4).batch(0)
    assert batch_table(batch).loc["input_ids", "shape"] == (4, 32)
    parts = parameter_table(model.model)
    assert parts.loc["total", "parameters"] == sum(p.numel() for p in model.model.parameters())
    assert plot_overfit([5.0, 3.0, 1.0], vocab_size=300).axes[0].lines
    import pandas as pd

    rss = pd.DataFrame({"corpus tokens": [1000, 10000], "file MB": [0.002, 0.02], "batches": [5, 5], "rss growth MB": [0.1, 0.1]})
    assert len(plot_streaming_rss(rss).axes[0].patches) == 4
    report = {
        "model": {"bits_per_byte": 2.0, "perplexity": 9.0, "loss_nats_per_token": 2.2, "bleu": 3.0, "rougeL": 0.2},
        "bigram": {"bits_per_byte": 3.0, "perplexity": None, "loss_nats_per_token": 3.1, "bleu": 1.0, "rougeL": 0.1},
    }
    scores = scores_table(report)
    assert list(scores.index) == ["model", "bigram"] and scores.loc["model", "bits_per_byte"] == 2.0
