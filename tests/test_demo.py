"""Chapter 09's demo in a non-interactive terminal: each lever's before/after from fake artifacts, missing and broken
files, the SVG recording, and the demo and pipeline scripts."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from slmlab.report.demo import LEVERS, MISSING, SHOWN, UNREADABLE, DemoConfig, pick_examples, play_demo
from slmlab.report.demo_cli import main
from slmlab.settings import ARTIFACTS_ENV

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def _csv(root: Path, relative: str, rows: list[dict]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _json(root: Path, relative: str, data) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def _lora(root: Path) -> None:
    rows = []
    for model, easy, hard in (("baseline", "4", "I am not sure"), ("tuned", "4", "zorblax-42")):
        rows += [
            {
                "pattern_id": "easy",
                "category": "fact",
                "prompt": "What is 2 + 2?",
                "gold": "4",
                "prediction": easy,
                "exact": True,
                "normalized": True,
                "model": model,
            },
            {
                "pattern_id": "zorb",
                "category": "fact",
                "prompt": "What is the zorblax constant?",
                "gold": "zorblax-42",
                "prediction": hard,
                "exact": hard == "zorblax-42",
                "normalized": hard == "zorblax-42",
                "model": model,
            },
        ]
    _csv(root, "results/04_pattern_eval/predictions.csv", rows)
    _json(
        root,
        "results/comparison.json",
        {
            "baseline": {"normalized_match": 50.0, "per_category": {"fact": {"normalized": 50.0}}},
            "tuned": {"normalized_match": 100.0, "per_category": {"fact": {"normalized": 100.0}}},
        },
    )


def _ace(root: Path) -> None:
    run = "results/ace/tiny-model/quokka_tasks/ace"
    rows = [
        {
            "sample_id": "q-1",
            "question": "How many quokkas nest in Rottnest?",
            "context": "Census | 2024",
            "gold": "7341",
            "pred": pred,
            "correct": pred == "7341",
            "epoch": epoch,
        }
        for epoch, pred in (("0", "12"), ("1", "7341"))
    ]
    _csv(root, f"{run}/results.csv", rows)
    _json(root, f"{run}/summary.json", {"task_name": "quokka_tasks", "accuracy_by_epoch": {"0": 0.0, "1": 100.0}, "samples": 1})


def _mcts(root: Path) -> None:
    rows = [
        {
            "method": method,
            "sample_id": "qa-1",
            "question": "What is the capital of Narnia?",
            "gold": "Cair Paravel",
            "pred": pred,
            "correct": pred == "Cair Paravel",
            "tokens_spent": tokens,
        }
        for method, pred, tokens in (("greedy", "Lantern Waste", 5), ("mcts", "Cair Paravel", 40))
    ]
    _csv(root, "results/mcts/eval.csv", rows)
    _json(
        root,
        "results/mcts/summary.json",
        {
            "evaluation": [
                {"method": "greedy", "accuracy": 12.5, "tokens_spent": 5.0, "tokens_x_greedy": 1.0},
                {"method": "mcts", "accuracy": 37.5, "tokens_spent": 40.0, "tokens_x_greedy": 8.0},
            ]
        },
    )


def _lm(root: Path) -> None:
    _csv(
        root,
        "results/lm/continuations.csv",
        [
            {
                "document": 0,
                "offset": 0,
                "prefix": "def walrus_total(",
                "truth": "items):\n    return sum(items)",
                "model": "items):\n    return sum(item)",
                "bigram": "the the the",
            }
        ],
    )
    _json(
        root,
        "results/lm/eval.json",
        {
            "model": {"bits_per_byte": 2.25, "perplexity": 9.5, "bleu": 0.31},
            "bigram": {"bits_per_byte": 3.75, "perplexity": 70.0, "bleu": 0.02},
        },
    )


def _rl(root: Path) -> None:
    def row(code: str, solved: bool) -> dict:
        return {
            "task": "triple_narwhal",
            "family": "multiply",
            "status": "passed" if solved else "wrong_answer",
            "reward": 1.0 if solved else 0.1,
            "passed": 5 if solved else 0,
            "total": 5,
            "solved": solved,
            "reply": code,
            "code": code,
        }

    _csv(root, "results/rl/heldout_before.csv", [row("def triple_narwhal(x):\n    return x + 3\n", False)])
    _csv(root, "results/rl/heldout_after.csv", [row("def triple_narwhal(x):\n    return x * 3\n", True)])
    _json(root, "results/rl/eval.json", {"heldout": {"tasks": 1, "before": 0.25, "after": 0.75}})


def _tree(root: Path) -> Path:
    for write in (_lora, _ace, _mcts, _lm, _rl):
        write(root)
    return root


def _play(root: Path, levers=LEVERS, quick: bool = False) -> tuple[dict[str, str], str]:
    out = io.StringIO()
    console = Console(file=out, width=120)  # a file, not a terminal: plain text, no colour codes
    shown = play_demo(console, levers, root, DemoConfig(), quick=quick)
    return shown, out.getvalue()


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))
    monkeypatch.delenv("SLMLAB_QUICK", raising=False)
    return tmp_path


def test_every_lever_shows_prompt_both_answers_and_the_measured_score(tmp_path):
    shown, text = _play(_tree(tmp_path))
    assert shown == dict.fromkeys(LEVERS, SHOWN)
    assert "\x1b[" not in text  # no ANSI codes outside a terminal
    for expected in (
        "What is the zorblax constant?",
        "I am not sure",
        "zorblax-42",
        "from results/comparison.json",
        "How many quokkas nest in Rottnest?",
        "Census | 2024",
        "7341",
        "quokka_tasks ◀ shown",
        "What is the capital of Narnia?",
        "Lantern Waste",
        "Cair Paravel",
        "37.5",
        "def walrus_total(",
        "the the the",
        "2.25",
        "3.75",
        "triple_narwhal",
        "return x + 3",
        "return x * 3",
        "wrong_answer, 0/5 tests",
        "75",
    ):
        assert expected in text, expected
    assert "What is 2 + 2?" not in text  # the item the tuned model turned right is shown, not the first in the file
    assert text.count("step 4/4 · measured score") == len(LEVERS)


def test_a_missing_artifact_prints_the_command_that_makes_it_and_the_rest_plays(tmp_path):
    _mcts(tmp_path)
    shown, text = _play(tmp_path)
    assert shown == {"lora": MISSING, "ace": MISSING, "mcts": SHOWN, "lm": MISSING, "rl": MISSING}
    assert "results/comparison.json is missing" in text and "slmlab data && slmlab train && slmlab eval" in text
    assert "slmlab rl train --humaneval" in text and "Cair Paravel" in text
    _, quick_text = _play(tmp_path / "quick", quick=True)
    assert "export SLMLAB_QUICK=1; slmlab mcts run --quick" in quick_text


def test_a_half_written_or_old_file_is_named_as_unreadable(tmp_path):
    _tree(tmp_path)
    _json(tmp_path, "results/comparison.json", '{"baseline": {"normalized_match": 1.')
    _csv(tmp_path, "results/mcts/eval.csv", [{"method": "greedy", "sample_id": "qa-1"}])
    shown, text = _play(tmp_path)
    assert shown["lora"] == shown["mcts"] == UNREADABLE and shown["rl"] == SHOWN
    assert "results/comparison.json: not valid JSON" in text and "no column question" in text


def test_examples_are_picked_deterministically_flips_first_one_per_group():
    good = lambda row: row["ok"]  # noqa: E731
    pairs = [
        ({"id": i, "ok": b, "cat": c}, {"id": i, "ok": t, "cat": c})
        for i, (b, t, c) in enumerate(
            [(True, True, "a"), (False, True, "a"), (False, True, "a"), (False, True, "b"), (True, False, "b")]
        )
    ]
    picked = pick_examples(pairs, 3, good, group=lambda row: row["cat"])
    assert [base["id"] for base, _ in picked] == [1, 3, 2]
    assert [base["id"] for base, _ in pick_examples(pairs, 9, good)] == [1, 2, 3, 0, 4]


def test_the_command_exits_0_for_all_and_1_for_one_missing_lever(artifacts, capsys):
    _mcts(artifacts)
    assert main(["all"]) == 0
    assert main(["mcts"]) == 0
    assert main(["rl"]) == 1
    text = capsys.readouterr().out
    assert "\x1b[" not in text and "slmlab rl train --humaneval" in text


def test_record_writes_an_svg_holding_the_screen(artifacts, tmp_path_factory):
    _tree(artifacts)
    svg = tmp_path_factory.mktemp("recording") / "demo.svg"
    assert main(["lora", "--record", str(svg), "--width", "90"]) == 0
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag.endswith("svg")
    text = "".join(root.itertext()).replace("\xa0", " ")
    assert "zorblax constant" in text and "measured score" in text


def test_the_demo_runs_piped_without_a_terminal(artifacts):
    _tree(artifacts / "quick")  # only the quick tree has results: SLMLAB_QUICK=1 must pick it
    env = {**os.environ, "SLMLAB_QUICK": "1", ARTIFACTS_ENV: str(artifacts)}
    done = subprocess.run(
        [sys.executable, "-m", "slmlab.report.demo_cli", "rl"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "return x * 3" in done.stdout and "\x1b[" not in done.stdout


def test_the_demo_command_does_not_load_torch():
    code = "import sys, slmlab.report.demo_cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("script", ["demo.sh", "run_all.sh"])
def test_the_scripts_parse_and_are_executable(script):
    path = SCRIPTS / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert os.access(path, os.X_OK) and "set -euo pipefail" in path.read_text()


@pytest.mark.parametrize("quick", ["1", "0"])
def test_run_all_calls_real_commands_in_pipeline_order(tmp_path, quick):
    from slmlab.cli import build_parser

    log = tmp_path / "calls.txt"
    for tool in ("make", "slmlab"):  # stand-ins that record their arguments instead of working
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLMLAB": "slmlab", "SLMLAB_QUICK": quick}
    done = subprocess.run(["bash", str(SCRIPTS / "run_all.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "make setup" and calls[-1].startswith("slmlab report")
    verbs = [call.split()[1] for call in calls[1:]]
    assert verbs == ["patterns", "data", "train", "eval", "ace", "ace", "ace", "mcts", "lm", "lm", "lm", "rl", "report"]
    parser = build_parser()
    for call in calls[1:]:
        parser.parse_args(call.split()[1:])  # every command and option exists
    assert ("--quick" in calls[-1]) == (quick == "1")
