"""Chapter 06 part two: MCTS over lines of code valued by visible tests — the line rules, cache forks, the scorer's
cache, the answer's choice, early stopping, hanging programs, the likelihood fallback and that only visible tests run."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from slmlab.execution import scoring
from slmlab.execution.sandbox import SandboxLimits
from slmlab.execution.scoring import Score
from slmlab.execution.tasks import CodeTask, TestCase, extract_code, load_code_tasks, task_prompt
from slmlab.generation import DecodingConfig
from slmlab.mcts.code import (
    CodeSearchConfig,
    ProgramRecord,
    VisibleScorer,
    best_program,
    describe_tree,
    filter_programs,
    greedy_program,
    line_priors,
    program_key,
    sampled_program,
    search_program,
)
from slmlab.mcts.code_env import CodeEnvironment, LineAction, LineActionError, fence_closed, line_seed, prompt_only
from slmlab.rl import spec as rl_spec
from slmlab.settings import project_root

C, R, S = LineAction.CONTINUE, LineAction.RESAMPLE, LineAction.STOP
TASK = CodeTask(
    name="add",
    prompt="Define `add(a, b)` returning a + b.",
    kind="function",
    entry_point="add",
    signature="def add(a, b)",
    tests=(TestCase([1, 2], 3), TestCase([2, 2], 4), TestCase([5, 5], 10)),
    test_code=None,
)
VISIBLE = dataclasses.replace(TASK, tests=TASK.tests[:2])  # the last test stays hidden
HIDDEN_INPUT = [5, 5]


def reply(body: str) -> str:
    return f"```python\ndef add(a, b):\n    {body}\n```\nDone."


GOOD, WRONG, HALF, OTHER_HALF = reply("return a + b"), reply("return a - b"), reply("return a * 2"), reply("return b + 1")
HANG = reply("while True: pass")
SMALL = CodeSearchConfig(simulations=16, parallel_leaves=2, line_tokens=12, max_new_tokens=64)


class ScriptModule(torch.nn.Module):
    """Stands in for the transformers module: the KV cache's first layer stores the token ids themselves, so every fork
    knows its own sequence; the next token's logits are the log weights of the scripted replies that agree with the
    reply so far (EOS once such a reply is done), every other token far below."""

    def __init__(self, config, prompt_length: int, scripts: list[tuple[list[int], float]], eos: int):
        super().__init__()
        self.config, self.prompt_length, self.scripts, self.eos = config, prompt_length, scripts, eos

    def forward(self, input_ids, cache=None, **kwargs):
        ids = input_ids.to(torch.float32)[:, None, :, None]
        keys, _ = cache.update(ids, ids, 0)
        so_far = keys[0, 0, self.prompt_length :, 0].long().tolist()
        logits = torch.full((self.config.vocab_size,), -50.0)
        agreeing = [(s, w) for s, w in self.scripts if s[: len(so_far)] == so_far]
        for script, weight in agreeing or [([], 1.0)]:
            token = script[len(so_far)] if len(so_far) < len(script) else self.eos
            logits[token] = torch.logaddexp(logits[token], torch.tensor(math.log(weight)))
        return SimpleNamespace(logits=logits[None, None, :])


def script_model(tiny, replies: dict[str, float]):
    """The tiny model's tokenizer and chat template with a scripted module: it writes one of ``replies`` (text → weight)."""
    tokenizer = tiny.hf_tokenizer
    prompt_length = len(tokenizer(tiny.render(task_prompt(TASK)), add_special_tokens=False)["input_ids"])
    scripts = [(tokenizer(text, add_special_tokens=False)["input_ids"], weight) for text, weight in replies.items()]
    return dataclasses.replace(tiny, model=ScriptModule(tiny.model.config, prompt_length, scripts, tokenizer.eos_token_id))


def program_of(text: str) -> str:
    return extract_code(text, TASK)


@pytest.fixture
def seen_tasks(monkeypatch):
    """Every (task, code) the sandbox is asked to score; the real scorer still runs."""
    seen, real = [], scoring.score_program

    def recording(task, code, limits=SandboxLimits()):
        seen.append((task, code))
        return real(task, code, limits)

    monkeypatch.setattr(scoring, "score_program", recording)
    return seen


# --- the line rules ---------------------------------------------------------------------------------------------
def test_legal_moves_follow_the_line_rules(tiny_torch):
    model = script_model(tiny_torch, {GOOD: 1.0})
    root = CodeEnvironment(model, TASK, SMALL)
    assert root.legal_actions() == (C,)  # nothing to resample yet, and the program is still open
    for illegal, why in ((S, "has not ended"), (R, "no line to resample")):
        with pytest.raises(LineActionError, match=why):
            root.step(illegal)
    first = root.step(C)
    assert first.legal_actions() == (C, R) and first.resamples == 0
    resampled = first
    for count in range(1, SMALL.max_resamples + 1):
        resampled = resampled.step(R)
        assert resampled.resamples == count and len(resampled.lines) == 1
    assert resampled.legal_actions() == (C,)  # the line has had its resamples
    with pytest.raises(LineActionError, match="resampled 3 times"):
        resampled.step(R)
    assert resampled.step(C).legal_actions() == (C, R)  # a new line starts a new count
    end = root.playout()
    assert end.end_reason == "fence" and end.legal_actions() == (S, R)
    with pytest.raises(LineActionError, match="has ended"):
        end.step(C)
    assert "Done" not in end.reply_text and end.program == program_of(GOOD)
    stopped = end.step(S)
    assert stopped.is_terminal() and stopped.legal_actions() == () and not end.is_terminal()
    with pytest.raises(LineActionError, match="stopped"):
        stopped.step(R)
    assert stopped.terminal_value() == pytest.approx(1.0, abs=1e-6)  # default value: the likelihood, here certain
    with pytest.raises(LineActionError, match="unknown"):
        end.step("jump")
    no_resamples = CodeEnvironment(model, TASK, dataclasses.replace(SMALL, max_resamples=0)).playout()
    assert no_resamples.legal_actions() == (S,)


@pytest.mark.parametrize("line_tokens", [12, 2])
def test_a_line_ends_at_a_newline_token_end_of_sequence_or_line_tokens(tiny_torch, line_tokens):
    model = script_model(tiny_torch, {GOOD: 1.0})
    end = CodeEnvironment(model, TASK, dataclasses.replace(SMALL, line_tokens=line_tokens)).playout()
    decode = tiny_torch.hf_tokenizer.decode
    for line in end.lines:
        newlines = ["\n" in decode([token]) for token in line.token_ids]
        assert not any(newlines[:-1]) and 1 <= len(line.token_ids) <= line_tokens
        assert newlines[-1] or len(line.token_ids) == line_tokens
    assert "".join(line.text for line in end.lines) == end.reply_text
    assert end.ids == end.ids[: end.prompt_length] + tuple(t for line in end.lines for t in line.token_ids)
    assert len(end.lines) > (4 if line_tokens == 2 else 3)


def test_the_program_also_ends_at_end_of_sequence_or_when_its_tokens_are_spent(tiny_torch):
    unfenced = "def add(a, b):\n    return a + b\n"
    by_eos = CodeEnvironment(script_model(tiny_torch, {unfenced: 1.0}), TASK, SMALL).playout()
    assert by_eos.end_reason == "eos" and by_eos.lines[-1].hit_eos and by_eos.program == unfenced
    assert by_eos.legal_actions() == (S, R)
    spent = CodeEnvironment(script_model(tiny_torch, {GOOD: 1.0}), TASK, dataclasses.replace(SMALL, max_new_tokens=5))
    spent = spent.playout()
    assert spent.end_reason == "budget" and spent.tokens_used == 5 and spent.tokens_left == 0
    assert spent.legal_actions() == (S, R)


def test_a_code_block_is_closed_by_a_fence_after_its_opening_line():
    assert fence_closed("Here:\n```python\nx = 1\n```")
    assert not fence_closed("```python\nx = 1\n")
    assert not fence_closed("```python")  # the opening line itself is not a closing fence
    assert not fence_closed("no code yet")
    assert extract_code("```python\nx = 1\n```\nmore ```text", TASK) == "x = 1\n"  # after the close nothing counts


# --- KV caches and seeds ----------------------------------------------------------------------------------------
def test_steps_fork_the_cache_and_leave_the_parent_usable(tiny_torch):
    config = CodeSearchConfig(line_tokens=4, max_new_tokens=24)
    root = CodeEnvironment(tiny_torch, TASK, config)
    first = root.step(C)
    resampled, continued = first.step(R), first.step(C)
    assert first.step(R).ids == resampled.ids  # the parent's cache is intact after its children grew theirs
    assert CodeEnvironment(tiny_torch, TASK, config).step(C).step(C).ids == continued.ids  # a fresh episode agrees
    assert len(root.ids) == root.prompt_length and root.lines == ()
    for state in (root, first, resampled, continued, resampled.step(C)):  # each cache holds exactly the state's ids
        with torch.inference_mode():
            fresh = tiny_torch.model(input_ids=torch.tensor([state.ids])).logits[0, -1].float()
        torch.testing.assert_close(state.next_token_logits, fresh, atol=1e-4, rtol=1e-4)
    spent = root.spent["tokens"]  # counts for every state of the episode: a step anywhere shows at the root
    assert first.step(C) is continued and root.spent["tokens"] == spent  # a greedy line is decoded once per ids
    assert first.step(R).spent["tokens"] == spent + len(resampled.lines[-1].token_ids) == root.spent["tokens"]


def test_without_cache_reuse_each_line_encodes_its_prefix_again_and_decodes_the_same(tiny_torch):
    """The benchmark's baseline: the same states, each cache built from scratch. The logits agree to float rounding
    (one forward pass over a prefix against many one-token passes), so on the tiny model the tokens are the same."""
    config = CodeSearchConfig(line_tokens=4, max_new_tokens=24)
    fresh = dataclasses.replace(config, reuse_cache=False)
    forked = CodeEnvironment(tiny_torch, TASK, config).step(C).step(C).step(R)
    encoded = CodeEnvironment(tiny_torch, TASK, fresh).step(C).step(C).step(R)
    assert encoded.ids == forked.ids
    torch.testing.assert_close(encoded.next_token_logits, forked.next_token_logits, atol=1e-4, rtol=1e-4)
    calls = []
    import slmlab.mcts.code_env as module

    real = module._forward
    module._forward = lambda model, ids, cache: calls.append(len(ids)) or real(model, ids, cache)
    try:
        encoded.step(C)
    finally:
        module._forward = real
    assert calls[0] == len(encoded.ids)  # the whole prefix is fed again before the new line's first token


def test_without_score_caching_every_program_runs(seen_tasks):
    scorer = VisibleScorer(VISIBLE, cache=False)
    for _ in range(2):
        assert scorer.rate(program_of(GOOD)) == 1.0
    assert (scorer.runs, scorer.hits) == (2, 0) and len(seen_tasks) == 2


def test_resamples_differ_from_line_to_line_and_repeat_from_run_to_run(tiny_torch):
    config = CodeSearchConfig(line_tokens=6, max_new_tokens=24)

    def chain(seed: int) -> list[tuple[int, ...]]:
        state = CodeEnvironment(tiny_torch, TASK, dataclasses.replace(config, seed=seed)).step(C)
        lines = []
        for _ in range(config.max_resamples):
            state = state.step(R)
            lines.append(state.lines[-1].token_ids)
        return lines

    lines = chain(0)
    assert len(set(lines)) == len(lines)  # each resample of the line draws a line not tried there yet
    assert chain(0) == lines and chain(1) != lines
    assert line_seed(0, (1, 2), 1) != line_seed(0, (1, 2), 2) != line_seed(0, (1, 3), 2)
    assert line_seed(0, (1, 2), 1) == line_seed(0, (1, 2), 1) < 2**63


def test_greedy_program_is_the_models_greedy_reply(tiny_torch):
    config = CodeSearchConfig(line_tokens=3, max_new_tokens=20)
    end = CodeEnvironment(tiny_torch, TASK, config).playout()
    expected = tiny_torch.generate_ids([task_prompt(TASK)], DecodingConfig(max_new_tokens=20))[0]
    assert list(end.generated_ids) == expected and end.end_reason in ("eos", "budget")
    playout = greedy_program(tiny_torch, TASK, config)
    assert playout.code == end.program and playout.tokens == len(expected) and playout.seconds > 0
    code, tokens, _ = sampled_program(tiny_torch, TASK, config, temperature=1.0, seed=3)
    assert (code, tokens) == sampled_program(tiny_torch, TASK, config, temperature=1.0, seed=3)[:2]
    assert {sampled_program(tiny_torch, TASK, config, temperature=1.0, seed=s).code for s in range(3)} != {code}


def test_a_resample_never_draws_a_line_tried_there_before(tiny_torch):
    model = script_model(tiny_torch, {WRONG: 0.55, GOOD: 0.45})
    for seed in range(4):  # whatever the seed: the only other line is the one drawn
        state = CodeEnvironment(model, TASK, dataclasses.replace(SMALL, seed=seed))
        while not state.lines or "return" not in state.lines[-1].text:
            state = state.step(C)
        assert state.lines[-1].text.strip() == "return a - b" and 0.3 < state.untried_chance < 0.6
        other = state.step(R)
        assert other.lines[-1].text.strip() == "return a + b" and other.replaced == state.lines[-1:]
        assert other.untried_chance == pytest.approx(0.0, abs=1e-6)  # both lines tried: nothing left to find
        assert other.step(R).lines[-1].text.strip() in ("return a - b", "return a + b")  # then it samples as usual
        assert other.playout().program == program_of(GOOD)


# --- the scorer -----------------------------------------------------------------------------------------------------
def test_the_scorer_runs_each_distinct_program_once(seen_tasks):
    scorer = VisibleScorer(VISIBLE)
    assert scorer.rate(program_of(GOOD)) == 1.0
    assert scorer.rate('def add(x, y):\n    """Sum."""\n    return x + y  # plus\n') == 1.0  # same fingerprint
    assert scorer.rate(program_of(HALF)) == 0.5
    assert scorer.rate("def add(a, b) return\n") == 0.0 and scorer.rate("def add(a, b)   return\n\n") == 0.0
    assert (scorer.runs, scorer.hits) == (3, 2) and len(seen_tasks) == 3
    assert program_key("def f(:\n") != program_key("def g(:\n")  # code that does not parse still gets a key
    with pytest.raises(ValueError, match="no visible test"):
        VisibleScorer(dataclasses.replace(VISIBLE, tests=()))
    with pytest.raises(ValueError, match="no visible test"):
        VisibleScorer(None).score("x = 1\n")


def test_a_program_that_hangs_or_floods_scores_zero():
    scorer = VisibleScorer(VISIBLE, SandboxLimits(cpu_seconds=1, wall_seconds=2.0))
    assert scorer.rate("def add(a, b):\n    while True:\n        pass\n") == 0.0
    assert scorer.score("def add(a, b):\n    while True:\n        pass\n").status == "timeout"
    assert scorer.rate("def add(a, b):\n    while True:\n        print('x' * 4096)\n") == 0.0


# --- the search -----------------------------------------------------------------------------------------------------
def test_priors_favour_going_on_unless_the_model_doubted_the_last_line(tiny_torch):
    model = script_model(tiny_torch, {GOOD: 1.0})
    root = CodeEnvironment(model, TASK, SMALL)
    assert line_priors(root) == {C: 1.0}
    assert line_priors(root.step(C)) == pytest.approx({C: 0.95, R: 0.05})  # a certain line: the floor
    torn = CodeEnvironment(script_model(tiny_torch, dict.fromkeys((WRONG, GOOD, HALF, OTHER_HALF), 0.25)), TASK, SMALL)
    while not torn.lines or "return" not in torn.lines[-1].text:
        torn = torn.step(C)
    priors = line_priors(torn)  # the line where the two programs part
    assert priors[R] == pytest.approx(1 - torn.lines[-1].repeat_chance) and 0.5 < priors[R] < 0.95
    ended = line_priors(torn.playout())
    assert set(ended) == {S, R} and sum(ended.values()) == pytest.approx(1.0)


def test_the_search_finds_a_better_program_than_greedy_and_starts_from_greedy(tiny_torch, seen_tasks):
    model = script_model(tiny_torch, {WRONG: 0.55, GOOD: 0.45})
    greedy = greedy_program(model, TASK, SMALL)
    assert greedy.code == program_of(WRONG)
    result = search_program(model, TASK, VISIBLE, SMALL)
    assert result.programs[0].code == greedy.code and result.programs[0].visible_rate == 0.0
    assert result.code == program_of(GOOD) and result.visible_rate == 1.0 and result.solved_visible
    assert result.value_source == "visible tests" and result.sandbox_runs == len(seen_tasks) == len(result.programs)
    assert result.tokens > greedy.tokens and result.programs[-1].tokens <= result.tokens
    assert [record.tokens for record in result.programs] == sorted(record.tokens for record in result.programs)


def test_the_answer_is_the_best_visible_rate_and_ties_go_to_the_first_found(tiny_torch):
    def record(value: float, code: str) -> ProgramRecord:
        return ProgramRecord(code, value, (value + 1) / 2, "partial", 0.5, 1)

    assert best_program([record(-1, "a"), record(0, "b"), record(0, "c")]).code == "b"
    with pytest.raises(ValueError):
        best_program([])
    model = script_model(tiny_torch, {HALF: 0.55, OTHER_HALF: 0.45})
    result = search_program(model, TASK, VISIBLE, SMALL)
    rates = [r.visible_rate for r in result.programs]
    assert program_of(OTHER_HALF) in [r.code for r in result.programs] and rates[:1] == [0.5] and max(rates) == 0.5
    assert result.code == program_of(HALF) and not result.solved_visible  # greedy's, found first


def test_the_search_stops_once_a_program_passes_every_visible_test(tiny_torch):
    solved_by_greedy = search_program(script_model(tiny_torch, {GOOD: 1.0}), TASK, VISIBLE, SMALL)
    greedy = greedy_program(script_model(tiny_torch, {GOOD: 1.0}), TASK, SMALL)
    assert solved_by_greedy.simulations == 0 and solved_by_greedy.tokens == greedy.tokens
    assert solved_by_greedy.sandbox_runs == 1 and solved_by_greedy.root.visit_count == 0
    model = script_model(tiny_torch, {WRONG: 0.55, GOOD: 0.45})
    config = dataclasses.replace(SMALL, simulations=40)
    early = search_program(model, TASK, VISIBLE, config)
    full = search_program(model, TASK, VISIBLE, dataclasses.replace(config, stop_when_solved=False))
    assert early.solved_visible and early.simulations < 40 and early.programs[-1].solved
    assert full.simulations == 40 and full.root.visit_count == 40 and full.tokens > early.tokens


def test_a_hanging_program_is_worth_nothing_and_the_search_goes_on(tiny_torch, monkeypatch):
    real = scoring.score_program

    def hanging(task, code, limits=SandboxLimits()):
        if "while True" in code:
            return Score(reward=0.05, passed=0, total=len(task.tests), status="timeout")
        return real(task, code, limits)

    monkeypatch.setattr(scoring, "score_program", hanging)
    result = search_program(script_model(tiny_torch, {HANG: 0.55, GOOD: 0.45}), TASK, VISIBLE, SMALL)
    first = result.programs[0]
    assert first.code == program_of(HANG) and first.status == "timeout" and first.value == -1.0
    assert result.code == program_of(GOOD) and result.solved_visible


def test_without_visible_tests_the_value_is_the_likelihood(tiny_torch, seen_tasks):
    likeliest, greedy, third = reply("return a + b"), reply("return b - a"), reply("return b * a")
    model = script_model(tiny_torch, {likeliest: 0.48, greedy: 0.27, third: 0.25})  # greedy: " b" (0.52), then " -"
    config = dataclasses.replace(SMALL, simulations=24)
    result = search_program(model, TASK, None, config)
    assert result.value_source == "likelihood" and result.sandbox_runs == 0 and seen_tasks == []
    assert result.visible_rate is None and not result.solved_visible and result.simulations == config.simulations
    assert result.programs[0].code == program_of(greedy) and all(r.status == "likelihood" for r in result.programs)
    assert all(r.value == pytest.approx(2 * r.likelihood - 1) for r in result.programs)
    assert result.code == program_of(likeliest) == max(result.programs, key=lambda r: r.likelihood).code


def test_the_search_only_ever_runs_the_visible_tests(tiny_torch, seen_tasks):
    model = script_model(tiny_torch, {WRONG: 0.4, HALF: 0.3, GOOD: 0.3})
    search_program(model, TASK, VISIBLE, dataclasses.replace(SMALL, stop_when_solved=False))
    filter_programs(model, TASK, VISIBLE, SMALL, token_budget=80)
    assert seen_tasks and all(task is VISIBLE for task, _ in seen_tasks)
    assert all(test in VISIBLE.tests and test.input != HIDDEN_INPUT for task, _ in seen_tasks for test in task.tests)
    assert CodeEnvironment(model, TASK, SMALL).task == prompt_only(TASK) and prompt_only(TASK).tests == ()


def test_filtering_samples_until_the_budget_is_spent_or_a_sample_passes(tiny_torch):
    model = script_model(tiny_torch, {WRONG: 0.55, GOOD: 0.45})
    found = filter_programs(model, TASK, VISIBLE, SMALL, token_budget=400)
    assert found.solved_visible and found.code == program_of(GOOD) and found.programs[-1].solved
    assert found.root is None and found.tokens < 400
    spent = filter_programs(model, TASK, VISIBLE, dataclasses.replace(SMALL, stop_when_solved=False), token_budget=100)
    samples = sum(r.found for r in spent.programs)
    longest = max(greedy_program(script_model(tiny_torch, {text: 1.0}), TASK, SMALL).tokens for text in (WRONG, GOOD))
    assert 100 <= spent.tokens < 100 + longest and spent.code == program_of(GOOD)
    assert spent.sandbox_runs + spent.cache_hits == samples > 2 and spent.sandbox_runs == 2
    with pytest.raises(ValueError, match="token_budget"):
        filter_programs(model, TASK, VISIBLE, SMALL, token_budget=0)


def test_the_tree_shows_each_nodes_line_and_visible_rate(tiny_torch):
    model = script_model(tiny_torch, {WRONG: 0.55, GOOD: 0.45})
    result = search_program(model, TASK, VISIBLE, dataclasses.replace(SMALL, stop_when_solved=False))
    tree = describe_tree(result, max_depth=8)
    assert tree["visits"] == SMALL.simulations and tree["rate"] == 0.0 and tree["code"] == program_of(WRONG)

    def walk(entry, node):
        yield entry, node
        for child in entry["children"]:
            yield from walk(child, node.children[child["action"]])

    pairs = list(walk(tree, result.root))
    for entry, node in pairs[1:]:
        assert entry["line"] == ("" if entry["action"] == S else node.state.lines[-1].text)
        assert entry["rate"] is None or entry["rate"] == result.evaluator.record_at(node.state).visible_rate
    assert {entry["rate"] for entry, _ in pairs} >= {0.0, 1.0}
    with pytest.raises(ValueError, match="tree"):
        describe_tree(filter_programs(model, TASK, VISIBLE, SMALL, token_budget=10))


def test_the_config_names_a_bad_field():
    for field, value in (("simulations", 0), ("line_tokens", 0), ("resample_temperature", 0.0), ("max_resamples", -1)):
        with pytest.raises(ValueError, match=field):
            CodeSearchConfig(**{field: value})
    quick = CodeSearchConfig().quick()
    assert quick.simulations < CodeSearchConfig().simulations
    mcts = CodeSearchConfig().mcts()
    assert (mcts.num_simulations, mcts.parallel_leaves) == (16, 2)


# --- the real model -------------------------------------------------------------------------------------------------
@pytest.mark.real_model
def test_the_search_on_the_real_model_keeps_greedys_program_or_betters_it(real_torch):
    task = load_code_tasks(rl_spec.tasks_dir(project_root()) / rl_spec.HELD_OUT, "add_eight")[0]
    visible = task.visible_task()
    config = CodeSearchConfig(simulations=4)
    result = search_program(real_torch, task, visible, config)
    greedy = greedy_program(real_torch, task, config)
    assert result.programs[0].code == greedy.code
    assert result.visible_rate >= VisibleScorer(visible).rate(greedy.code)
    assert result.solved_visible and "return" in result.code and result.tokens >= greedy.tokens
