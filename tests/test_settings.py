"""Where generated artifacts go: full and quick runs in separate trees, all of it movable by SLMLAB_ARTIFACTS,
committed inputs always read from the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmlab.ace.runs import AceConfig, run_dir_of
from slmlab.lora import DataConfig, generate_dataset, load_patterns
from slmlab.mcts import default_run_dir as mcts_run_dir
from slmlab.settings import ARTIFACTS_ENV, adapters_dir, artifacts_root, data_dir, project_root, results_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def artifacts(tmp_path, monkeypatch) -> Path:
    """A fresh artifacts root for one test, with quick mode off unless the test says so."""
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path / "artifacts"))
    monkeypatch.delenv("SLMLAB_QUICK", raising=False)
    return tmp_path / "artifacts"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_mode_uses_the_checkout_without_the_variable(monkeypatch):
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    monkeypatch.chdir(ROOT / "notebooks")  # where a notebook kernel runs
    assert artifacts_root(quick=False) == ROOT
    assert data_dir(quick=False) == ROOT / "data"
    assert adapters_dir("patterns-lora", quick=False) == ROOT / "adapters" / "patterns-lora"
    assert artifacts_root(quick=True) == ROOT / "quick"


def test_the_variable_moves_every_artifact_of_both_modes(artifacts, monkeypatch):
    monkeypatch.chdir(ROOT)
    for quick, tree in ((False, artifacts), (True, artifacts / "quick")):
        assert artifacts_root(quick) == tree
        assert data_dir(quick=quick) == tree / "data"
        assert adapters_dir("patterns-lora", quick=quick) == tree / "adapters" / "patterns-lora"
        assert results_dir("mcts", quick=quick) == tree / "results" / "mcts" and (tree / "results" / "mcts").is_dir()
        assert run_dir_of(AceConfig(task="iot"), quick=quick).is_relative_to(tree / "results" / "ace")
        assert mcts_run_dir(quick=quick) == tree / "results" / "mcts"
    assert project_root() == ROOT  # committed inputs (patterns/, data/tasks/) stay in the checkout


def test_quick_defaults_to_the_environment(artifacts, monkeypatch):
    assert results_dir() == artifacts / "results"
    monkeypatch.setenv("SLMLAB_QUICK", "1")
    assert results_dir() == artifacts / "quick" / "results" and data_dir() == artifacts / "quick" / "data"
    assert results_dir(quick=False) == artifacts / "results"


def test_a_quick_run_leaves_full_mode_data_byte_for_byte(artifacts):
    patterns = load_patterns(ROOT / "patterns")
    generate_dataset(patterns, data_dir(quick=False), DataConfig(seed=0))
    full = snapshot(artifacts / "data")
    generate_dataset(patterns, data_dir(quick=True), DataConfig(variants_per_prompt=1, seed=1))
    assert snapshot(artifacts / "data") == full
    quick = snapshot(artifacts / "quick" / "data")
    assert set(quick) == set(full) and quick != full


def test_the_data_chapter_in_quick_mode_keeps_off_a_full_run(artifacts, tmp_path):
    """Chapter 02 executed (papermill) in full mode, then quick with another seed: the full files are untouched."""
    papermill = pytest.importorskip("papermill")
    notebook = ROOT / "notebooks" / "02_data_generation.ipynb"
    for run, parameters in (("full", {"QUICK": False}), ("quick", {"QUICK": True, "SEED": 1})):
        papermill.execute_notebook(
            str(notebook), str(tmp_path / f"{run}.ipynb"), parameters=parameters, cwd=str(notebook.parent), progress_bar=False
        )  # the kernel inherits SLMLAB_ARTIFACTS
        if run == "full":
            full = snapshot(artifacts / "data") | snapshot(artifacts / "results")
    assert snapshot(artifacts / "data") | snapshot(artifacts / "results") == full
    quick = json.loads((artifacts / "quick" / "data" / "manifest.json").read_text())
    assert quick != json.loads((artifacts / "data" / "manifest.json").read_text())
