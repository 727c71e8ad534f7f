"""Generation on the torch and MLX backends, with the tiny random Llama (fast) and the real model."""

from __future__ import annotations

import numpy as np
import pytest

from slmlab import DecodingConfig
from slmlab.errors import BackendError
from slmlab.testing import assert_same_greedy

PROMPTS = ["hello", "The capital of France", "def add(a, b):", "a"]
GREEDY = DecodingConfig(max_new_tokens=8)


def test_greedy_is_deterministic(tiny_torch):
    assert tiny_torch.generate(PROMPTS, GREEDY) == tiny_torch.generate(PROMPTS, GREEDY)


def test_batched_equals_one_by_one(tiny_torch):
    """Left padding and length-sorting must not change any reply."""
    batched = tiny_torch.generate(PROMPTS, GREEDY.with_(batch_size=4))
    single = [tiny_torch.generate([p], GREEDY.with_(batch_size=1))[0] for p in PROMPTS]
    assert batched == single
    assert any(batched), "the tiny model should produce some visible text"


def test_replies_come_back_in_prompt_order(tiny_torch):
    forward = tiny_torch.generate(PROMPTS, GREEDY)
    backward = tiny_torch.generate(PROMPTS[::-1], GREEDY)
    assert forward == backward[::-1]


def test_sampling_is_seeded(tiny_torch):
    config = DecodingConfig(strategy="sample", temperature=1.0, max_new_tokens=12, seed=7)
    first = tiny_torch.generate(PROMPTS, config)
    assert first == tiny_torch.generate(PROMPTS, config)
    others = [tiny_torch.generate(PROMPTS, config.with_(seed=s)) for s in range(1, 4)]
    assert any(o != first for o in others)


def test_top_k_one_is_greedy(tiny_torch):
    config = DecodingConfig(strategy="sample", temperature=1.0, top_k=1, max_new_tokens=8, seed=3)
    assert tiny_torch.generate(PROMPTS, config) == tiny_torch.generate(PROMPTS, GREEDY)


def test_tiny_top_p_is_greedy(tiny_torch):
    config = DecodingConfig(strategy="sample", temperature=1.0, top_p=1e-6, max_new_tokens=8, seed=3)
    assert tiny_torch.generate(PROMPTS, config) == tiny_torch.generate(PROMPTS, GREEDY)


def test_generation_kwargs_follow_the_strategy(tiny_torch):
    sample = tiny_torch.generation_kwargs(DecodingConfig(strategy="sample", temperature=0.5, top_k=0, top_p=0.8))
    assert sample["do_sample"] and sample["temperature"] == 0.5 and sample["top_k"] is None and sample["top_p"] == 0.8
    beam = tiny_torch.generation_kwargs(DecodingConfig(strategy="beam", num_beams=3))
    assert beam["num_beams"] == 3 and not beam["do_sample"]


def test_beam_search_runs_and_respects_the_budget(tiny_torch):
    config = DecodingConfig(strategy="beam", num_beams=3, max_new_tokens=6)
    replies = tiny_torch.generate_ids(PROMPTS, config)
    assert len(replies) == len(PROMPTS)
    assert all(0 < len(r) <= 6 for r in replies)


def test_max_new_tokens_is_a_ceiling(tiny_torch):
    replies = tiny_torch.generate_ids(PROMPTS, DecodingConfig(max_new_tokens=3))
    assert all(len(r) <= 3 for r in replies) and any(len(r) == 3 for r in replies)
    assert tiny_torch.tokenizer.eos_token_id not in sum(replies, [])


def test_chat_template_and_messages(tiny_torch):
    rendered = tiny_torch.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n")
    assert tiny_torch.render("hi", system="Be brief.") == rendered
    assert tiny_torch.render("raw text", chat=False) == "raw text"


def test_generate_rejects_a_single_prompt(tiny_torch):
    with pytest.raises(TypeError, match="list of prompts"):
        tiny_torch.generate("hello")


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"strategy": "nucleus"}, "strategy must be one of"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"strategy": "sample", "temperature": 0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"strategy": "beam", "num_beams": 1}, "num_beams"),
    ],
)
def test_decoding_config_rejects_bad_values(fields, problem):
    with pytest.raises(ValueError, match=problem):
        DecodingConfig(**fields)


def test_describe():
    assert DecodingConfig().describe() == "greedy"
    assert DecodingConfig(strategy="sample", temperature=0.9, top_k=20).describe() == "sample T=0.9 top-k=20"
    assert DecodingConfig(strategy="beam", num_beams=5).describe() == "beam x5"


# --- MLX -----------------------------------------------------------------------------------------


@pytest.mark.mlx
def test_mlx_and_torch_compute_the_same_logits(tiny_torch, tiny_mlx):
    import mlx.core as mx
    import torch

    ids = tiny_torch.hf_tokenizer(tiny_torch.render("The capital of France"), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        torch_logits = tiny_torch.model(torch.tensor([ids])).logits.numpy()
    mlx_logits = np.array(tiny_mlx.model(mx.array([ids])))
    np.testing.assert_allclose(mlx_logits, torch_logits, atol=1e-4)


@pytest.mark.mlx
def test_mlx_greedy_matches_torch(tiny_torch, tiny_mlx):
    assert tiny_mlx.generate_ids(PROMPTS, GREEDY) == tiny_torch.generate_ids(PROMPTS, GREEDY)
    assert tiny_mlx.generate(PROMPTS, GREEDY) == tiny_torch.generate(PROMPTS, GREEDY)


@pytest.mark.mlx
def test_mlx_sampling_is_seeded(tiny_mlx):
    config = DecodingConfig(strategy="sample", temperature=1.0, top_k=20, top_p=0.9, max_new_tokens=6, seed=5)
    assert tiny_mlx.generate(PROMPTS[:2], config) == tiny_mlx.generate(PROMPTS[:2], config)


@pytest.mark.mlx
def test_mlx_refuses_beam_search(tiny_mlx):
    with pytest.raises(BackendError, match="torch backend only"):
        tiny_mlx.generate(PROMPTS[:1], DecodingConfig(strategy="beam"))


# --- the real packaged model ---------------------------------------------------------------------


@pytest.mark.real_model
def test_real_model_knows_paris(real_torch):
    assert "Paris" in real_torch.chat("What is the capital of France?", DecodingConfig(max_new_tokens=20))


@pytest.mark.real_model
def test_real_model_batched_matches_single(real_torch):
    prompts = ["What is the capital of France?", "Name a primary colour.", "What is 2 + 2?"]
    config = DecodingConfig(max_new_tokens=16)
    batched = real_torch.generate_ids(prompts, config)
    assert_same_greedy(real_torch, prompts, batched, [real_torch.generate_ids([p], config)[0] for p in prompts])
    assert real_torch.generate(prompts, config) == [real_torch.decode(reply) for reply in batched]


@pytest.mark.real_model
@pytest.mark.mlx
def test_real_model_on_mlx_knows_paris():
    import slmlab
    from slmlab.backends import mlx_available

    if not mlx_available():
        pytest.skip("mlx / mlx-lm not importable here")
    model = slmlab.load_model(slmlab.DEFAULT_MODEL, backend="mlx")
    assert "Paris" in model.chat("What is the capital of France?", DecodingConfig(max_new_tokens=12))
