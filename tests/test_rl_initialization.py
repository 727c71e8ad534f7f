"""Chapter 08 initialization diagnostics: the schemes' statistics, the statistics table, the checks and the automatic
repair of a policy that starts too peaked, on a tiny Llama built in-process."""

from __future__ import annotations

import math

import numpy
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from slmlab.errors import SlmLabError
from slmlab.rl.initialization import (
    AS_BUILT,
    INIT_SCHEMES,
    InitCheckConfig,
    InitializationError,
    check_initialization,
    ensure_good_initialization,
    histogram_data,
    initialize,
    output_entropy,
    weight_statistics,
)

VOCAB = 96
IDS = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))


def tiny_llama(tie: bool = True, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, 32-wide Llama like chapter 07's (tied embeddings, a padding token), as transformers builds it."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def layer(fan_in: int, fan_out: int) -> torch.nn.Sequential:
    """A Linear followed by a LayerNorm whose weight and bias are not at their initial values."""
    block = torch.nn.Sequential(torch.nn.Linear(fan_in, fan_out), torch.nn.LayerNorm(fan_out))
    with torch.no_grad():
        block[0].bias.fill_(0.3)
        block[1].weight.fill_(0.5)
        block[1].bias.fill_(0.2)
    return block


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_each_scheme_draws_weights_with_its_statistics(scheme: str) -> None:
    fan_in, fan_out = 256, 128
    block = initialize(layer(fan_in, fan_out), scheme, seed=3)
    weight = block[0].weight.detach().double()
    expected_std = {
        "normal": 0.02,
        "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
        "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
        "kaiming_uniform": math.sqrt(2 / fan_in),
        "kaiming_normal": math.sqrt(2 / fan_in),
        "orthogonal": math.sqrt(1 / fan_in),  # rows of unit norm over fan_in entries
    }[scheme]
    assert weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert abs(weight.mean().item()) < expected_std / 20
    bound = {"xavier_uniform": math.sqrt(6 / (fan_in + fan_out)), "kaiming_uniform": math.sqrt(6 / fan_in)}.get(scheme)
    if bound is not None:
        assert bound * 0.99 < weight.abs().max().item() <= bound
    if scheme == "orthogonal":  # fan_out < fan_in: the rows are orthonormal
        assert torch.allclose(weight @ weight.T, torch.eye(fan_out, dtype=torch.float64), atol=1e-5)
    assert torch.all(block[0].bias == 0) and torch.all(block[1].bias == 0) and torch.all(block[1].weight == 1)


def test_orthogonal_square_matrix_and_determinism_per_seed() -> None:
    square = initialize(torch.nn.Linear(64, 64), "orthogonal", seed=1).weight.detach().double()
    assert torch.allclose(square @ square.T, torch.eye(64, dtype=torch.float64), atol=1e-5)
    for scheme in INIT_SCHEMES:
        first, again = (initialize(tiny_llama(seed=s), scheme, seed=7).state_dict() for s in (0, 1))
        other = initialize(tiny_llama(), scheme, seed=8).state_dict()
        assert all(torch.equal(first[name], again[name]) for name in first)
        assert not torch.equal(first["model.layers.0.self_attn.q_proj.weight"], other["model.layers.0.self_attn.q_proj.weight"])


def test_initialize_keeps_ties_and_padding_row_and_refuses_bad_input() -> None:
    model = initialize(tiny_llama(), "kaiming_normal", seed=0)
    embedding = model.model.embed_tokens
    assert model.lm_head.weight is embedding.weight
    assert torch.all(embedding.weight[embedding.padding_idx] == 0)
    assert embedding.weight.std().item() == pytest.approx(math.sqrt(2 / 32), rel=0.05)  # drawn once, not twice
    with pytest.raises(ValueError, match="Unknown init scheme 'he'"):
        initialize(model, "he")
    with pytest.raises(ValueError, match="no Linear or Embedding"):
        initialize(torch.nn.LayerNorm(4))


def test_weight_statistics_of_a_hand_made_module() -> None:
    linear = torch.nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        linear.bias.copy_(torch.tensor([math.nan, math.inf]))
    table = weight_statistics(linear).set_index("name")
    assert list(table.index) == ["weight", "bias"]
    weight, bias = table.loc["weight"], table.loc["bias"]
    assert weight["shape"] == (2, 2) and weight["size"] == 4
    assert (weight["mean"], weight["min"], weight["max"]) == (2.5, 1.0, 4.0)
    assert weight["std"] == pytest.approx(math.sqrt(1.25))
    assert (weight["nan"], weight["inf"], bias["nan"], bias["inf"]) == (0, 0, 1, 1)
    assert math.isnan(bias["mean"]) and math.isnan(bias["std"])


def test_weight_statistics_lists_a_tied_matrix_once() -> None:
    names = list(weight_statistics(tiny_llama())["name"])
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert "lm_head.weight" in list(weight_statistics(tiny_llama(tie=False))["name"])


def test_output_entropy_of_a_uniform_and_of_a_fresh_policy() -> None:
    class Uniform(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCAB, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*ids.shape, VOCAB) + 0 * self.embedding(ids).sum()

    uniform = output_entropy(Uniform(), IDS[0].tolist())
    assert uniform["entropy"] == pytest.approx(math.log(VOCAB), rel=1e-6) and uniform["ratio"] == pytest.approx(1.0)
    model = tiny_llama().train()
    fresh = output_entropy(model, IDS)
    assert fresh["uniform_entropy"] == pytest.approx(math.log(VOCAB)) and 0.9 < fresh["ratio"] <= 1.0
    assert model.training  # the mode is restored


def test_a_healthy_fresh_model_passes() -> None:
    for tie in (True, False):
        report = check_initialization(tiny_llama(tie=tie), IDS)
        assert report.ok, report.describe()
        assert report.problems == () and report.describe().startswith("ok")


def test_checks_catch_a_zeroed_tensor_a_large_mean_and_a_nan() -> None:
    model = tiny_llama()
    layer0 = model.model.layers[0]
    with torch.no_grad():
        layer0.self_attn.q_proj.weight.zero_()
        layer0.mlp.up_proj.weight.add_(0.5)
        layer0.mlp.down_proj.weight[0, 0] = math.nan
    report = check_initialization(model, IDS)
    found = {(problem.tensor, problem.check) for problem in report.problems}
    assert ("model.layers.0.self_attn.q_proj.weight", "near_zero_std") in found
    assert ("model.layers.0.mlp.up_proj.weight", "large_mean") in found
    assert ("model.layers.0.mlp.down_proj.weight", "nan_inf") in found
    assert ("output", "peaked_output") in found  # a NaN weight makes the output NaN
    assert not report.ok and "FAILED" in report.describe()


def test_a_scaled_up_output_layer_fails_and_is_repaired() -> None:
    model = tiny_llama()
    with torch.no_grad():
        model.lm_head.weight.mul_(100)
    failed = check_initialization(model, IDS)
    assert ("output", "peaked_output") in {(problem.tensor, problem.check) for problem in failed.problems}
    assert failed.entropy["ratio"] < 0.5

    report = ensure_good_initialization(model, IDS, seed=5)
    assert report.ok
    assert [(attempt.scheme, attempt.seed, attempt.ok) for attempt in report.attempts] == [
        (AS_BUILT, None, False),
        ("normal", 5, True),
    ]
    assert report.attempts[0].problems == failed.problems
    assert check_initialization(model, IDS).ok and report.entropy["ratio"] > 0.9


def test_a_healthy_model_is_left_alone_and_an_impossible_check_raises() -> None:
    model = tiny_llama()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    report = ensure_good_initialization(model, IDS)
    assert [attempt.scheme for attempt in report.attempts] == [AS_BUILT]
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())

    with pytest.raises(InitializationError, match="No initialization passed") as raised:
        ensure_good_initialization(model, IDS, schemes=("normal", "orthogonal"), config=InitCheckConfig(min_entropy_ratio=1.01))
    assert isinstance(raised.value, SlmLabError)
    assert [attempt.scheme for attempt in raised.value.report.attempts] == [AS_BUILT, "normal", "orthogonal"]
    with pytest.raises(ValueError, match="Unknown init scheme 'he'"):
        ensure_good_initialization(model, IDS, schemes=("he",))


def test_histogram_data_counts_every_finite_entry() -> None:
    model = tiny_llama(tie=False)
    histograms = histogram_data(model, bins=20)
    assert "lm_head.weight" in histograms and "model.norm.weight" not in histograms
    counts, edges = histograms["lm_head.weight"]
    assert len(counts) == 20 and len(edges) == 21 and counts.sum() == model.lm_head.weight.numel()
    with torch.no_grad():
        model.model.norm.weight[0] = math.inf
    counts, _ = histogram_data(model, names=["model.norm.weight"])["model.norm.weight"]
    assert counts.sum() == 31 and isinstance(counts, numpy.ndarray)
    with pytest.raises(KeyError, match="No parameter named nope"):
        histogram_data(model, names=["nope"])
