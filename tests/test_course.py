"""The papermill course runner: chapter selection, parameters, and failure reports."""

from __future__ import annotations

import json
import logging

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from slmlab.cli import main
from slmlab.course import (
    RUNS_FILE,
    UNENCRYPTED_TCP_WARNING,
    CourseError,
    UnencryptedTcpWarningFilter,
    discover_chapters,
    parse_chapters,
    run_course,
)


def write_notebook(path, *sources, parameters="QUICK = False\nSEED = 0"):
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    notebook.cells = [params] + [new_code_cell(s) for s in sources]
    nbformat.write(notebook, path)


@pytest.fixture
def course_dir(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "00_first.ipynb",
        "import json, pathlib\npathlib.Path('first.json').write_text(json.dumps({'quick': QUICK, 'seed': SEED}))",
    )
    write_notebook(folder / "01_second.ipynb", "x = 1", "raise ValueError('broken on purpose')", "y = 2")
    write_notebook(folder / "02_third.ipynb", "pass")
    (folder / "scratch.ipynb").write_text("not a chapter")
    return folder


def test_discover_only_numbered(course_dir):
    assert [p.name for p in discover_chapters(course_dir)] == ["00_first.ipynb", "01_second.ipynb", "02_third.ipynb"]


@pytest.mark.parametrize(
    "spec, expected",
    [("00-02,05", {0, 1, 2, 5}), ("3", {3}), ([0, 4], {0, 4}), ("all", None), (None, None)],
)
def test_parse_chapters(spec, expected):
    assert parse_chapters(spec) == expected


@pytest.mark.parametrize("spec", ["0-x", "5-2"])
def test_parse_chapters_rejects_nonsense(spec):
    with pytest.raises(ValueError, match="Bad chapter"):
        parse_chapters(spec)


def test_runs_selected_chapters_with_parameters(course_dir, tmp_path):
    report = run_course("00", quick=True, seed=42, notebooks_dir=course_dir, output_dir=tmp_path / "out", progress=False)
    assert report.ok and [r.notebook.name for r in report.results] == ["00_first.ipynb"]
    assert json.loads((course_dir / "first.json").read_text()) == {"quick": True, "seed": 42}
    assert (tmp_path / "out" / "00_first.ipynb").is_file()
    assert "| 00_first | ok |" in report.table()


def test_failure_names_notebook_cell_and_error(course_dir, tmp_path):
    with pytest.raises(CourseError) as caught:
        run_course(None, notebooks_dir=course_dir, output_dir=tmp_path / "out", progress=False)
    message = str(caught.value)
    assert "01_second.ipynb failed in cell" in message
    assert "ValueError: broken on purpose" in message
    assert str(tmp_path / "out" / "01_second.ipynb") in message
    assert not (tmp_path / "out" / "02_third.ipynb").exists(), "later chapters must not run after a failure"


def test_report_without_raising(course_dir, tmp_path):
    report = run_course(None, notebooks_dir=course_dir, output_dir=tmp_path / "out", progress=False, raise_on_error=False)
    assert not report.ok
    assert [r.ok for r in report.results] == [True, False]
    assert "FAILED" in report.table()


def test_no_matching_chapter(course_dir, tmp_path):
    with pytest.raises(CourseError, match="No numbered notebooks"):
        run_course("07", notebooks_dir=course_dir, output_dir=tmp_path, progress=False)


def test_cli_reports_errors_in_one_line(capsys):
    assert main(["generate", "hi", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slmlab: error: Unknown model 'no-such-model'") and err.count("\n") == 1


def test_cli_lists_models(capsys):
    assert main(["models"]) == 0
    assert "smollm2-135m-instruct" in capsys.readouterr().out


@pytest.fixture
def progress_course(tmp_path):
    """Two chapters: one prints a line and draws a tqdm.auto bar (a widget in the kernel), one ends in Markdown."""
    folder = tmp_path / "progress"
    folder.mkdir()
    write_notebook(
        folder / "00_talk.ipynb",
        "print('hello from chapter zero')",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass",
    )
    write_notebook(folder / "01_quiet.ipynb", "x = 1")
    quiet = nbformat.read(folder / "01_quiet.ipynb", as_version=4)
    quiet.cells.append(new_markdown_cell("The end."))
    nbformat.write(quiet, folder / "01_quiet.ipynb")
    return folder


def test_cell_progress_reaches_every_cell_of_every_chapter(progress_course, tmp_path):
    calls = []
    report = run_course(
        None, notebooks_dir=progress_course, output_dir=tmp_path / "out", progress=False, on_cell=lambda *call: calls.append(call)
    )
    assert report.ok
    for result in report.results:
        cells = len(nbformat.read(result.output, as_version=4).cells)  # the injected parameters cell counts too
        seen = [(done, total) for chapter, done, total in calls if chapter == result.notebook.stem]
        assert seen[0] == (0, cells) and seen[-1] == (cells, cells)
        assert [done for done, _ in seen] == sorted({done for done, _ in seen})


def test_relays_chapter_output_without_the_tcp_warning(progress_course, tmp_path, capfd, recwarn):
    run_course("00", notebooks_dir=progress_course, output_dir=tmp_path / "out", progress=True)
    out, err = capfd.readouterr()
    assert "hello from chapter zero" in out
    assert "steps: 100% 3/3" in err
    assert "00_talk:" in err and "cell/s" in err, "the running chapter's cell bar"
    assert "without encryption" not in out + err
    assert not [w for w in recwarn if "without encryption" in str(w.message)]


def test_tcp_warning_filter_drops_only_that_record():
    def record(message):
        return logging.LogRecord("IPKernelApp", logging.WARNING, __file__, 1, message, None, None)

    drop = UnencryptedTcpWarningFilter()
    assert not drop.filter(record(UNENCRYPTED_TCP_WARNING + " All communication is sent in plain text."))
    assert drop.filter(record("Kernel is running over IPC."))


def test_summary_lists_wall_time_per_chapter_and_total(course_dir, tmp_path):
    report = run_course(None, notebooks_dir=course_dir, output_dir=tmp_path / "out", progress=False, raise_on_error=False)
    table = report.table()
    assert "wall time" in table.splitlines()[0]
    assert "| 00_first | ok |" in table and "| 01_second | FAILED |" in table
    total = table.splitlines()[-1]
    assert total.startswith("| total | FAILED |") and f"{report.seconds:.1f}" in total
    assert report.seconds == pytest.approx(sum(r.seconds for r in report.results))


def test_each_chapter_run_records_wall_time_memory_and_energy(course_dir, tmp_path):
    out = tmp_path / "out"
    report = run_course(None, notebooks_dir=course_dir, output_dir=out, progress=False, raise_on_error=False)
    runs = json.loads((out / RUNS_FILE).read_text())
    assert set(runs) == {r.notebook.stem for r in report.results}  # up to and including the failing chapter
    first = runs["00_first"]
    assert first["ok"] and first["seconds"] > 0 and first["peak_rss_mb"] > 30  # this process and the kernel
    assert first["energy_source"].startswith(("RAPL", "codecarbon estimate", "unavailable"))
    failed = [run for run in runs.values() if not run["ok"]]
    assert failed and all(run["error"] for run in failed)
    run_course("00", notebooks_dir=course_dir, output_dir=out, progress=False)  # one chapter again
    again = json.loads((out / RUNS_FILE).read_text())
    assert set(again) == set(runs) and again["00_first"]["created"] >= first["created"]


def test_energy_meter_reads_rapl_and_says_why_not(tmp_path):
    from slmlab.environment import EnergyMeter

    (tmp_path / "energy_uj").write_text("999000000\n")
    (tmp_path / "max_energy_range_uj").write_text("1000000000\n")
    with EnergyMeter(tmp_path) as meter:
        (tmp_path / "energy_uj").write_text("1500000\n")  # wrapped past the range
    assert meter.joules == pytest.approx(2.5) and meter.source == f"RAPL {tmp_path.name}"
    with EnergyMeter(tmp_path / "missing", estimate=False) as meter:
        pass
    assert meter.joules is None and "is not readable here" in meter.source


def test_energy_falls_back_to_codecarbons_estimate_where_rapl_is_not_readable(tmp_path):
    pytest.importorskip("codecarbon")
    from slmlab.environment import EnergyMeter

    with EnergyMeter(tmp_path / "missing") as meter:
        sum(i * i for i in range(2_000_000))
    assert meter.joules > 0 and meter.source.startswith("codecarbon estimate: CPU ") and " J (load" in meter.source
    assert "is not readable here" in meter.source
