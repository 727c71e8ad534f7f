"""ACE runs on a tiny random model: CSV schema, epochs, resume after Ctrl+C, a saved starting playbook, summaries,
the grid alias, CLI."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from slmlab.ace import runs, spec
from slmlab.ace.playbook import Bullet, Playbook, PlaybookError, write_playbook
from slmlab.ace.report import load_results, summarize, to_markdown
from slmlab.ace.runs import run_ace
from slmlab.ace.spec import ACE_COLUMNS, CORE_COLUMNS, DETAIL_COLUMNS, AceConfig, AceRunError
from slmlab.cli import main

ROOT = Path(__file__).resolve().parents[1]

ITEMS = [
    {
        "id": f"q{i}",
        "domain": "finance",
        "context": f"| Revenue | {100 + i} | {110 + i} |",
        "question": f"What was revenue in year {i}?",
        "answer": str(100 + i),
    }
    for i in range(5)
]


@pytest.fixture()
def task_file(tmp_path):
    path = tmp_path / "toy_finance.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    return path


def config(task_file, tiny_model_dir, **changes) -> AceConfig:
    options = dict(
        model_id=str(tiny_model_dir),
        task=str(task_file),
        mode="ace",
        epochs=1,
        batch_size=2,
        answer_tokens=6,
        reflection_tokens=8,
        backend="torch",
    )
    return AceConfig(**{**options, **changes})


def rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def without_timings(path) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("latency_ms")} for row in rows(path)]


def bullets(path) -> list[tuple]:
    """A playbook's bullets without their timestamps."""
    return [(b.id, b.section, b.content, b.helpful, b.harmful) for b in Playbook.load(path).bullets.values()]


def test_baseline_csv_has_exactly_the_documented_columns(task_file, tiny_model_dir, tiny_torch, tmp_path):
    results = run_ace(config(task_file, tiny_model_dir, mode="baseline"), tmp_path / "run", model=tiny_torch, progress=False)
    with open(results) as handle:
        header = handle.readline().strip().split(",")
    assert header == list(CORE_COLUMNS + DETAIL_COLUMNS) + ["parse"]
    table = rows(results)
    assert [r["sample_id"] for r in table] == [f"q{i}" for i in range(5)]
    assert {r["mode"] for r in table} == {"baseline"} and {r["task_name"] for r in table} == {"toy_finance"}
    assert all(float(r["latency_ms"]) > 0 for r in table)
    assert {r["parse"] for r in table} <= {"strict", "lenient", "failed"}
    failed = [r for r in table if r["parse"] == "failed"]
    assert all(r["pred"] == "" and r["correct"] == "False" for r in failed)  # recorded, run went on
    assert "playbook" not in json.loads((tmp_path / "run" / "config.json").read_text())  # as before the option existed


def test_ace_offline_adapts_on_train_and_evaluates_every_epoch(task_file, tiny_model_dir, tiny_torch, tmp_path):
    run_dir = tmp_path / "run"
    results = run_ace(config(task_file, tiny_model_dir, epochs=2), run_dir, model=tiny_torch, progress=False)
    header = rows(results)[0].keys()
    assert list(header) == list(CORE_COLUMNS + DETAIL_COLUMNS + ACE_COLUMNS) + ["parse", "bullets"]
    table = rows(results)
    assert [r["epoch"] for r in table] == ["0"] * 5 + ["1"] * 5 + ["2"] * 5
    assert {r["reflected"] for r in table} == {"False"}  # offline: the test set is only evaluated
    adaptation = rows(run_dir / "adaptation.csv")
    assert len(adaptation) == 10 and {r["reflected"] for r in adaptation} == {"True"}
    stats = json.loads((run_dir / "stats.json").read_text())
    assert sorted(stats) == ["0", "1", "2"]
    assert stats["1"]["reflection_ms"] > 0 and stats["1"]["generation_ms"] > 0 and stats["1"]["peak_memory_mb"] > 0
    assert stats["1"]["operations"].get("ADD", 0) > 0  # the tiny model is always wrong: worked examples
    assert (run_dir / "playbook_epoch1.jsonl").is_file() and (run_dir / "playbook_epoch2.jsonl").is_file()
    assert sum(stats["1"]["reflection_parses"].values()) == 5
    operations = [json.loads(line) for line in (run_dir / "operations.jsonl").read_text().splitlines()]
    added = [op["bullet_id"] for op in operations if op["op"] == "ADD"]
    # ids never reused; epoch 2 adds nothing here: worked examples are no longer merged (and then learned again)
    # by embeddings, so the tiny model's repeated mistakes bring no new bullet
    assert len(added) == len(set(added)) and {op["epoch"] for op in operations} <= {1, 2} and operations[0]["epoch"] == 1


def test_online_mode_reflects_on_the_samples_it_evaluates(task_file, tiny_model_dir, tiny_torch, tmp_path):
    results = run_ace(config(task_file, tiny_model_dir, mode="ace-online"), tmp_path / "run", model=tiny_torch, progress=False)
    table = rows(results)
    assert [(r["epoch"], r["reflected"]) for r in table] == [("0", "False")] * 5 + [("1", "True")] * 5
    assert all(float(r["reflection_latency_ms"]) > 0 for r in table[5:])


def test_without_labels_the_reflector_judges_and_no_gold_is_learned(task_file, tiny_model_dir, tiny_torch, tmp_path):
    run_dir = tmp_path / "run"
    run_ace(config(task_file, tiny_model_dir, mode="ace-online", use_labels=False), run_dir, model=tiny_torch, progress=False)
    operations = run_dir / "operations.jsonl"
    added = [json.loads(line) for line in operations.read_text().splitlines()] if operations.is_file() else []
    assert all(op["section"] != "worked examples" for op in added if op["op"] == "ADD")  # no gold answer to show
    parses = json.loads((run_dir / "stats.json").read_text())["1"]["reflection_parses"]
    assert sum(parses.values()) == 5


def test_interrupted_run_resumes_at_the_first_missing_sample(task_file, tiny_model_dir, tiny_torch, tmp_path, monkeypatch):
    settings = config(task_file, tiny_model_dir, mode="ace-online")
    reference = run_ace(settings, tmp_path / "reference", model=tiny_torch, progress=False)

    calls = {"n": 0}
    original = runs.AceRunner._batch

    def interrupt_after_three_batches(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 0 took 3 batches; Ctrl+C during the first online batch
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(runs.AceRunner, "_batch", interrupt_after_three_batches)
    with pytest.raises(KeyboardInterrupt):
        run_ace(settings, tmp_path / "resumed", model=tiny_torch, progress=False)
    assert len(rows(tmp_path / "resumed" / "results.csv")) == 5  # epoch 0 kept
    monkeypatch.setattr(runs.AceRunner, "_batch", original)
    resumed = run_ace(settings, tmp_path / "resumed", model=tiny_torch, progress=False)
    assert without_timings(resumed) == without_timings(reference)
    assert bullets(tmp_path / "resumed" / "playbook_epoch1.jsonl") == bullets(tmp_path / "reference" / "playbook_epoch1.jsonl")


def test_rows_written_after_the_last_saved_playbook_are_redone(task_file, tiny_model_dir, tiny_torch, tmp_path):
    settings = config(task_file, tiny_model_dir, mode="ace-online")
    run_dir = tmp_path / "run"
    reference = without_timings(run_ace(settings, run_dir, model=tiny_torch, progress=False))
    state = json.loads((run_dir / "state.json").read_text())
    assert state == {"epoch": 1, "phase": "online", "done": 5}
    (run_dir / "state.json").write_text(json.dumps({**state, "done": 2}))  # as if killed before saving
    (run_dir / "playbook_epoch1.jsonl").unlink()
    (run_dir / "summary.json").unlink()
    again = without_timings(run_ace(settings, run_dir, model=tiny_torch, progress=False))
    assert [r["sample_id"] for r in again] == [r["sample_id"] for r in reference]


def test_changed_settings_start_the_run_over(task_file, tiny_model_dir, tiny_torch, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_ace(config(task_file, tiny_model_dir, mode="baseline"), run_dir, model=tiny_torch, progress=False)
    run_ace(config(task_file, tiny_model_dir, mode="baseline", limit=2), run_dir, model=tiny_torch, progress=False)
    assert "settings changed (limit)" in capsys.readouterr().out
    assert len(rows(run_dir / "results.csv")) == 2


def test_summary_groups_by_model_task_mode_epoch(task_file, tiny_model_dir, tiny_torch, tmp_path):
    run_ace(config(task_file, tiny_model_dir, mode="baseline"), tmp_path / "a", model=tiny_torch, progress=False)
    run_ace(config(task_file, tiny_model_dir), tmp_path / "b", model=tiny_torch, progress=False)
    table = summarize(load_results(tmp_path))
    assert list(table.columns) == [
        "model_id",
        "task_name",
        "mode",
        "epoch",
        "samples",
        "accuracy",
        "token_f1",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "parse_failures",
    ]
    assert [(r.mode, r.epoch, r.samples) for r in table.itertuples()] == [("ace", 0, 5), ("ace", 1, 5), ("baseline", 0, 5)]
    frame = load_results(tmp_path / "b" / "results.csv")
    assert table.iloc[1]["accuracy"] == round(100 * frame[frame.epoch == 1]["correct"].mean(), 1)
    assert to_markdown(table).startswith("| model_id")


def test_ace_grid_runs_the_committed_grid_file_through_the_core_runner(tmp_path, capsys):
    grid = ROOT / "grids" / "ace_models_tasks.yaml"
    assert main(["ace", "grid", str(grid), "--dry-run", "--root", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("grid ace_models_tasks: 12 cells of 'slmlab ace run'")
    assert len(listed) == 13 and all(line.split()[0] == "run" and "slmlab ace run " in line for line in listed[1:])
    assert not any(tmp_path.iterdir())  # a dry run starts nothing
    assert main(["grid", str(grid), "--dry-run", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == listed  # the alias is the core's command


def test_cli_run_matches_the_library_run(task_file, tiny_model_dir, tiny_torch, tmp_path):
    settings = config(task_file, tiny_model_dir, batch_size=8, answer_tokens=24, reflection_tokens=40)
    library = run_ace(settings, tmp_path / "library", model=tiny_torch, progress=False)
    code = main(
        [
            "ace",
            "run",
            "--task",
            str(task_file),
            "--model",
            str(tiny_model_dir),
            "--backend",
            "torch",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 0
    assert without_timings(tmp_path / "cli" / "results.csv") == without_timings(library)
    assert bullets(tmp_path / "cli" / "playbook_epoch1.jsonl") == bullets(tmp_path / "library" / "playbook_epoch1.jsonl")


def test_bad_settings_are_refused_by_name():
    with pytest.raises(AceRunError, match="mode must be one of"):
        AceConfig(mode="fancy")
    assert main(["ace", "run", "--task", "no-such-task"]) == 2


def test_views_report_epochs_examples_and_the_playbook(task_file, tiny_model_dir, tiny_torch, tmp_path):
    from slmlab.ace.views import (
        baseline_vs_ace,
        epoch_stats,
        examples_markdown,
        lesson_examples,
        playbook_html,
        playbook_viewer,
    )

    run_dir = tmp_path / "run"
    run_ace(config(task_file, tiny_model_dir, epochs=1), run_dir, model=tiny_torch, progress=False)
    summary = summarize(load_results(run_dir))
    comparison = baseline_vs_ace(summary)
    assert list(comparison.columns) == ["model_id", "task", "mode", "samples", "baseline", "ACE (epoch 1)", "gain (points)"]
    stats = epoch_stats([run_dir])
    assert list(stats["epoch"]) == [0, 1] and stats.loc[1, "ADD"] > 0 and stats.loc[0, "playbook_bullets"] == 0
    playbook = Playbook.load(run_dir / "playbook_epoch1.jsonl")
    section = playbook.sections()[0]
    shown = playbook_html(playbook, section)
    assert shown.count("<tr>") == 1 + sum(b.section == section for b in playbook.bullets.values())
    viewer = playbook_viewer(playbook)
    viewer.children[0].value = section
    assert viewer.children[1].value == shown
    examples = lesson_examples(run_dir, count=2)
    assert 1 <= len(examples) <= 2 and all(e["lessons"] for e in examples)
    learned = [l for e in examples for l in e["lessons"] if l["learned_from"] != "?"]
    assert all(l["learned_from"].startswith("q") for l in learned)
    assert examples[0]["sample_id"] in examples_markdown(examples)


START = {  # id -> (section, content) of a playbook saved by another run
    "str-00001": ("strategies", "Revenue is the first number after the row name."),
    "wor-00001": ("worked examples", "Q: What was revenue in year 9? A: 109"),
}


@pytest.fixture(params=["start.jsonl", "start.txt"])
def start_file(request, tmp_path):
    book = Playbook({key: Bullet(key, section, content, helpful=1) for key, (section, content) in START.items()})
    return write_playbook(book, tmp_path / request.param)


def test_a_run_starts_from_a_saved_playbook_in_either_format(start_file, task_file, tiny_model_dir, tiny_torch, tmp_path):
    run_dir = tmp_path / "run"
    results = run_ace(config(task_file, tiny_model_dir, playbook=str(start_file)), run_dir, model=tiny_torch, progress=False)
    epoch0 = [r for r in rows(results) if r["epoch"] == "0"]
    shown = {bullet for row in epoch0 for bullet in row["bullets"].split()}
    assert shown and shown <= set(START)  # epoch 0 answers with the saved playbook
    saved = Playbook.load(run_dir / "playbook_epoch0.jsonl")
    assert {key: (b.section, b.content, b.helpful) for key, b in saved.bullets.items()} == {
        key: (section, content, 1) for key, (section, content) in START.items()
    }
    assert json.loads((run_dir / "stats.json").read_text())["0"]["playbook_bullets"] == len(START)
    operations = [json.loads(line) for line in (run_dir / "operations.jsonl").read_text().splitlines()]
    added = [op["bullet_id"] for op in operations if op["op"] == "ADD"]
    assert added and not set(added) & set(START)  # epoch 1 extends the start: its ids are never handed out again
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["playbook"] == str(start_file) and len(recorded["playbook_sha256"]) == 64


def test_an_edited_start_playbook_starts_the_run_over(start_file, task_file, tiny_model_dir, tiny_torch, tmp_path, capsys):
    settings = config(task_file, tiny_model_dir, playbook=str(start_file), epochs=0)
    run_ace(settings, tmp_path / "run", model=tiny_torch, progress=False)
    run_ace(settings, tmp_path / "run", model=tiny_torch, progress=False)
    assert "settings changed" not in capsys.readouterr().out  # the same start resumes
    book = Playbook.load(tmp_path / "run" / "playbook_epoch0.jsonl")
    del book.bullets["wor-00001"]
    write_playbook(book, start_file)
    run_ace(settings, tmp_path / "run", model=tiny_torch, progress=False)
    assert "settings changed (playbook_sha256)" in capsys.readouterr().out
    assert len(Playbook.load(tmp_path / "run" / "playbook_epoch0.jsonl")) == 1


@pytest.mark.parametrize(
    "name, text, line",
    [
        ("bad.jsonl", '{"id": "str-00001", "section": "s", "content": "ok"}\n{"id": "str-00002",\n', 2),
        ("bad.txt", "## STRATEGIES\n[str-00001] helpful=0 harmful=0 :: ok\nnot a bullet\n", 3),
    ],
)
def test_a_bad_start_playbook_is_refused_by_file_and_line(
    task_file, tiny_model_dir, tiny_torch, tmp_path, capsys, name, text, line
):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlaybookError, match=re.escape(f"{path}:{line}: ")):
        run_ace(config(task_file, tiny_model_dir, playbook=str(path)), tmp_path / "run", model=tiny_torch, progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything is written
    argv = ["ace", "run", "--task", str(task_file), "--model", str(tiny_model_dir), "--playbook-path", str(path)]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 2
    assert f"{path}:{line}: " in capsys.readouterr().err


def test_a_baseline_run_takes_no_playbook(tmp_path):
    with pytest.raises(AceRunError, match="a baseline run answers without a playbook"):
        AceConfig(mode="baseline", playbook=str(tmp_path / "start.jsonl"))


def test_quick_sizes_come_from_the_spec():
    assert AceConfig.quick() == AceConfig(task="tatqa_tiny", epochs=1)
    assert spec.chapter_runs(True) == (("tatqa_tiny", "medqa_tiny", "iot_tiny"), 1)
    assert spec.chapter_runs(False) == (("finance", "medical", "iot"), 2)
    assert spec.QUICK_RUN_COMMAND == "slmlab ace run --task tatqa_tiny --epochs 1 (and medqa_tiny, iot_tiny)"
    assert spec.RUN_COMMAND == "slmlab ace run --task finance --epochs 2 (and medical, iot)"
