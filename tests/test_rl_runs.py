"""Chapter 08's measured result: before/after tables, the saved report, and `slmlab rl train` end to end (tiny
policy from scratch, so it runs in seconds)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from slmlab.cli import main
from slmlab.rl.runs import ChapterRun, Measurement, before_after, default_results_dir, save_measurements, task_set


def _results(solved: dict[str, bool], family: str = "f") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": list(solved),
            "family": family,
            "solved": list(solved.values()),
            "reward": [1.0 if ok else 0.2 for ok in solved.values()],
        }
    )


def test_before_after_counts_points_per_family_and_overall():
    before = pd.concat([_results({"a": False, "b": True}, "x"), _results({"c": False}, "y")])
    after = pd.concat([_results({"a": True, "b": True}, "x"), _results({"c": False}, "y")])
    table = before_after(before, after)
    assert table.loc["x", "change_points"] == pytest.approx(50.0)
    assert table.loc["y", "change_points"] == pytest.approx(0.0)
    assert table.loc["all", "before"] == pytest.approx(1 / 3) and table.loc["all", "after"] == pytest.approx(2 / 3)


def test_the_report_is_written_with_every_set(tmp_path):
    chapter = ChapterRun(
        None, {"heldout": Measurement("heldout", _results({"a": False, "b": True}), _results({"a": True, "b": True}))}
    )
    report = save_measurements(chapter, tmp_path)
    assert report["heldout"] == {"tasks": 2, "before": 0.5, "after": 1.0, "change_points": 50.0}
    assert json.loads((tmp_path / "eval.json").read_text())["heldout_families"]["f"]["after"] == 1.0
    assert (tmp_path / "heldout_before.csv").exists() and (tmp_path / "heldout_after.csv").exists()


def test_task_sets_are_the_committed_ones_and_humaneval():
    assert len(task_set("train")) >= 60 and len(task_set("heldout")) >= 30
    assert len(task_set("humaneval", limit=3)) == 3
    with pytest.raises(ValueError, match="choose from train, heldout, humaneval"):
        task_set("nope")


def test_rl_train_runs_measures_and_resumes_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLMLAB_ARTIFACTS", str(tmp_path))
    run_dir = tmp_path / "run"
    arguments = [
        "rl",
        "train",
        "--model",
        "tiny",
        "--quick",
        "--steps",
        "2",
        "--max-new-tokens",
        "8",
        "--limit",
        "2",
        "--run-dir",
        str(run_dir),
    ]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "heldout pass@1 before -> after" in out and "2 steps" in out
    report = json.loads((default_results_dir() / "eval.json").read_text())  # under tmp_path, quick/ in quick mode
    assert default_results_dir().is_relative_to(tmp_path)
    assert report["heldout"]["tasks"] == 2 and report["training"]["steps"] == 2
    assert main(arguments[:6] + ["3"] + arguments[7:]) == 0  # one more step, resumed
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
