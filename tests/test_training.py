"""LoRA training on the tiny model: loss goes down, checkpoints resume exactly, stock loaders read the adapter."""

from __future__ import annotations

import json
import re

import pytest

from slmlab.errors import BackendError
from slmlab.lora import spec
from slmlab.lora.datagen import DatasetError, generate_dataset, read_jsonl
from slmlab.lora.training import TrainConfig, batch_schedule, encode_rows, latest_checkpoint, train_lora
from slmlab.lora.views import LiveLossPlot
from slmlab.settings import ARTIFACTS_ENV
from slmlab.testing import toy_patterns
from slmlab.trainloop import TrainState

CONFIG = TrainConfig(rank=4, alpha=8, steps=8, batch_size=4, eval_every=4, save_every=2, learning_rate=5e-3, warmup_steps=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    generate_dataset(toy_patterns(6), folder)
    return folder


class StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, event, state):
        if event == "step" and state.step == self.step:
            raise KeyboardInterrupt


def test_prompt_tokens_are_masked(tiny_model_dir, data_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ((ids, labels),) = encode_rows(tokenizer, read_jsonl(data_dir / "train.jsonl")[:1], 512)[0]
    answer = [t for t in labels if t != -100]
    assert tokenizer.decode(answer).startswith("City")
    assert answer[-1] == tokenizer.eos_token_id and len(ids) == len(labels)


def test_truncation_is_counted(tiny_model_dir, data_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = read_jsonl(data_dir / "train.jsonl")
    encoded, truncated = encode_rows(tokenizer, rows, 8)
    assert truncated == len(rows) and all(len(ids) == 8 for ids, _ in encoded)


def test_batch_schedule_is_deterministic_and_covers_the_data():
    lengths = [5, 9, 3, 7, 11, 2, 8, 6, 4, 10]
    config = TrainConfig(steps=5, batch_size=2)
    first = batch_schedule(lengths, config)
    assert first == batch_schedule(lengths, config)
    assert sorted(i for batch in first for i in batch) == list(range(10))
    assert first != batch_schedule(lengths, TrainConfig(steps=5, batch_size=2, seed=1))


def test_train_then_resume_matches_uninterrupted(tiny_model_dir, data_dir, tmp_path):
    straight = train_lora(data_dir, tmp_path / "straight", str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    assert straight.state.train_loss[-1][1] < straight.state.train_loss[0][1]

    with pytest.raises(KeyboardInterrupt):
        train_lora(
            data_dir, tmp_path / "resumed", str(tiny_model_dir), CONFIG, backend="torch", callbacks=[StopAt(5)], progress=False
        )
    assert latest_checkpoint(tmp_path / "resumed").name == "step-000005"
    resumed = train_lora(data_dir, tmp_path / "resumed", str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    assert resumed.resumed_from == 5
    assert resumed.state.step == CONFIG.steps
    straight_losses = [loss for _, loss in straight.state.train_loss]
    resumed_losses = [loss for _, loss in resumed.state.train_loss]
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-4, abs=1e-5)

    metrics = json.loads((tmp_path / "resumed" / "training_metrics.json").read_text())
    assert metrics["steps"] == CONFIG.steps and metrics["final_valid_loss"] > 0
    assert set(metrics) == {
        *("model", "base_model_dir", "backend", "truncated_rows", "steps", "final_train_loss", "final_valid_loss"),
        *("trained_tokens", "train_seconds", "tokens_per_second", "train_loss", "valid_loss", "config"),
    }
    assert (metrics["model"], metrics["backend"], metrics["truncated_rows"]) == (str(tiny_model_dir), "torch", 0)


def test_adapter_loads_with_stock_peft(tiny_model_dir, data_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train_lora(data_dir, tmp_path / "a", str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, result.adapter_dir)(ids).logits
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert not torch.allclose(before, tuned), "the trained adapter changes the model"


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": []}\n{"messages": [}\n')
    with pytest.raises(DatasetError, match=r"train.jsonl:2: not valid JSON"):
        read_jsonl(path)


@pytest.mark.mlx
def test_mlx_training_writes_a_stock_mlx_adapter(tiny_model_dir, data_dir, tmp_path):
    from slmlab.backends import mlx_available

    if not mlx_available():
        pytest.skip("mlx / mlx-lm not importable here")
    import mlx.core as mx
    import mlx_lm

    config = TrainConfig(rank=4, alpha=8, steps=4, batch_size=4, eval_every=2, save_every=2, learning_rate=5e-3)
    result = train_lora(data_dir, tmp_path / "mlx", str(tiny_model_dir), config, backend="mlx", progress=False)
    assert (result.adapter_dir / "adapters.safetensors").is_file()
    assert len(result.state.train_loss) == 4 and result.state.valid_loss
    base, _ = mlx_lm.load(str(tiny_model_dir))
    tuned, _ = mlx_lm.load(str(tiny_model_dir), adapter_path=str(result.adapter_dir))
    ids = mx.array([[1, 5, 9, 12]])
    assert not mx.allclose(base(ids), tuned(ids)).item(), "the trained adapter changes the model"


def test_finished_run_is_not_repeated_and_other_settings_start_over(tiny_model_dir, data_dir, tmp_path):
    first = train_lora(data_dir, tmp_path / "r", str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    again = train_lora(data_dir, tmp_path / "r", str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    assert again.resumed_from == CONFIG.steps and again.state.train_loss == first.state.train_loss
    other = TrainConfig(**{**CONFIG.__dict__, "learning_rate": 1e-3})
    with pytest.warns(UserWarning, match="other training settings"):
        fresh = train_lora(data_dir, tmp_path / "r", str(tiny_model_dir), other, backend="torch", progress=False)
    assert fresh.resumed_from == 0


def test_completion_loss_equals_the_stock_loss(tiny_model_dir, data_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmlab.lora.training import collate, completion_loss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    encoded, _ = encode_rows(tokenizer, read_jsonl(data_dir / "train.jsonl")[:5], 512)
    batch = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        assert float(completion_loss(model, batch)) == pytest.approx(float(model(**batch).loss), rel=1e-5)


def test_failed_save_keeps_the_last_good_checkpoint(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    import torch

    out = tmp_path / "full-disk"
    with pytest.raises(KeyboardInterrupt):
        train_lora(data_dir, out, str(tiny_model_dir), CONFIG, backend="torch", callbacks=[StopAt(3)], progress=False)
    good = latest_checkpoint(out)
    assert good.name == "step-000003"

    real_save = torch.save

    def disk_full(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train_lora(data_dir, out, str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    monkeypatch.undo()
    assert latest_checkpoint(out) == good
    assert not list((out / "checkpoints").glob("*.partial"))
    resumed = train_lora(data_dir, out, str(tiny_model_dir), CONFIG, backend="torch", progress=False)
    assert resumed.resumed_from == 3 and resumed.state.step == CONFIG.steps


@pytest.mark.mlx
def test_mlx_resume_matches_uninterrupted(tiny_model_dir, data_dir, tmp_path):
    from slmlab.backends import mlx_available

    if not mlx_available():
        pytest.skip("mlx / mlx-lm not importable here")
    config = TrainConfig(rank=4, alpha=8, steps=6, batch_size=4, eval_every=100, save_every=2, learning_rate=5e-3, warmup_steps=1)
    straight = train_lora(data_dir, tmp_path / "straight", str(tiny_model_dir), config, backend="mlx", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_lora(
            data_dir, tmp_path / "resumed", str(tiny_model_dir), config, backend="mlx", callbacks=[StopAt(3)], progress=False
        )
    assert latest_checkpoint(tmp_path / "resumed").name == "step-000002"
    resumed = train_lora(data_dir, tmp_path / "resumed", str(tiny_model_dir), config, backend="mlx", progress=False)
    assert resumed.resumed_from == 2 and resumed.state.step == config.steps
    straight_losses = [loss for _, loss in straight.state.train_loss]
    assert [loss for _, loss in resumed.state.train_loss] == pytest.approx(straight_losses, rel=1e-4)


def test_the_inference_only_llamacpp_backend_refuses_to_train(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    import slmlab.backends as backends

    monkeypatch.setattr(backends, "llamacpp_available", lambda: True)  # the refusal does not need llama.cpp itself
    with pytest.raises(BackendError, match="inference only"):
        train_lora(data_dir, tmp_path / "out", str(tiny_model_dir), TrainConfig(steps=1), backend="llamacpp")


def test_quick_is_the_notebooks_quick_run():
    quick = TrainConfig.quick(seed=3)
    assert quick == TrainConfig(steps=8, eval_every=4, save_every=4, seed=3)
    assert TrainConfig.quick().seed == 0 and f"--steps {quick.steps}" in spec.QUICK_RUN_COMMAND


@pytest.mark.parametrize(
    "change, named",
    [
        ({"steps": 0}, "steps=0"),
        ({"rank": 0, "dropout": 1.0}, "rank=0, dropout=1.0"),
        ({"learning_rate": -1e-3}, "learning_rate=-0.001"),
        ({"eval_every": -1}, "eval_every=-1"),
        ({"num_layers": 0}, "num_layers=0"),
        ({"target_modules": ()}, "target_modules=()"),
        ({"keep_checkpoints": 0}, "keep_checkpoints=0"),
    ],
)
def test_out_of_range_settings_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=re.escape(f"TrainConfig: out of range: {named}")):
        TrainConfig(**change)


def test_the_default_folders_are_the_artifacts_trees(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))
    monkeypatch.setenv("SLMLAB_QUICK", "0")
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "data" / "train.jsonl"))):
        train_lora(model=str(tiny_model_dir), config=TrainConfig(steps=1), backend="torch", progress=False)


def test_live_loss_plot_redraws_every_few_steps_and_at_each_eval():
    class Image:  # stands in for an ipywidgets.Image
        value = b""

    target = Image()
    live, state = LiveLossPlot(every=4, target=target), TrainState()
    for step in range(1, 9):
        state.step = step
        state.train_loss.append((step, 3.0 - 0.1 * step))
        live("step", state)
    state.valid_loss.append((8, 2.5))
    live("eval", state)
    assert live.picture.draws == 3 and target.value.startswith(b"\x89PNG")
