"""``slmlab rl tasks | check`` from the command line, and the committed task sets against their generator."""

from __future__ import annotations

import json

from slmlab.cli import main
from slmlab.execution.tasks import load_code_tasks
from slmlab.rl.tasks import default_tasks_dir, generate_families


def test_the_committed_task_sets_are_what_the_generator_writes():
    train, held_out = generate_families(seed=0)
    for split, generated in (("train", train), ("heldout", held_out)):
        committed = [task.to_dict() | {"source": ""} for task in load_code_tasks(default_tasks_dir() / split)]
        assert committed == [task.to_dict() | {"source": ""} for task in sorted(generated, key=lambda task: task.name)]
    assert len(train) >= 60 and len(held_out) >= 30
    assert not {task.name for task in train} & {task.name for task in held_out}


def test_tasks_lists_the_committed_sets_and_humaneval(capsys):
    assert main(["rl", "tasks"]) == 0
    assert capsys.readouterr().out.strip().endswith("102 tasks")
    assert main(["rl", "tasks", "--tasks", "humaneval"]) == 0
    assert capsys.readouterr().out.strip().endswith("164 tasks")


def test_check_prints_one_json_line_per_program(tmp_path, capsys):
    right, wrong, broken = tmp_path / "right.py", tmp_path / "wrong.py", tmp_path / "broken.py"
    right.write_text("def add_six(x):\n    return x + 6\n")
    wrong.write_text("def add_six(x):\n    return x + 5\n")
    broken.write_text("def add_six(x)\n    return x + 6\n")
    rewards = []
    for program, status in ((right, "passed"), (wrong, "wrong_answer"), (broken, "syntax_error")):
        assert main(["rl", "check", "add_six", str(program)]) == 0
        line = capsys.readouterr().out.strip()
        result = json.loads(line)
        assert set(result) == {"reward", "passed", "total", "status", "stdout_tail"} and result["status"] == status
        rewards.append(result["reward"])
    assert rewards[0] == 1.0 and rewards[0] > rewards[1] > rewards[2] == 0.0


def test_check_refuses_a_selection_of_several_tasks(tmp_path, capsys):
    program = tmp_path / "p.py"
    program.write_text("pass\n")
    assert main(["rl", "check", "add_*", str(program)]) == 2
    assert "names" in capsys.readouterr().err


def test_generate_writes_loadable_files(tmp_path, capsys):
    assert main(["rl", "tasks", "--generate", str(tmp_path / "tasks"), "--seed", "1"]) == 0
    assert "68 train and 34 held-out" in capsys.readouterr().out
    assert len(load_code_tasks(tmp_path / "tasks")) == 102


def test_eval_measures_pass_at_1_and_writes_the_table(tmp_path, capsys):
    from slmlab.testing import make_tiny_llama

    model = make_tiny_llama(tmp_path / "tiny")
    out = tmp_path / "eval.csv"
    assert main(["rl", "eval", "--model", str(model), "--limit", "3", "--max-new-tokens", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pass_at_1" in printed and "all" in printed
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 3 and set(table.columns) >= {"task", "family", "status", "reward", "solved", "code"}
