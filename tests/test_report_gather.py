"""Chapter 09's gathering: figures read from files with their provenance; missing, half-written and old files."""

from __future__ import annotations

import json

from slmlab.report import gather, sections_markdown
from slmlab.report.gather import NOT_RUN, OK, SECTIONS, UNREADABLE


def _write(root, relative, data):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


COMPARISON = {
    "baseline": {"normalized_match": 1.2, "per_category": {"fact": {"normalized": 0.0}}},
    "tuned": {"normalized_match": 88.9, "per_category": {"fact": {"normalized": 96.3}, "format": {"normalized": 85.7}}},
}
MCTS = {
    "evaluation": [
        {"method": "greedy", "accuracy": 30.0, "tokens_spent": 10.7},
        {"method": "mcts", "accuracy": 33.3, "tokens_spent": 59.0},
    ]
}


def _by_key(sections):
    return {section.key: section for section in sections}


def test_an_empty_tree_shows_every_section_as_not_run_with_its_command(tmp_path):
    sections = gather(tmp_path)
    assert [s.key for s in sections] == [key for key, *_ in SECTIONS]
    assert all(s.status == NOT_RUN and not s.numbers for s in sections)
    text = sections_markdown(sections)
    assert text.count("Not run:") == len(SECTIONS) and "`slmlab mcts run` makes it" in text


def test_each_number_names_its_file_field_and_date(tmp_path):
    _write(tmp_path, "results/comparison.json", COMPARISON)
    _write(tmp_path, "results/mcts/summary.json", MCTS)
    _write(tmp_path, "results/benchmarks/lora.json", {"ratio": 3.55, "created": "2026-12-01T18:49:00+00:00"})
    sections = _by_key(gather(tmp_path))
    lora = {n.label: n for n in sections["lora"].numbers}
    assert lora["tuned fact %"].value == 96.3 and lora["tuned fact %"].field == "tuned.per_category.fact.normalized"
    assert lora["baseline normalized match %"].source == "results/comparison.json"
    assert lora["tuned normalized match %"].created.endswith("+00:00")  # the file's time when it has no "created"
    mcts = {n.label: n.value for n in sections["mcts"].numbers}
    assert mcts == {
        "greedy exact match %": 30.0,
        "greedy tokens spent": 10.7,
        "mcts exact match %": 33.3,
        "mcts tokens spent": 59.0,
    }
    ratio = sections["benchmarks"].numbers[0]
    assert (ratio.label, ratio.value, ratio.created) == ("lora ratio", 3.55, "2026-12-01T18:49:00+00:00")
    assert sections["ace"].status == sections["rl"].status == NOT_RUN
    assert "| tuned fact % | 96.3 | `results/comparison.json` : `tuned.per_category.fact.normalized` |" in (
        sections_markdown(list(sections.values()))
    )


def test_a_half_written_or_old_file_is_named_and_the_rest_renders(tmp_path):
    _write(tmp_path, "results/comparison.json", '{"baseline": {"normalized_match": 1.')
    _write(tmp_path, "results/mcts/summary.json", {"evaluation": [{"method": "greedy", "accuracy": 30.0}]})
    _write(tmp_path, "results/rl/eval.json", {"heldout": {"before": 0.7, "after": 0.9}})
    sections = _by_key(gather(tmp_path))
    assert sections["lora"].status == UNREADABLE and "results/comparison.json: not valid JSON" in sections["lora"].problem
    assert sections["mcts"].status == UNREADABLE and "no field evaluation.0.tokens_spent" in sections["mcts"].problem
    assert sections["mcts"].numbers == []  # nothing half-read is shown
    assert sections["rl"].status == OK and {n.label for n in sections["rl"].numbers} == {"heldout after", "heldout before"}
    assert "Unreadable: results/comparison.json" in sections_markdown(list(sections.values()))


def test_an_old_ace_run_folder_is_named_while_the_others_count(tmp_path):
    good = {"task_name": "finance", "accuracy_by_split": {"0": {"transfer": 6.0}, "2": {"transfer": 50.0}}}
    _write(tmp_path, "results/ace/m/finance/ace/summary.json", good)
    _write(tmp_path, "results/ace/m/iot_tiny/ace/summary.json", {"task_name": "iot_tiny", "accuracy_by_epoch": {}})
    ace = _by_key(gather(tmp_path))["ace"]
    assert ace.status == OK and "iot_tiny/ace/summary.json: no field accuracy_by_split" in ace.problem
    assert [(n.label, n.value) for n in ace.numbers] == [
        ("finance transfer baseline EM %", 6.0),
        ("finance transfer ACE EM % (epoch 2)", 50.0),
    ]


def test_the_report_file_says_quick_above_every_table(tmp_path):
    from slmlab.report import write_report
    from slmlab.report.document import QUICK_BANNER

    _write(tmp_path, "results/comparison.json", COMPARISON)
    _write(tmp_path, "results/mcts/summary.json", MCTS)
    text = write_report(tmp_path, quick=True).read_text(encoding="utf-8")
    assert text.count(QUICK_BANNER) == text.count("| figure | value | from | made |") == 2
    assert f"2 of {len(SECTIONS)} sections have results" in text and "(quick mode)" in text
    full = write_report(tmp_path, tmp_path / "full").read_text(encoding="utf-8")
    assert QUICK_BANNER not in full and full.count("Not run:") == len(SECTIONS) - 2


def test_slmlab_report_writes_into_the_artifacts_tree(tmp_path, monkeypatch, capsys):
    from slmlab.cli import main

    monkeypatch.setenv("SLMLAB_ARTIFACTS", str(tmp_path))
    assert main(["report", "--quick"]) == 0
    report = tmp_path / "quick" / "results" / "report" / "report.md"
    assert str(report) in capsys.readouterr().out
    assert report.read_text(encoding="utf-8").count("Not run:") == len(SECTIONS)


def test_the_tiny_lm_section_reads_bits_per_byte_against_the_bigram(tmp_path):
    _write(
        tmp_path,
        "results/lm/eval.json",
        {"model": {"bits_per_byte": 2.4, "perplexity": 9.1, "bleu": 12.0}, "bigram": {"bits_per_byte": 3.1}},
    )
    numbers = {n.label: (n.value, n.field) for n in _by_key(gather(tmp_path))["lm"].numbers}
    assert numbers["tiny LM bits per byte"] == (2.4, "model.bits_per_byte")
    assert numbers["bigram baseline bits per byte"] == (3.1, "bigram.bits_per_byte")


def test_figures_are_printed_one_way():
    from slmlab.report.gather import format_value

    assert [format_value(v) for v in (96.3, 0.9117647058823529, 191.90566817, 103636, "n/a")] == [
        "96.3",
        "0.9118",
        "191.9",
        "103636",
        "n/a",
    ]


def test_slmlab_quick_alone_makes_a_quick_report(tmp_path, monkeypatch):
    from slmlab.cli import main
    from slmlab.report.document import QUICK_BANNER

    monkeypatch.setenv("SLMLAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("SLMLAB_QUICK", "1")
    _write(tmp_path / "quick", "results/mcts/summary.json", MCTS)
    assert main(["report"]) == 0
    assert QUICK_BANNER in (tmp_path / "quick" / "results" / "report" / "report.md").read_text(encoding="utf-8")


def test_the_course_runs_section_shows_time_memory_and_energy_or_why_not(tmp_path):
    _write(
        tmp_path,
        "results/notebooks/course_runs.json",
        {
            "00_setup": {"seconds": 11.4, "peak_rss_mb": 420.5, "energy_j": None, "energy_source": "unavailable: no RAPL"},
            "03_lora_training": {"seconds": 24.0, "peak_rss_mb": 1800.0, "energy_j": 310.2, "energy_source": "RAPL x"},
        },
    )
    numbers = {n.label: n.value for n in _by_key(gather(tmp_path))["runs"].numbers}
    assert numbers == {
        "00_setup seconds": 11.4,
        "00_setup peak MB": 420.5,
        "00_setup energy": "unavailable: no RAPL",
        "03_lora_training seconds": 24.0,
        "03_lora_training peak MB": 1800.0,
        "03_lora_training energy J": 310.2,
        "03_lora_training energy method": "RAPL x",
    }


def test_the_grid_section_reads_each_cells_own_record_in_the_grid_files_order(tmp_path):
    cells = {
        "rank=16": {"status": "ok", "seconds": 40.0},
        "rank=4": {"status": "failed", "seconds": 0.1},
        "rank=8": {"status": "ok", "seconds": 45.5},
    }
    for cell, record in cells.items():
        _write(tmp_path, f"results/grid/sweep/{cell}/cell.json", record)
    _write(tmp_path, "results/grid/sweep/grid.json", {"cells": [{"id": "rank=4"}, {"id": "rank=8"}, {"id": "rank=16"}]})
    grids = _by_key(gather(tmp_path))["grids"]
    assert [(n.label, n.value) for n in grids.numbers] == [
        ("sweep rank=4 status", "failed"),
        ("sweep rank=8 status", "ok"),
        ("sweep rank=8 seconds", 45.5),
        ("sweep rank=16 status", "ok"),
        ("sweep rank=16 seconds", 40.0),
    ]
    assert grids.numbers[2].source == "results/grid/sweep/rank=8/cell.json" and grids.numbers[2].group == "8"
