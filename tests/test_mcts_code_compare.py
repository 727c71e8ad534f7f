"""Chapter 06 part two's measurement: the exact McNemar test, the table built from runs, the generated reading, the
task sets it searches and the files it writes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from slmlab.mcts import spec
from slmlab.mcts.code_compare import (
    comparison_reading,
    comparison_tasks,
    composed_table,
    mcnemar_exact,
    notable_tasks,
    save_comparison,
    summarize_comparison,
)
from slmlab.mcts.spec import CodeComparisonConfig


def test_mcnemar_counts_only_discordant_tasks_and_matches_the_binomial_tail():
    first = [True] * 6 + [False] * 4
    second = [False] * 6 + [True] * 2 + [False] * 2
    result = mcnemar_exact(first, second)
    assert (result["only_first"], result["only_second"]) == (6, 2)
    # 8 discordant tasks split 6:2 — two-sided tail 2 * P(X <= 2 | n=8, 1/2) = 2 * 37/256
    assert result["p"] == pytest.approx(2 * 37 / 256)
    assert mcnemar_exact([True, False], [True, False])["p"] == 1.0  # no discordant task: no evidence either way
    assert mcnemar_exact([True] * 5, [False] * 5)["p"] == pytest.approx(2 / 32)
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact([True], [True, False])


def _runs(verdicts: dict[str, list[bool]], tokens: dict[str, int], task_set: str = "heldout", model: str = "base"):
    rows = []
    for method, passed in verdicts.items():
        for number, hidden in enumerate(passed):
            visible = 1.0 if hidden or (method == "mcts" and number == 0) else 0.5
            rows.append(
                {
                    "task_set": task_set,
                    "model": model,
                    "task": f"t{number}",
                    "method": method,
                    "hidden_passed": hidden,
                    "visible_tests": 2,
                    "visible_rate": visible,
                    "pseudo_correct": visible == 1.0 and not hidden,
                    "tokens": tokens[method],
                    "sandbox_runs": 3 if method != "greedy" else 1,
                    "seconds": 1.0 + number,
                    "value_source": "visible tests",
                    "code": "",
                }
            )
    return pd.DataFrame(rows)


def test_the_table_and_its_reading_come_from_the_runs():
    runs = _runs(
        {
            "greedy": [False, False, True, False],
            "filtering": [False, True, True, False],
            "mcts": [False, True, True, True],
        },
        {"greedy": 40, "filtering": 200, "mcts": 200},
    )
    summary = summarize_comparison(runs).set_index("method")
    assert summary.loc["greedy", "pass_at_1"] == 25.0 and summary.loc["mcts", "pass_at_1"] == 75.0
    assert summary.loc["mcts", "tokens_x_greedy"] == 5.0 and summary.loc["greedy", "tokens_x_greedy"] == 1.0
    assert summary.loc["mcts", "pseudo_correct"] == 1  # task 0: every visible test passed, the hidden one failed
    assert summary.loc["greedy", "mcnemar_p_vs_mcts"] == pytest.approx(mcnemar_exact([0, 1, 1, 1], [0, 0, 1, 0])["p"])
    assert summary.loc["greedy", "latency_p50_s"] == 2.5
    reading = comparison_reading(summarize_comparison(runs))
    assert "greedy 25.0 %" in reading and "MCTS 75.0 %" in reading and "one task is 25.0 points" in reading
    assert "5.0× the tokens" in reading
    assert f"greedy + {spec.HELDOUT_GAIN_GOAL} points" in reading and ": met (+50.0 points over greedy" in reading
    assert "Chapter 08's trained adapter was not there (results/rl/run/adapter)" in reading


def test_the_reading_says_when_a_goal_is_not_met():
    runs = _runs(
        {"greedy": [True, False], "filtering": [True, True], "mcts": [True, False]},
        {"greedy": 40, "filtering": 80, "mcts": 80},
        task_set="humaneval",
    )
    reading = comparison_reading(summarize_comparison(runs))
    assert f"Goal (MCTS ≥ {spec.HUMANEVAL_RATIO_GOAL}× greedy): not met (1.00× greedy)" in reading


def test_the_composed_table_has_a_row_per_model_and_a_column_per_method():
    runs = pd.concat(
        [
            _runs({"greedy": [False], "filtering": [False], "mcts": [True]}, {"greedy": 1, "filtering": 1, "mcts": 1}),
            _runs(
                {"greedy": [True], "filtering": [True], "mcts": [True]},
                {"greedy": 1, "filtering": 1, "mcts": 1},
                model="adapter",
            ),
        ]
    )
    assert "adapter was not there" not in comparison_reading(summarize_comparison(runs))
    table = composed_table(summarize_comparison(runs))
    assert list(table.columns) == list(spec.CODE_METHODS)
    assert table.loc[("heldout", "base"), "mcts"] == 100.0 and table.loc[("heldout", "adapter"), "greedy"] == 100.0


def test_the_task_sets_are_chapter_08s_held_out_tasks_and_humaneval():
    held_out = comparison_tasks("heldout")
    assert len(held_out) >= 30 and all(task.kind in ("function", "stdio") for task in held_out)
    assert [task.name for task in comparison_tasks("heldout", 3)] == [task.name for task in held_out[:3]]
    assert len(comparison_tasks("humaneval")) == 164
    with pytest.raises(ValueError, match="heldout"):
        comparison_tasks("train")


def test_the_config_refuses_what_it_cannot_run_and_quick_is_smaller():
    with pytest.raises(ValueError, match="task sets"):
        CodeComparisonConfig(task_sets=("train",))
    quick = CodeComparisonConfig().quick()
    assert quick.heldout_limit > 0 and quick.search.simulations < CodeComparisonConfig().search.simulations


def test_the_files_are_written_where_the_spec_says(tmp_path):
    runs = _runs({"greedy": [True], "filtering": [True], "mcts": [True]}, {"greedy": 1, "filtering": 1, "mcts": 1})
    summary = summarize_comparison(runs)
    record = save_comparison(runs, summary, CodeComparisonConfig(), tmp_path)
    assert pd.read_csv(spec.code_runs_file(tmp_path)).shape[0] == 3
    assert pd.read_csv(spec.code_summary_file(tmp_path)).shape[0] == 3
    saved = json.loads(spec.code_record_file(tmp_path).read_text(encoding="utf-8"))
    assert saved["reading"] == record["reading"] and saved["config"]["search"]["simulations"] >= 1


def test_notable_tasks_pick_a_search_win_and_a_pseudo_correct_program():
    runs = _runs(
        {"greedy": [False, False, True], "filtering": [False, False, True], "mcts": [False, True, True]},
        {"greedy": 1, "filtering": 1, "mcts": 1},
    )
    notable = notable_tasks(runs)
    assert notable["search_wins"]["task"] == "t1" and notable["search_wins"]["model"] == "base"
    assert notable["pseudo_correct"]["task"] == "t0" and notable["pseudo_correct"]["method"] == "mcts"
    nothing = notable_tasks(_runs({m: [True] for m in spec.CODE_METHODS}, dict.fromkeys(spec.CODE_METHODS, 1)))
    assert nothing == {"search_wins": None, "pseudo_correct": None}


def test_the_views_draw_the_table_and_a_tree_with_visible_rates():
    from slmlab.mcts.views import code_node_label, plot_code_comparison, plot_code_tree

    runs = _runs(
        {"greedy": [False, True], "filtering": [True, True], "mcts": [True, True]}, {"greedy": 10, "filtering": 30, "mcts": 40}
    )
    figure = plot_code_comparison(summarize_comparison(runs))
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert labels == ["1.0×", "3.0×", "4.0×"]
    leaf = {
        "action": "resample",
        "visits": 2,
        "value": 1.0,
        "prior": 0.5,
        "children": [],
        "line": "    return x + 8\n",
        "rate": 1.0,
    }
    tree = {"action": None, "visits": 3, "value": 0.0, "prior": 1.0, "children": [leaf], "line": "", "rate": 0.5}
    assert code_node_label(leaf) == "resample\nreturn x + 8\nN=2  visible 100%"
    texts = [text.get_text() for text in plot_code_tree(tree).axes[0].texts]
    assert "root\n\nN=3  visible 50%" in texts and len(texts) == 2


def test_the_command_line_builds_the_config_from_the_specs_defaults(monkeypatch):
    from slmlab.cli import build_parser
    from slmlab.mcts.cli import code_comparison_config

    monkeypatch.delenv("SLMLAB_QUICK", raising=False)  # make test sets it; full mode is what this checks first
    parse = build_parser().parse_args
    full = code_comparison_config(parse(["mcts", "code"]))
    assert full == CodeComparisonConfig()
    quick = code_comparison_config(parse(["mcts", "code", "--quick"]))
    assert quick == CodeComparisonConfig().quick()
    given = code_comparison_config(parse(["mcts", "code", "--tasks", "humaneval", "--limit", "5", "--sims", "3", "--no-adapter"]))
    assert given.task_sets == ("humaneval",) and (given.heldout_limit, given.humaneval_limit) == (5, 5)
    assert given.search.simulations == 3 and given.adapter is False
    with pytest.raises(ValueError, match="task sets"):
        code_comparison_config(parse(["mcts", "code", "--tasks", "train"]))
    monkeypatch.setenv("SLMLAB_QUICK", "1")
    assert code_comparison_config(parse(["mcts", "code"])) == CodeComparisonConfig().quick()


def test_tasks_without_visible_tests_are_counted_apart():
    runs = _runs({"greedy": [False, True], "filtering": [False, True], "mcts": [True, True]}, dict.fromkeys(spec.CODE_METHODS, 5))
    runs.loc[runs["task"] == "t0", "visible_tests"] = 0  # searched by likelihood
    summary = summarize_comparison(runs).set_index("method")
    assert summary.loc["mcts", "without_visible"] == 1 and summary.loc["mcts", "solved_without_visible"] == 1
    assert summary.loc["greedy", "solved_without_visible"] == 0
    reading = comparison_reading(summarize_comparison(runs))
    assert "1 of these tasks have no visible test" in reading and "MCTS 1 of them" in reading


def test_humaneval_examples_the_canonical_solution_fails_are_not_shown_to_the_search():
    problems = {task.name: task for task in comparison_tasks("humaneval", 48)}
    assert len(problems) == 48
    median = problems["HumanEval/47"]  # its docstring says median([-10, 4, 6, 1000, 10, 20]) == 15.0; it is 8.0
    assert median.examples and all(example.expected != 15.0 for example in median.examples)
