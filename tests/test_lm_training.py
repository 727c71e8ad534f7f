"""Chapter 07's trainer: overfitting one batch, resume to the same curve, rotation, a clean stop, shape refusal,
a Ctrl+C during a save, the saved folder in slmlab.load_model and mlx_lm, and DDP against one process."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from slmlab.checkpoints import checkpoint_step, list_checkpoints
from slmlab.errors import CheckpointShapeError
from slmlab.runlog import read_metrics
from slmlab.testing import tiny_lm_config, tiny_token_folder
from slmlab.tinylm.model import build_model, load_weights
from slmlab.tinylm.prepare import PreparedData
from slmlab.tinylm.training import LMTrainConfig, overfit_one_batch, train_lm
from slmlab.trainloop import StopRequested

CONFIG = tiny_lm_config(keep_checkpoints=2)
TINY = CONFIG.model


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PreparedData:
    return tiny_token_folder(tmp_path_factory.mktemp("lm"))


def losses(run_dir: Path) -> list[float]:
    return [record["loss"] for record in read_metrics(run_dir) if "loss" in record]


def test_overfit_one_batch_reaches_near_zero_loss(data):
    curve = overfit_one_batch(data.folder, dataclasses.replace(CONFIG, batch_size=2), steps=150)
    assert curve[0] > 4.0  # about ln(300) at random initialisation
    assert curve[-1] < 0.1


def test_resume_after_interrupt_gives_the_same_curve(data, tmp_path):
    straight = train_lm(data.folder, tmp_path / "straight", CONFIG, progress=False, tensorboard=False)

    def interrupt_at_step_3(event, state):
        if event == "step" and state.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lm(data.folder, tmp_path / "resumed", CONFIG, callbacks=[interrupt_at_step_3], progress=False, tensorboard=False)
    assert checkpoint_step(list_checkpoints(tmp_path / "resumed")[-1]) == 3  # Ctrl+C saved the steps done
    resumed = train_lm(data.folder, tmp_path / "resumed", CONFIG, progress=False, tensorboard=False)
    assert resumed.resumed_from == 3
    assert losses(tmp_path / "resumed") == pytest.approx(losses(tmp_path / "straight"), rel=1e-5)
    assert [step for step, _ in resumed.state.train_loss] == list(range(1, 7))
    assert resumed.final_valid_loss == pytest.approx(straight.final_valid_loss, rel=1e-5)


def test_rotation_keeps_the_last_k_and_the_best(data, tmp_path):
    config = dataclasses.replace(CONFIG, steps=8, save_every=1, eval_every=1, keep_checkpoints=2)
    result = train_lm(data.folder, tmp_path / "run", config, progress=False, tensorboard=False)
    kept = [checkpoint_step(path) for path in list_checkpoints(tmp_path / "run")]
    best = min(result.state.valid_loss, key=lambda pair: pair[1])[0]
    assert kept[-2:] == [7, 8]
    assert set(kept) == {7, 8, best}


def test_a_stop_request_leaves_a_checkpoint_and_a_loadable_model(data, tmp_path):
    stop = threading.Event()

    def press_stop(event, state):
        if event == "step" and state.step == 2:
            stop.set()

    result = train_lm(
        data.folder,
        tmp_path / "run",
        dataclasses.replace(CONFIG, save_every=0),
        callbacks=[press_stop],
        stop=stop,
        progress=False,
        tensorboard=False,
    )
    assert result.stopped and result.state.step == 2  # the stop comes after the step during which it was pressed
    assert checkpoint_step(list_checkpoints(tmp_path / "run")[-1]) == 2
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_checkpoint_of_another_shape_is_refused_with_the_shapes(data, tmp_path):
    train_lm(data.folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=2), progress=False, tensorboard=False)
    wider = build_model(dataclasses.replace(TINY, hidden_size=64, intermediate_size=128), data.tokenizer())
    with pytest.raises(CheckpointShapeError, match=r"checkpoint \[300, 32\] vs model \[300, 64\]"):
        load_weights(wider, list_checkpoints(tmp_path / "run")[-1])


def test_ctrl_c_during_a_save_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    train_lm(data.folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=2), progress=False, tensorboard=False)
    good = list_checkpoints(tmp_path / "run")

    import slmlab.tinylm.training as training

    def interrupted_save(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_model_files", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        train_lm(data.folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=4), progress=False, tensorboard=False)
    assert list_checkpoints(tmp_path / "run") == good
    monkeypatch.undo()
    again = train_lm(data.folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=4), progress=False, tensorboard=False)
    assert again.resumed_from == 2


def test_the_run_folder_loads_in_slmlab_and_every_strategy_generates(data, tmp_path):
    import slmlab
    from slmlab.generation import DecodingConfig

    train_lm(data.folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=2), progress=False, tensorboard=False)
    model = slmlab.load_model(str(tmp_path / "run"), backend="torch")
    for config in (
        DecodingConfig(max_new_tokens=5),
        DecodingConfig(strategy="sample", top_k=20, top_p=0.9, max_new_tokens=5),
        DecodingConfig(strategy="beam", num_beams=2, max_new_tokens=5),
    ):
        replies = model.generate(["def ", "import os\n"], config, chat=False)
        assert len(replies) == 2


@pytest.mark.mlx
def test_the_run_folder_loads_in_mlx_lm_with_the_same_greedy_tokens(data, tmp_path):
    pytest.importorskip("mlx_lm")
    import mlx.core as mx
    import torch
    from mlx_lm import load

    train_lm(data.folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=2), progress=False, tensorboard=False)
    model, tokenizer = load(str(tmp_path / "run"))
    ids = tokenizer.encode("import os\n")
    mlx_logits = model(mx.array([ids]))[0, -1]
    import slmlab

    torch_model = slmlab.load_model(str(tmp_path / "run"), backend="torch").model
    with torch.inference_mode():
        torch_logits = torch_model(torch.tensor([ids])).logits[0, -1]
    top = int(mx.argmax(mlx_logits))  # MLX's top token is torch's, or ties with it within fp32's reach (1e-4 of the scale)
    assert float(torch_logits.max() - torch_logits[top]) <= 1e-4 * float(torch_logits.abs().max())
    assert math.isclose(float(mx.max(mlx_logits)), float(torch_logits.max()), rel_tol=1e-3, abs_tol=1e-3)


def test_two_ddp_processes_match_one_process(data, tmp_path):
    config = dataclasses.replace(CONFIG, steps=3, eval_every=3, save_every=3)
    train_lm(data.folder, tmp_path / "single", config, progress=False, tensorboard=False)
    options = [
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--warmup-steps",
        "2",
        "--eval-every",
        "3",
        "--eval-batches",
        "2",
        "--save-every",
        "3",
        "--learning-rate",
        "0.003",
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--heads",
        "2",
        "--kv-heads",
        "2",
        "--intermediate-size",
        "64",
        "--context-length",
        "32",
    ]
    command = [
        sys.executable,
        "-m",
        "slmlab",
        "lm",
        "train",
        "--nproc",
        "2",
        "--data",
        str(data.folder),
        "--run-dir",
        str(tmp_path / "ddp"),
        "--no-tensorboard",
        *options,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-4)
    import json

    metrics = json.loads((tmp_path / "ddp" / "training_metrics.json").read_text())
    assert metrics["processes"] == 2


def test_stop_requested_is_a_keyboard_interrupt():
    assert issubclass(StopRequested, KeyboardInterrupt)


@pytest.mark.parametrize("changes", [{"precision": "bf16"}, {"compile": True}], ids=["bf16", "compile"])
def test_bf16_and_compiled_training_follow_the_fp32_curve(data, tmp_path, changes):
    config = dataclasses.replace(CONFIG, steps=3, eval_every=3, save_every=3)
    train_lm(data.folder, tmp_path / "fp32", config, progress=False, tensorboard=False)
    train_lm(data.folder, tmp_path / "other", dataclasses.replace(config, **changes), progress=False, tensorboard=False)
    tolerance = 2e-2 if "precision" in changes else 1e-3
    assert losses(tmp_path / "other") == pytest.approx(losses(tmp_path / "fp32"), rel=tolerance)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        LMTrainConfig(precision="fp8")
