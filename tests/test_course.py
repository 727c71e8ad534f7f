"""The papermill course runner: chapter selection, parameters, and failure reports."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from slmlab.cli import main
from slmlab.course import CourseError, discover_chapters, parse_chapters, run_course


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
    write_notebook(folder / "00_first.ipynb", "import json, pathlib\npathlib.Path('first.json').write_text(json.dumps({'quick': QUICK, 'seed': SEED}))")
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
