"""Chapter 06 end to end on the tiny random model: QA items and grading, search episodes, self-play into the
replay buffer (resumable), the comparison with greedy and best-of-n, the chapter run, the CLI, the MCTS
controller over real HTTP and the notebook's pictures."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from slmlab.mcts.cli import add_mcts_commands
from slmlab.mcts.controller import MCTSController
from slmlab.mcts.evaluate import COLUMNS, EvalSettings, evaluate_controllers, summarize_evaluation
from slmlab.mcts.features import feature_dim
from slmlab.mcts.lm_env import EnvConfig, LMEnvironment
from slmlab.mcts.macro import MACROS, THOUGHT_PLACEHOLDER, Macro, MacroState, Span
from slmlab.mcts.network import PolicyValueNet, save_network
from slmlab.mcts.qa import final_answer, make_qa_items, qa_correct, qa_split
from slmlab.mcts.replay import ReplayBuffer
from slmlab.mcts.runs import ChapterSettings, chapter_items, run_chapter
from slmlab.mcts.selfplay import (
    EPISODES_FILE,
    Featurizer,
    SearchSettings,
    SelfPlayConfig,
    UniformEvaluator,
    episodes_done,
    search_episode,
    self_play,
)
from slmlab.mcts.serve import create_app
from slmlab.mcts.views import plot_comparison, plot_macro_trace, plot_rewards, plot_search_tree, trace_table

SMALL = SelfPlayConfig(span_tokens=4, budget=8, simulations=2, hidden=16)
ITEMS = make_qa_items(4, seed=3)


# --- QA items and grading ---------------------------------------------------------------------------------
def test_qa_items_are_seeded_distinct_and_their_sums_are_right():
    items = make_qa_items(60, seed=1)
    assert items == make_qa_items(60, seed=1) and items != make_qa_items(60, seed=2)
    assert len({i.question for i in items}) == 60 and all(i.domain == "qa" for i in items)
    checked = 0
    for item in items:
        match = re.match(r"What is (\d+) (\+|-|times) (\d+)\?", item.question)
        if match:
            a, op, b = int(match[1]), match[2], int(match[3])
            assert int(item.answer) == {"+": a + b, "-": a - b, "times": a * b}[op]
            checked += 1
    assert checked >= 15


def test_qa_split_is_disjoint_and_too_many_items_is_an_error():
    train, test = qa_split(10, 5, seed=0)
    assert len(train) == 10 and len(test) == 5 and not {i.question for i in train} & {i.question for i in test}
    with pytest.raises(ValueError, match="distinct QA items"):
        make_qa_items(400, arithmetic_share=0.0)


@pytest.mark.parametrize(
    "reply, gold, expected",
    [
        ("7 + 5 = 12.", "12", "12"),
        ("A week is 7 days. A day has 24 hours.", "7", "7"),
        ("The capital of Japan is Tokyo.", "Tokyo", "Tokyo"),
        ("Paris, the city of light.", "Paris", "Paris"),
        ("1,200 people", "1200", "1200"),
        ("no number here", "5", "no number here"),
    ],
)
def test_final_answer_pulls_the_answer_out_of_a_sentence(reply, gold, expected):
    assert final_answer(reply, gold) == expected


@pytest.mark.parametrize(
    "reply, gold, correct",
    [
        ("12", "12", True),
        ("The answer is 12.", "12", True),
        ("7 + 5 = 13", "12", False),
        ("The capital of Italy is Rome.", "Rome", True),
        ("Rome is the capital.", "Rome", False),
        ("", "Rome", False),
    ],
)
def test_qa_correct(reply, gold, correct):
    assert qa_correct(reply, gold) is correct


# --- one search episode ---------------------------------------------------------------------------------------
def test_search_episode_plays_legal_moves_and_records_every_position(tiny_torch):
    featurizer = Featurizer()
    episode = search_episode(
        tiny_torch, ITEMS[0], UniformEvaluator(), SMALL.env_config(), SearchSettings(simulations=3), featurizer, keep_tree=True
    )
    state = MacroState(budget=SMALL.budget)
    for step in episode.trace:  # the trace replays under the macro rules
        span = Span("x", (0,) * step["tokens"], thought=step["thought"]) if "text" in step else None
        state = state.apply(step["action"], span)
    assert state.is_final and episode.actions[-1] == "stop" and len(episode.steps) == len(episode.actions)
    for features, mask, policy in episode.steps:
        assert features.shape == (feature_dim(tiny_torch),) and len(mask) == len(MACROS)
        assert sum(policy.values()) == pytest.approx(1.0) and all(mask[MACROS.index(a)] for a in policy)
    assert 0.0 <= episode.reward <= 1.0 and episode.correct in (True, False)
    assert episode.tree["visits"] == 3 and sum(c["visits"] for c in episode.tree["children"]) == 3
    assert episode.fed_tokens >= episode.tokens and episode.search_steps >= len(episode.actions)
    assert json.loads(json.dumps(episode.record()))["item_id"] == ITEMS[0].id


def test_without_gold_the_search_never_sees_the_answer(tiny_torch):
    seen = []

    def reward(env: LMEnvironment) -> float:
        seen.append(env.gold)
        return 0.5

    search_episode(
        tiny_torch,
        ITEMS[1],
        UniformEvaluator(),
        SMALL.env_config(),
        SearchSettings(simulations=4),
        use_gold=False,
        reward_fn=reward,
    )
    assert seen and set(seen) == {None}


def test_tree_reuse_gives_the_same_greedy_play_with_fewer_steps(tiny_torch):
    def play(reuse: bool):
        return search_episode(
            tiny_torch, ITEMS[2], UniformEvaluator(), SMALL.env_config(), SearchSettings(simulations=4, tree_reuse=reuse)
        )

    fresh, reused = play(False), play(True)
    assert fresh.search_steps >= len(fresh.actions) and reused.search_steps >= len(reused.actions)
    assert reused.steps[0][2] == fresh.steps[0][2]  # the first search is the same either way


def test_the_featurizer_counts_each_state_once(tiny_torch):
    featurizer = Featurizer()
    state = LMEnvironment(tiny_torch, "hello", EnvConfig(span_tokens=2, budget=4))
    first = featurizer(state)
    assert featurizer(state) is first and featurizer.stats.count == 1
    featurizer(state.step(Macro.CONTINUE))
    assert featurizer.stats.count == 2


# --- self-play into a run folder -------------------------------------------------------------------------------
def test_self_play_fills_the_replay_buffer_and_resumes(tiny_torch, tmp_path):
    lines = []
    report = self_play(tiny_torch, ITEMS, tmp_path, 2, SMALL, progress=False, log=lines.append)
    records = episodes_done(tmp_path)
    assert [r["episode"] for r in records] == [0, 1] and [r["item_id"] for r in records] == [i.id for i in ITEMS[:2]]
    assert len(lines) == 2 and all(re.search(r"reward=\d\.\d{3}", line) for line in lines)
    buffer = ReplayBuffer.open(tmp_path / "replay")
    assert len(buffer) == report.positions == sum(len(r["actions"]) for r in records)
    rows = buffer.rows(buffer.indices())
    assert np.allclose(rows["policy"].sum(axis=1), 1.0) and not (rows["policy"] * ~rows["mask"]).any()
    assert {round(float(v), 4) for v in rows["value"]} <= {round(2 * r["reward"] - 1, 4) for r in records}

    with (tmp_path / EPISODES_FILE).open("a") as log:
        log.write('{"episode": 2, "cut off')  # a crash in the middle of a line
    again = self_play(tiny_torch, ITEMS, tmp_path, 1, SMALL, progress=False)
    assert again.first_episode == 2 and [r["episode"] for r in episodes_done(tmp_path)] == [0, 1, 2]
    assert episodes_done(tmp_path)[2]["item_id"] == ITEMS[2].id

    with pytest.raises(ValueError, match=r"config.json was made with other settings \(budget, simulations differ\)"):
        self_play(
            tiny_torch, ITEMS, tmp_path, 1, SelfPlayConfig(span_tokens=4, budget=9, simulations=3, hidden=16), progress=False
        )


def test_a_folder_written_before_batched_rounds_resumes_with_one_leaf_per_round(tiny_torch, tmp_path):
    one_leaf = dataclasses.replace(SMALL, parallel_leaves=1)
    self_play(tiny_torch, ITEMS, tmp_path, 1, one_leaf, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["parallel_leaves"]  # as such a folder was written
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert self_play(tiny_torch, ITEMS, tmp_path, 1, one_leaf, progress=False).first_episode == 1
    with pytest.raises(ValueError, match=r"parallel_leaves differ"):
        self_play(tiny_torch, ITEMS, tmp_path, 1, dataclasses.replace(SMALL, parallel_leaves=4), progress=False)


def test_batched_and_one_leaf_searches_both_play_whole_episodes(tiny_torch):
    for leaves in (1, 3):
        episode = search_episode(
            tiny_torch, ITEMS[0], UniformEvaluator(), SMALL.env_config(), SearchSettings(simulations=6, parallel_leaves=leaves)
        )
        assert episode.actions[-1] == "stop" and all(sum(p.values()) == pytest.approx(1.0) for *_, p in episode.steps)


def test_self_play_is_deterministic_for_a_seed(tiny_torch, tmp_path):
    def texts(folder):
        self_play(tiny_torch, ITEMS, folder, 2, SMALL, progress=False)
        return [(r["visible_text"], r["actions"]) for r in episodes_done(folder)]

    assert texts(tmp_path / "a") == texts(tmp_path / "b")


# --- the comparison and the chapter run -------------------------------------------------------------------------
def test_evaluate_controllers_compares_three_methods(tiny_torch, tmp_path):
    settings = EvalSettings(budget=6, span_tokens=3, best_of=3, simulations=2)
    frame = evaluate_controllers(tiny_torch, ITEMS[:2], settings, progress=False, out=tmp_path / "eval.csv")
    assert list(frame.columns) == COLUMNS and len(frame) == 6
    assert (tmp_path / "eval.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    by = frame.groupby("method")
    assert (by["answer_tokens"].max() <= 6).all() and (frame["tokens_spent"] >= frame["answer_tokens"]).all()
    assert (frame.loc[frame.method == "best-of-n", "tokens_spent"] > 6).all()  # three samples were drawn
    table = summarize_evaluation(frame)
    assert list(table["method"]) == ["greedy", "best-of-n", "mcts"] and (table["items"] == 2).all()
    with pytest.raises(ValueError, match="unknown method"):
        evaluate_controllers(tiny_torch, ITEMS[:1], settings, methods=["beam"])


def test_greedy_row_matches_plain_generation(tiny_torch):
    from slmlab.generation import DecodingConfig

    frame = evaluate_controllers(tiny_torch, ITEMS[:1], EvalSettings(budget=5), methods=["greedy"], progress=False)
    assert frame.loc[0, "pred"] == tiny_torch.generate([ITEMS[0].question], DecodingConfig(max_new_tokens=5))[0]


def test_run_chapter_trains_evaluates_and_reuses_its_work(tiny_torch, tmp_path):
    settings = ChapterSettings(
        n_train=3,
        n_test=2,
        rounds=2,
        episodes_per_round=1,
        steps_per_round=3,
        batch_size=4,
        simulations=2,
        budget=6,
        span_tokens=3,
        best_of=2,
    )
    summary = run_chapter(tiny_torch, tmp_path, settings, progress=False, topic_drift=False)  # MiniLM: test_mcts_topic_drift
    assert summary["episodes"] == 2 and len(summary["mean_reward_by_round"]) == 2
    assert [row["method"] for row in summary["evaluation"]] == ["greedy", "best-of-n", "mcts"]
    metrics = [json.loads(line) for line in (tmp_path / "network" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6] and all(np.isfinite(m["total_loss"]) for m in metrics)
    assert (tmp_path / "network" / "network.pt").is_file() and (tmp_path / "eval_summary.md").is_file()
    stamp = (tmp_path / "eval.csv").stat().st_mtime_ns
    assert run_chapter(tiny_torch, tmp_path, settings, progress=False, topic_drift=False) == summary
    assert (tmp_path / "eval.csv").stat().st_mtime_ns == stamp and len(episodes_done(tmp_path)) == 2
    fewer = run_chapter(tiny_torch, tmp_path, dataclasses.replace(settings, n_test=1), progress=False, topic_drift=False)
    assert [row["items"] for row in fewer["evaluation"]] == [1, 1, 1]  # other test items: evaluated again


def test_chapter_items_from_a_task_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": f"Q{i}?", "answer": str(i), "domain": "qa"}) + "\n" for i in range(5))
    )
    train, test = chapter_items(ChapterSettings(n_train=3, n_test=2), path)
    assert [i.id for i in train] == ["q0", "q1", "q2"] and [i.id for i in test] == ["q3", "q4"]
    with pytest.raises(ValueError, match="has 5 items; 4 \\+ 2 are needed"):
        chapter_items(ChapterSettings(n_train=4, n_test=2), path)


# --- the command line ----------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    add_mcts_commands(root.add_subparsers(dest="command", required=True))
    return root


def test_selfplay_command_debug_prints_one_reward(tiny_model_dir, tmp_path, capsys):
    args = parser().parse_args(
        [
            "mcts",
            "selfplay",
            "--model",
            str(tiny_model_dir),
            "--run",
            str(tmp_path),
            "--episodes",
            "1",
            "--sims",
            "1",
            "--budget",
            "6",
            "--debug",
            "--no-topic-drift",
        ]
    )
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"reward=\d\.\d{3}", out)) == 1 and "question:" in out and '"action": "stop"' in out
    assert json.loads((tmp_path / "config.json").read_text())["simulations"] == 1


def test_train_and_evaluate_commands(tiny_model_dir, tmp_path, capsys):
    common = ["--model", str(tiny_model_dir), "--run", str(tmp_path), "--sims", "1", "--budget", "6"]
    for command in (
        ["selfplay", "--episodes", "2", "--no-topic-drift"],
        ["train", "--steps", "10"],
        ["evaluate", "--n-test", "2", "--methods", "greedy,mcts", "--no-topic-drift"],
    ):
        args = parser().parse_args(["mcts", *command, *common])
        assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "trained to step 10" in out and "| greedy" in out and "| mcts" in out
    assert (tmp_path / "network" / "checkpoints").is_dir() and (tmp_path / "eval.csv").is_file()


def test_quick_runs_default_to_their_own_folder(monkeypatch):
    from slmlab.mcts.cli import chapter_settings
    from slmlab.mcts.runs import default_run_dir

    monkeypatch.delenv("SLMLAB_QUICK", raising=False)
    args = parser().parse_args(["mcts", "run", "--quick"])
    assert chapter_settings(args) == ChapterSettings.quick() and args.run_dir == str(default_run_dir(quick=True))
    monkeypatch.setenv("SLMLAB_QUICK", "1")  # the environment alone means quick, as for every other command
    args = parser().parse_args(["mcts", "run"])
    assert chapter_settings(args) == ChapterSettings.quick() and args.run_dir == str(default_run_dir(quick=True))
    monkeypatch.delenv("SLMLAB_QUICK")
    args = parser().parse_args(["mcts", "run", "--rounds", "5", "--sims", "3"])
    settings = chapter_settings(args)
    assert (settings.rounds, settings.simulations, args.run_dir) == (5, 3, str(default_run_dir(quick=False)))
    assert default_run_dir(quick=True) != default_run_dir(quick=False)  # the notebook's quick run uses the same folder


# --- the MCTS controller ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def thinking_network(tiny_torch, tmp_path_factory):
    """A network whose priors favour opening a thought, then writing, then closing it."""
    net = PolicyValueNet(feature_dim(tiny_torch), hidden=8)
    with torch.no_grad():
        net.policy_head.weight.zero_()
        bias = {Macro.THINK_BEGIN: 8.0, Macro.THINK_END: 6.0, Macro.CONTINUE: 4.0, Macro.STOP: 0.0, Macro.RESAMPLE: -8.0}
        net.policy_head.bias.copy_(torch.tensor([bias[a] for a in MACROS]))
    return save_network(net, tmp_path_factory.mktemp("net") / "network.pt")


def test_mcts_controller_over_http_hides_its_thoughts(tiny_torch, thinking_network, caplog):
    from test_mcts_serve import serving  # the real-uvicorn helper

    controller = MCTSController(tiny_torch, network=thinking_network, simulations=3, span_tokens=3, topic_drift=False)
    thoughts = []
    import slmlab.mcts.controller as module

    real_search = module.search_episode

    def recording_search(*args, **kwargs):
        episode = real_search(*args, **kwargs)
        thoughts.extend(s.text for s in episode.final.macro.spans if s.thought and s.text.strip())
        return episode

    module.search_episode = recording_search
    try:
        caplog.set_level("DEBUG")
        with serving(create_app(lambda: controller, max_budget=64)) as client:
            body = client.post("/generate", json={"prompt": "What is 2 + 3?", "budget": 12, "seed": 0}).json()
            health = client.get("/health").json()
    finally:
        module.search_episode = real_search
    assert health["controller"] == "mcts" and health["simulations"] == 3 and health["network"].endswith("network.pt")
    assert thoughts and body["thought_tokens"] > 0, "the biased network should have opened a thought"
    assert [s["action"] for s in body["macro_trace"]][:1] == ["think_begin"]
    assert all(s["text"] == THOUGHT_PLACEHOLDER for s in body["macro_trace"] if s.get("thought"))
    for thought in thoughts:
        assert thought not in body["text"] and thought not in json.dumps(body["macro_trace"])
        assert thought not in caplog.text
    assert body["tokens"] <= 12 and "fed" not in body["macro_trace"][0]


def test_the_served_controller_featurizes_with_minilm_unless_told_not_to(tiny_torch, thinking_network, monkeypatch):
    import slmlab.mcts.controller as module

    asked = []
    monkeypatch.setattr(module, "topic_drift_embedder", lambda topic_drift: asked.append(topic_drift))
    for topic_drift in (True, False):
        controller = MCTSController(tiny_torch, network=thinking_network, simulations=1, topic_drift=topic_drift)
        controller.run("Name a colour.", budget=4, seed=0)
        assert controller.describe()["topic_drift"] is topic_drift
    assert asked == [True, False]
    assert MCTSController(tiny_torch).topic_drift is True  # the chapter's default, as self-play and evaluation


def test_mcts_controller_without_a_network_uses_uniform_priors(tiny_torch):
    result = MCTSController(tiny_torch, simulations=2, span_tokens=4).run("Name a colour.", budget=8, seed=1)
    assert result.macro_trace[-1]["action"] == "stop" and result.tokens <= 8 and result.total_ms > 0
    with pytest.raises(ValueError, match="simulations and span_tokens"):
        MCTSController(tiny_torch, simulations=0)


# --- pictures ----------------------------------------------------------------------------------------------------
def test_views_draw_a_tree_a_trace_rewards_and_the_comparison(tiny_torch):
    import matplotlib

    matplotlib.use("Agg")
    episode = search_episode(
        tiny_torch, ITEMS[0], UniformEvaluator(), SMALL.env_config(), SearchSettings(simulations=4), keep_tree=True
    )
    figure = plot_search_tree(episode.tree)
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert labels[0].startswith("root\nN=4") and len(labels) >= 2
    table = trace_table(episode.trace)
    assert list(table["action"]) == episode.actions
    assert len(plot_macro_trace(episode.trace).axes[0].patches) == len(episode.actions)
    assert plot_rewards([{"reward": r} for r in (0.1, 0.5, 0.9, 0.2, 0.4, 0.3)]).axes
    summary = summarize_evaluation(
        evaluate_controllers(tiny_torch, ITEMS[:1], EvalSettings(budget=4, simulations=1), progress=False)
    )
    assert len(plot_comparison(summary).axes) == 3


def test_serve_with_a_missing_network_is_a_one_line_error(tiny_model_dir, tmp_path, capsys):
    from slmlab.cli import main

    code = main(["serve", "--controller", "mcts", "--model", str(tiny_model_dir), "--network", str(tmp_path / "x.pt")])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last_line == f"slmlab: error: no saved network at {tmp_path / 'x.pt'}"
