"""The fast LoRA step (frozen layers and shared prompt prefix run once) gives the plain step's loss and gradients."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from slmlab.lora.datagen import generate_dataset, read_jsonl
from slmlab.lora.fast_step import FrozenPrefixCache, first_trainable_layer, layer_slice, shared_prefix
from slmlab.lora.training import (
    TrainConfig,
    collate,
    completion_loss,
    encode_rows,
    peft_lora_config,
    train_lora,
)
from slmlab.testing import make_tiny_llama, toy_patterns
from slmlab.trainloop import IGNORE_INDEX

CONFIG = TrainConfig(
    rank=4, alpha=8, steps=6, batch_size=4, eval_every=3, save_every=3, learning_rate=5e-3, warmup_steps=1, num_layers=2
)


@pytest.fixture(scope="module")
def four_layer_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("four-layers"), layers=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    generate_dataset(toy_patterns(6), folder)
    return folder


def _lora_model(folder, num_layers):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = get_peft_model(base, peft_lora_config(replace(CONFIG, num_layers=num_layers), base.config.num_hidden_layers))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # nonzero B so the adapter changes the loss and every LoRA weight gets a gradient
            torch.nn.init.normal_(parameter, std=0.05)
    return model


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_shared_prefix_stops_before_the_first_answer_token():
    encoded = [([1, 2, 3, 4, 9], [IGNORE_INDEX] * 4 + [9]), ([1, 2, 3, 5, 6, 7], [IGNORE_INDEX] * 3 + [5, 6, 7])]
    assert shared_prefix(encoded) == [1, 2]  # the second row's answer starts at index 3
    assert shared_prefix([([1, 2], [IGNORE_INDEX, 2]), ([3, 4], [IGNORE_INDEX, 4])]) == []
    assert shared_prefix([]) == []


@pytest.mark.parametrize("num_layers", [2, 4])  # LoRA on the top half (2 frozen layers cached) and on every layer
def test_fast_loss_and_gradients_equal_the_plain_step(four_layer_dir, data_dir, num_layers):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(four_layer_dir)
    encoded, _ = encode_rows(tokenizer, read_jsonl(data_dir / "train.jsonl")[:9], 512)
    model = _lora_model(four_layer_dir, num_layers)
    assert first_trainable_layer(model) == 4 - num_layers
    cache = FrozenPrefixCache(model, encoded)
    assert len(cache.prefix_hidden) == len(shared_prefix(encoded)) > 0
    rows = [0, 3, 5, 8]
    plain = completion_loss(model, collate([encoded[i] for i in rows], tokenizer.pad_token_id))
    plain.backward()
    plain_grads = _grads(model)
    fast = cache.loss(model, rows)
    fast.backward()
    fast_grads = _grads(model)
    assert fast.item() == pytest.approx(plain.item(), rel=1e-5)
    assert plain_grads.keys() == fast_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert cache.batch_tokens(rows) == sum(len(encoded[i][0]) for i in rows)


def test_layer_slice_puts_the_model_back(four_layer_dir):
    model = _lora_model(four_layer_dir, 2)
    decoder = model.get_base_model().get_decoder()
    layers, norm = list(decoder.layers), decoder.norm
    with layer_slice(decoder, 2, 4, final_norm=False):
        assert [layer.self_attn.layer_idx for layer in decoder.layers] == [0, 1]
        assert decoder.config.num_hidden_layers == 2 and isinstance(decoder.norm, torch.nn.Identity)
    assert list(decoder.layers) == layers and decoder.norm is norm and decoder.config.num_hidden_layers == 4
    assert [layer.self_attn.layer_idx for layer in decoder.layers] == [0, 1, 2, 3]


def test_training_with_the_fast_step_follows_the_plain_run(four_layer_dir, data_dir, tmp_path):
    fast = train_lora(data_dir, tmp_path / "fast", str(four_layer_dir), CONFIG, backend="torch", progress=False)
    plain = train_lora(
        data_dir, tmp_path / "plain", str(four_layer_dir), replace(CONFIG, fast_step=False), backend="torch", progress=False
    )
    fast_losses = [loss for _, loss in fast.state.train_loss]
    plain_losses = [loss for _, loss in plain.state.train_loss]
    assert fast_losses == pytest.approx(plain_losses, rel=1e-3)
    assert fast.state.trained_tokens == plain.state.trained_tokens
    assert json.loads(fast.metrics_path.read_text())["config"]["fast_step"] is True
