"""Continuous batching on the torch backend: same greedy replies as padded batches, rows refilled as they end,
seeded sampling, the generation stats, and the prompt checks of the backend-neutral base."""

from __future__ import annotations

import pytest

from slmlab import DecodingConfig
from slmlab.backends.base import check_strategy
from slmlab.backends.continuous import ContinuousBatcher
from slmlab.errors import BackendError
from slmlab.testing import assert_same_greedy

TINY_PROMPTS = ["hello", "The capital of France", "def add(a, b):", "a", "one two three four five", "x = 1"]
TINY_GREEDY = DecodingConfig(max_new_tokens=10, batch_size=2)

REAL_PROMPTS = [
    "Hi!",
    "What is 2 + 2?",
    "Name a colour.",
    "Write one sentence about the moon.",
    "Translate 'thank you' into French.",
    "List three animals that live in the ocean, separated by commas.",
    "Reply with only the word yes.",
    "Explain in one short sentence what a compiler does and why programmers use one.",
    "What is the largest planet in our solar system? Answer in a few words.",
    "Give a synonym for happy.",
    "Write a Python expression that adds the numbers one to ten, and say nothing else about it.",
    "Is water wet?",
]
REAL_GREEDY = DecodingConfig(max_new_tokens=24, batch_size=4)


@pytest.fixture(scope="module")
def real_runs(real_torch):
    """Replies and stats of the real model: continuous and padded batches of 4, and continuous one at a time."""
    runs = {}
    for name, config in {
        "continuous": REAL_GREEDY,
        "static": REAL_GREEDY.with_(continuous=False),
        "single": REAL_GREEDY.with_(batch_size=1),
    }.items():
        runs[name] = (real_torch.generate_ids(REAL_PROMPTS, config), dict(real_torch.last_generation_stats))
    return runs


@pytest.mark.real_model
def test_real_greedy_equals_padded_batches_and_one_at_a_time(real_runs, real_torch):
    continuous, static, single = (real_runs[name][0] for name in ("continuous", "static", "single"))
    assert_same_greedy(real_torch, REAL_PROMPTS, continuous, static)  # identical, but where fp32 meets a true tie
    assert_same_greedy(real_torch, REAL_PROMPTS, continuous, single)
    assert any(len(reply) < REAL_GREEDY.max_new_tokens for reply in continuous), "some replies should end early"


@pytest.mark.real_model
def test_real_stats_show_fewer_wasted_slots(real_runs):
    (_, continuous), (_, static) = real_runs["continuous"], real_runs["static"]
    assert continuous["prompts"] == static["prompts"] == len(REAL_PROMPTS)
    assert continuous["new_tokens"] == sum(map(len, real_runs["continuous"][0])) > 0
    assert static["new_tokens"] == sum(map(len, real_runs["static"][0])) > 0
    assert continuous["new_tokens"] / continuous["token_slots"] > static["new_tokens"] / static["token_slots"]
    assert continuous["seconds"] > 0 and static["seconds"] > 0


def test_continuous_equals_padded_batches_on_the_tiny_model(tiny_torch):
    static = tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY.with_(continuous=False))
    assert_same_greedy(tiny_torch, TINY_PROMPTS, tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY), static)
    assert_same_greedy(tiny_torch, TINY_PROMPTS, tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY.with_(batch_size=1)), static)


def test_replies_follow_prompt_order(tiny_torch):
    forward = tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY)
    backward = tiny_torch.generate_ids(TINY_PROMPTS[::-1], TINY_GREEDY)  # other rows share each batch
    assert_same_greedy(tiny_torch, TINY_PROMPTS, backward[::-1], forward)
    assert tiny_torch.generate_ids([], TINY_GREEDY) == []


def test_fewer_prompts_than_rows(tiny_torch):
    config = TINY_GREEDY.with_(batch_size=8)
    assert_same_greedy(
        tiny_torch,
        TINY_PROMPTS[:3],
        tiny_torch.generate_ids(TINY_PROMPTS[:3], config),
        tiny_torch.generate_ids(TINY_PROMPTS[:3], config.with_(continuous=False)),
    )


def test_a_row_that_ends_at_once_gives_an_empty_reply(tiny_torch):
    """Make the first greedy token of one prompt the end-of-sequence id: its reply is empty, the others stop there."""
    prompts = [tiny_torch.tokenizer(tiny_torch.render(p), add_special_tokens=False)["input_ids"] for p in TINY_PROMPTS]
    normal = tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY)
    stop = normal[0][0]
    replies = ContinuousBatcher(tiny_torch.model, TINY_GREEDY, eos_id=stop).run(prompts)
    assert replies[0] == []
    cut = [reply[: reply.index(stop)] if stop in reply else reply for reply in normal]
    assert_same_greedy(tiny_torch, TINY_PROMPTS, replies, cut, eos=stop)  # the rows share their batches differently


def test_sampling_is_seeded(tiny_torch):
    config = DecodingConfig(strategy="sample", temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=12, seed=11, batch_size=3)
    first = tiny_torch.generate_ids(TINY_PROMPTS, config)
    assert tiny_torch.generate_ids(TINY_PROMPTS, config) == first
    assert tiny_torch.generate_ids(TINY_PROMPTS, config.with_(seed=12)) != first


def test_progress_bar_counts_prompts(tiny_torch):
    assert tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY, progress=True) == tiny_torch.generate_ids(TINY_PROMPTS, TINY_GREEDY)


def test_long_prompts_are_truncated_from_the_left_with_a_warning(tiny_torch):
    config = DecodingConfig(max_new_tokens=4)
    limit = tiny_torch.context_length() - config.max_new_tokens
    long_prompt = " ".join(f"w{i}" for i in range(2 * limit))
    assert tiny_torch.count_tokens(long_prompt) > limit
    with pytest.warns(UserWarning, match=f"1 of 2 prompts were longer than {limit} tokens and were truncated"):
        replies = tiny_torch.generate_ids([long_prompt, "hello"], config, chat=False)
    assert len(replies) == 2 and all(len(reply) <= config.max_new_tokens for reply in replies)


def test_a_backend_without_the_strategy_names_the_ones_that_have_it():
    with pytest.raises(BackendError, match="Beam search is not available on the llamacpp backend.*torch"):
        check_strategy("llamacpp", "beam")
    check_strategy("torch", "beam")
    check_strategy("llamacpp", "sample")


def test_continuous_is_validated_and_not_described():
    with pytest.raises(ValueError, match="continuous"):
        DecodingConfig(continuous="yes")
    assert DecodingConfig(continuous=False).describe() == DecodingConfig().describe() == "greedy"
