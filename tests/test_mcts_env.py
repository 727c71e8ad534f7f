"""The language-model environment of chapter 06: greedy baseline, KV-cache reuse, immutability, EOS, budget."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
import torch

from slmlab.backends.continuous import cache_keyword
from slmlab.errors import BackendError
from slmlab.generation import DecodingConfig
from slmlab.mcts.core import MCTS, MCTSConfig, search_tree
from slmlab.mcts.lm_env import EnvConfig, LMEnvironment, greedy_episode
from slmlab.mcts.macro import THOUGHT_PLACEHOLDER, Macro, MacroActionError
from slmlab.testing import assert_same_greedy

C, TB, TE, R, S = Macro.CONTINUE, Macro.THINK_BEGIN, Macro.THINK_END, Macro.RESAMPLE, Macro.STOP
PROMPT = "hello world"
SMALL = EnvConfig(span_tokens=4, budget=16, early_stop=True)  # these tests stop where they like
MIXED = [C, TB, C, TE, C, R, R, C, S]  # thoughts, two resamples in a row, then more text


def run(env: LMEnvironment, actions) -> list[LMEnvironment]:
    states = [env]
    for action in actions:
        states.append(states[-1].step(action))
    return states


def visible_ids(env: LMEnvironment) -> list[int]:
    return [t for span in env.macro.spans if not span.thought for t in span.token_ids]


class EosAfter(torch.nn.Module):
    """The tiny model, but end of sequence becomes the favourite once the sequence has ``length`` tokens."""

    def __init__(self, inner, length: int, eos: int):
        super().__init__()
        self.inner, self.length, self.eos, self.config = inner, length, eos, inner.config

    def forward(self, input_ids, cache=None, position_ids=None, **kwargs):
        if position_ids is None:  # one row, or rows of equal length: the cache length is every row's
            total = torch.full((input_ids.shape[0],), input_ids.shape[1] + (cache.get_seq_length() if cache else 0))
        else:  # a batch of rows of different lengths (left-padded): each row's own length
            total = position_ids[:, -1] + 1
        out = self.inner(input_ids=input_ids, position_ids=position_ids, **{cache_keyword(type(self.inner)): cache}, **kwargs)
        reached = (total >= self.length)[:, None]
        out.logits[..., self.eos] = torch.where(reached, torch.tensor(1e4), out.logits[..., self.eos])
        return out


def eos_model(model, after_prompt: int):
    length = len(LMEnvironment(model, PROMPT, SMALL).ids) + after_prompt
    return dataclasses.replace(model, model=EosAfter(model.model, length, model.hf_tokenizer.eos_token_id))


@pytest.mark.parametrize("budget", [16, 10])  # 10: the last span is cut to the 2 tokens left
def test_greedy_episode_equals_generate(tiny_torch, budget):
    env = greedy_episode(tiny_torch, PROMPT, EnvConfig(span_tokens=4, budget=budget))
    expected = tiny_torch.generate_ids([PROMPT], DecodingConfig(max_new_tokens=budget))[0]
    assert visible_ids(env) == expected
    assert env.visible_text == tiny_torch.generate([PROMPT], DecodingConfig(max_new_tokens=budget))[0]
    assert env.is_terminal() and env.macro.tokens_used == len(expected)
    assert [step["action"] for step in env.macro_trace()][-1] == "stop"


def test_cache_reuse_and_recompute_decode_the_same(tiny_torch):
    """With and without KV-cache reuse, a mixed sequence gives the same tokens, logits and hidden states."""
    config = dataclasses.replace(SMALL, budget=24)
    reused = run(LMEnvironment(tiny_torch, PROMPT, config), MIXED)
    recomputed = run(LMEnvironment(tiny_torch, PROMPT, dataclasses.replace(config, reuse_cache=False)), MIXED)
    for a, b in zip(reused, recomputed):
        assert a.ids == b.ids and a.macro.spans == b.macro.spans
        torch.testing.assert_close(a.next_token_logits, b.next_token_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.hidden_mean, b.hidden_mean, atol=1e-4, rtol=1e-4)
    # reuse feeds only the new tokens; recompute re-encodes the prompt first
    prompt = reused[0].prompt_length
    assert reused[-1].macro_trace()[0]["fed"] == 4 and recomputed[-1].macro_trace()[0]["fed"] == prompt + 4
    resampled = reused[-1].macro.spans[-2]
    assert (resampled.seed, resampled.temperature) == (config.seed + 2, config.resample_temperature)


def test_tokens_fit_their_ids(tiny_torch):
    """The ids are prompt + kept spans + markers, in order, and the spans that RESAMPLE replaced are gone."""
    states = run(LMEnvironment(tiny_torch, PROMPT, dataclasses.replace(SMALL, budget=24)), MIXED)
    env, root = states[-1], states[0]
    markers = {
        a: tuple(tiny_torch.hf_tokenizer(t, add_special_tokens=False)["input_ids"])
        for a, t in ((TB, env.config.think_begin), (TE, env.config.think_end))
    }
    spans = iter(env.macro.spans)
    expected = root.ids + next(spans).token_ids + markers[TB] + next(spans).token_ids + markers[TE]
    expected += next(spans).token_ids + next(spans).token_ids
    assert env.ids == expected


def test_step_leaves_the_parent_unchanged(tiny_torch):
    parent = LMEnvironment(tiny_torch, PROMPT, SMALL).step(C)
    ids, logits, macro = parent.ids, parent.next_token_logits.clone(), parent.macro
    keys = [layer.keys.clone() for layer in parent._cache.layers]
    for action in (C, R, TB, S):
        first, second = parent.step(action), parent.step(action)
        assert first is not second and first.ids == second.ids and first.macro == second.macro
        torch.testing.assert_close(first.next_token_logits, second.next_token_logits, atol=0, rtol=0)
    assert parent.ids == ids and parent.macro == macro and torch.equal(parent.next_token_logits, logits)
    assert all(torch.equal(k, layer.keys) for k, layer in zip(keys, parent._cache.layers))
    assert parent._cache.get_seq_length() == len(parent.ids)
    # a grandchild through a resample, then continuing, still agrees with a fresh path
    again = parent.step(R).step(C)
    fresh = LMEnvironment(tiny_torch, PROMPT, SMALL).step(C).step(R).step(C)
    assert again.ids == fresh.ids


def test_thought_never_shows(tiny_torch):
    env = run(LMEnvironment(tiny_torch, PROMPT, dataclasses.replace(SMALL, budget=24)), MIXED)[-1]
    thought = [span for span in env.macro.spans if span.thought]
    assert thought and env.macro.thought_text
    assert env.visible_text == tiny_torch.decode(visible_ids(env))
    assert len(visible_ids(env)) + sum(map(len, thought)) == env.macro.tokens_used
    assert env.macro.thought_text not in env.visible_text
    assert "step by step" not in env.visible_text and "Answer:" not in env.visible_text
    trace = env.macro_trace()
    hidden = [step for step in trace if step.get("thought")]
    assert hidden and all(step["text"] == THOUGHT_PLACEHOLDER for step in hidden)
    assert all(env.macro.thought_text not in str(step) for step in trace)


def test_budget_and_terminal_value_under_random_play(tiny_torch):
    rng = random.Random(0)
    config = EnvConfig(span_tokens=4, budget=10)
    for episode in range(3):
        env = LMEnvironment(tiny_torch, PROMPT, dataclasses.replace(config, seed=episode), gold="dddd")
        for _ in range(env.macro.max_steps):
            if env.is_terminal():
                break
            env = env.step(rng.choice(env.legal_actions()))
            assert env.macro.tokens_used <= config.budget
            markers = sum(step["fed"] for step in env.macro_trace() if step["action"].startswith("think"))
            assert len(env.generated_ids) == env.macro.tokens_used + markers
        assert env.is_terminal() and env.legal_actions() == ()
        assert 0.0 <= env.reward() <= 1.0 and env.terminal_value() == pytest.approx(2 * env.reward() - 1)


def test_reward_fn_and_value_convention(tiny_torch):
    one_span = EnvConfig(span_tokens=4, budget=4)
    done = greedy_episode(tiny_torch, PROMPT, one_span, reward_fn=lambda env: 1.0)
    assert done.terminal_value() == 1.0 and done.to_play() == LMEnvironment(tiny_torch, PROMPT, SMALL).to_play()
    assert greedy_episode(tiny_torch, PROMPT, one_span, reward_fn=lambda env: 0.0).terminal_value() == -1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        greedy_episode(tiny_torch, PROMPT, one_span, reward_fn=lambda env: 1.5).terminal_value()
    with pytest.raises(ValueError, match="finished"):
        LMEnvironment(tiny_torch, PROMPT, one_span).reward()
    # the default reward: exact match against gold (0.9) plus brevity (0.1, nothing left of a budget of 4)
    assert greedy_episode(tiny_torch, PROMPT, one_span, gold=done.visible_text).reward() == pytest.approx(0.9)
    assert greedy_episode(tiny_torch, PROMPT, one_span, gold="no match").reward() == 0.0


def test_end_of_sequence_closes_the_answer(tiny_torch):
    model = eos_model(tiny_torch, after_prompt=6)
    env = LMEnvironment(model, PROMPT, SMALL).step(C)
    assert not env.ended and C in env.legal_actions()
    ended = env.step(C)
    assert ended.hit_eos and ended.ended and len(ended.macro.spans[-1]) == 2
    assert ended.legal_actions() == (R, S)
    with pytest.raises(MacroActionError, match="end of sequence"):
        ended.step(C)
    plain = greedy_episode(tiny_torch, PROMPT, SMALL)
    assert visible_ids(greedy_episode(model, PROMPT, SMALL)) == visible_ids(plain)[:6]


def test_end_of_sequence_before_any_text_still_moves(tiny_torch):
    """EOS as the very first token: STOP is not legal yet, so CONTINUE stays and its span is not empty."""
    root = LMEnvironment(eos_model(tiny_torch, after_prompt=0), PROMPT, SMALL)
    assert root.ended and root.legal_actions() == (C, TB)
    first = root.step(C)
    assert len(first.macro.spans[0]) == 1 and first.hit_eos and first.legal_actions() == (R, S)


def test_search_runs_over_the_environment(tiny_torch):
    root = LMEnvironment(tiny_torch, PROMPT, SMALL, gold="x")
    uniform = lambda state: ({a: 1.0 for a in state.legal_actions()}, 0.0)  # noqa: E731
    tree = MCTS(MCTSConfig(num_simulations=12), uniform).run(root)
    assert sum(child.visit_count for child in tree.children.values()) == 12
    assert root.macro.spans == () and root.ids == LMEnvironment(tiny_torch, PROMPT, SMALL).ids


def test_illegal_actions_and_other_backends_are_refused(tiny_torch):
    root = LMEnvironment(tiny_torch, PROMPT, SMALL)
    with pytest.raises(MacroActionError, match="STOP is illegal"):
        root.step(S)
    with pytest.raises(MacroActionError, match="not a macro-action"):
        root.step("jump")
    with pytest.raises(BackendError, match="torch backend"):
        LMEnvironment(SimpleNamespace(backend="mlx"), PROMPT)
    with pytest.raises(ValueError, match="span_tokens"):
        EnvConfig(span_tokens=0)


@pytest.mark.real_model
def test_greedy_episode_equals_generate_on_the_real_model(real_torch):
    prompts = ["What is 2 + 3?", "Name a colour of the sky."]
    config = EnvConfig(span_tokens=8, budget=24)
    expected = real_torch.generate_ids(prompts, DecodingConfig(max_new_tokens=config.budget))
    episodes = [greedy_episode(real_torch, prompt, config) for prompt in prompts]
    eos = real_torch.hf_tokenizer.eos_token_id
    replies = [[t for span in env.macro.spans if not span.thought for t in span.token_ids if t != eos] for env in episodes]
    assert_same_greedy(real_torch, prompts, replies, expected)  # span by span over a cache against one generate call
    for prompt, env, reply, ids in zip(prompts, episodes, replies, expected):
        if reply == ids:
            assert env.visible_text == real_torch.decode(ids)
        recomputed = greedy_episode(real_torch, prompt, dataclasses.replace(config, reuse_cache=False))
        assert_same_greedy(real_torch, [prompt], [list(recomputed.generated_ids)], [list(env.generated_ids)])


def test_stop_waits_for_the_end_of_the_reply_or_the_budget(tiny_torch):
    config = EnvConfig(span_tokens=4, budget=8)
    env = LMEnvironment(tiny_torch, PROMPT, config).step(C)
    assert S not in env.legal_actions() and C in env.legal_actions()
    with pytest.raises(MacroActionError, match="not ended its reply and 4 tokens of budget are left"):
        env.step(S)
    spent = env.step(C)
    assert spent.macro.tokens_left == 0 and S in spent.legal_actions()
    ended = eos_model(tiny_torch, after_prompt=4)
    done = LMEnvironment(ended, PROMPT, config).step(C)
    assert done.ended and S in done.legal_actions()


# --- batched stepping ---------------------------------------------------------------------------------


def mixed_pairs(model) -> list[tuple[LMEnvironment, Macro]]:
    """States with different prefix lengths, each with every legal action (spans, markers and STOP)."""
    config = dataclasses.replace(SMALL, budget=24)
    states = [LMEnvironment(model, prompt, config) for prompt in (PROMPT, "a longer prompt than the first one", "x")]
    states += [states[0].step(C), states[1].step(C).step(TB).step(C), states[2].step(C).step(R)]
    return [(state, action) for state in states for action in state.legal_actions()]


def test_step_batch_equals_stepping_each_pair(tiny_torch):
    pairs = mixed_pairs(tiny_torch)
    assert {action for _, action in pairs} >= {C, R, TB, TE, S}
    one_by_one = [state.step(action) for state, action in pairs]
    together = LMEnvironment.step_batch(pairs)
    for a, b in zip(one_by_one, together):
        assert a.ids == b.ids and a.macro.spans == b.macro.spans and a.hit_eos == b.hit_eos
        torch.testing.assert_close(a.next_token_logits, b.next_token_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.hidden_mean, b.hidden_mean, atol=1e-4, rtol=1e-4)
        assert [s["action"] for s in a.macro_trace()] == [s["action"] for s in b.macro_trace()]
        assert a.macro_trace()[-1]["fed"] == b.macro_trace()[-1]["fed"]
    # the children's own caches are right: the next span decodes the same tokens
    nexts = [(a.step(C), b.step(C)) for a, b in zip(one_by_one, together) if C in a.legal_actions()]
    assert nexts and all(x.ids == y.ids for x, y in nexts)


def test_step_batch_copes_with_an_early_end_of_sequence(tiny_torch):
    model = eos_model(tiny_torch, after_prompt=2)
    env = LMEnvironment(model, PROMPT, SMALL)
    long = LMEnvironment(model, PROMPT + " and more words", SMALL)
    pairs = [(env, C), (env, R) if R in env.legal_actions() else (env, C), (long, C)]
    for a, b in zip([s.step(x) for s, x in pairs], LMEnvironment.step_batch(pairs)):
        assert a.ids == b.ids and a.hit_eos == b.hit_eos


def uniform_priors(state):
    actions = state.legal_actions()
    return {action: 1.0 / len(actions) for action in actions}, 0.0


def test_batched_search_equals_the_same_search_stepped_one_state_at_a_time(tiny_torch, monkeypatch):
    config = MCTSConfig(num_simulations=24, seed=3, parallel_leaves=4, expand_siblings=True)
    env_config = dataclasses.replace(SMALL, budget=16)
    batched = MCTS(config, uniform_priors).run(LMEnvironment(tiny_torch, PROMPT, env_config, gold="x"))
    calls = []

    def one_at_a_time(pairs):
        calls.append(len(pairs))
        return [state.step(action) for state, action in pairs]

    monkeypatch.setattr(LMEnvironment, "step_batch", staticmethod(one_at_a_time))
    serial = MCTS(config, uniform_priors).run(LMEnvironment(tiny_torch, PROMPT, env_config, gold="x"))
    assert calls and max(calls) > 1  # the batched search really batched
    assert search_tree(batched, max_depth=6) == search_tree(serial, max_depth=6)
