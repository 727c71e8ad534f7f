"""Chapter 09's LaTeX fill: marked rows only, written once, specials escaped; the paper builds when latexmk is here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from slmlab.report import gather
from slmlab.report.gather import NOT_RUN, SECTIONS, Number, Section
from slmlab.report.latex import QUICK_NOTE, MarkersMissingError, fill_latex, latex_escape, table_rows

PAPER = Path(__file__).resolve().parents[1] / "paper"
COMPARISON = {
    "baseline": {"normalized_match": 1.2, "per_category": {"fact": {"normalized": 0.0}}},
    "tuned": {"normalized_match": 88.91234, "per_category": {"fact": {"normalized": 96.3}}},
}
MCTS = {
    "evaluation": [
        {"method": "greedy", "accuracy": 30.0, "tokens_spent": 10.7},
        {"method": "mcts_kv", "accuracy": 33.3, "tokens_spent": 59.0},
    ]
}


def _write(root: Path, relative: str, data) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


@pytest.fixture
def results(tmp_path):
    """A small artifacts tree: LoRA, MCTS and one benchmark ran; the other sections did not."""
    root = tmp_path / "artifacts"
    _write(root, "results/comparison.json", COMPARISON)
    _write(root, "results/mcts/summary.json", MCTS)
    _write(root, "results/benchmarks/lora.json", {"ratio": 3.55, "created": "2026-12-01T18:49:00+00:00"})
    return root


@pytest.fixture
def paper(tmp_path):
    """A copy of the committed paper folder, to fill without touching the checkout."""
    return Path(shutil.copytree(PAPER, tmp_path / "paper", ignore=shutil.ignore_patterns("build")))


def _marked(text: str, key: str) -> str:
    return text.split(f"% slmlab:begin {key}\n")[1].split(f"% slmlab:end {key}")[0]


def test_a_fake_results_tree_fills_each_lever_table(results, paper):
    changed = fill_latex(gather(results), paper)
    assert {path.name for path in changed} == {"lora.tex", "mcts.tex", "benchmarks.tex"}
    lora = (paper / "tables" / "lora.tex").read_text(encoding="utf-8")
    assert r"tuned normalized match \% & 88.91 \\ % results/comparison.json: tuned.normalized_match, made " in lora
    mcts = _marked((paper / "tables" / "mcts.tex").read_text(encoding="utf-8"), "mcts")
    assert r"mcts\_kv exact match \% & 33.3 \\" in mcts and "Not run" not in mcts
    benchmarks = (paper / "tables" / "benchmarks.tex").read_text(encoding="utf-8")
    assert r"lora ratio & 3.55 \\ % results/benchmarks/lora.json: ratio, made 2026-12-01T18:49:00+00:00" in benchmarks
    ace = (paper / "tables" / "ace.tex").read_text(encoding="utf-8")
    assert r"Not run: \texttt{slmlab ace run --task finance --epochs 2 (and medical, iot)} makes it." in ace


def test_the_committed_tables_are_the_fill_of_an_empty_tree(tmp_path, paper):
    assert fill_latex(gather(tmp_path / "empty"), paper) == []
    for key, *_ in SECTIONS:
        text = (PAPER / "tables" / f"{key}.tex").read_text(encoding="utf-8")
        assert "Not run: \\texttt{" in _marked(text, key)
        assert f"\\input{{tables/{key}.tex}}" in (PAPER / "main.tex").read_text(encoding="utf-8")


def test_an_empty_paper_folder_gets_every_table_from_the_template(tmp_path):
    written = fill_latex(gather(tmp_path / "empty"), tmp_path / "paper")
    assert [path.name for path in written] == [f"{key}.tex" for key, *_ in SECTIONS]
    lora = (tmp_path / "paper" / "tables" / "lora.tex").read_text(encoding="utf-8")
    assert r"\caption{LoRA: patterns $\to$ adapter (chapters 03--04)}" in lora and r"\label{tab:lora}" in lora
    assert r"\texttt{slmlab data \&\& slmlab train \&\& slmlab eval}" in lora


def test_a_second_fill_writes_nothing(results, paper):
    fill_latex(gather(results), paper)
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (paper / "tables").iterdir()}
    assert fill_latex(gather(results), paper) == []
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (paper / "tables").iterdir()} == before


def test_text_outside_the_markers_is_kept(results, paper):
    table = paper / "tables" / "lora.tex"
    edited = table.read_text(encoding="utf-8").replace(r"\caption{LoRA", r"\caption{My own caption: LoRA")
    edited = edited.replace(r"    \bottomrule", "    % a note of mine\n    \\midrule\n    Hand row & 1 \\\\\n    \\bottomrule")
    table.write_text(edited, encoding="utf-8")
    fill_latex(gather(results), paper)
    filled = table.read_text(encoding="utf-8")
    assert filled.split("% slmlab:begin lora")[0] == edited.split("% slmlab:begin lora")[0]
    assert filled.split("% slmlab:end lora")[1] == edited.split("% slmlab:end lora")[1]
    assert "tuned fact" in _marked(filled, "lora") and "Not run" not in filled


def test_a_table_without_its_markers_stops_the_fill_before_any_write(results, paper):
    (paper / "tables" / "rl.tex").write_text("\\begin{tabular}{lr}\n\\end{tabular}\n", encoding="utf-8")
    lora_before = (paper / "tables" / "lora.tex").read_bytes()
    with pytest.raises(MarkersMissingError, match="rl.tex: needs one '% slmlab:begin rl' line"):
        fill_latex(gather(results), paper)
    assert (paper / "tables" / "lora.tex").read_bytes() == lora_before


def test_latex_specials_are_escaped():
    assert latex_escape("50% of a_b & c #1 {x} $y ~ ^ \\") == (
        r"50\% of a\_b \& c \#1 \{x\} \$y \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )
    assert latex_escape("patterns → adapter (01–02), naïve 中") == r"patterns $\to$ adapter (01--02), naive ?"
    section = Section(
        "runs",
        "runs",
        "make course",
        numbers=[Number("00_setup energy", "no RAPL & 100% sure", "results/x.json", "00_setup.energy", "today")],
    )
    row = table_rows(section)[0]
    assert row.startswith(r"00\_setup energy & no RAPL \& 100\% sure \\ % results/x.json")


def test_status_rows_and_quick_mode_note():
    unreadable = Section(
        "mcts",
        "MCTS",
        "slmlab mcts run",
        status="unreadable",
        problem="results/mcts/summary.json: no field evaluation.0.tokens_spent",
    )
    assert table_rows(unreadable) == [
        r"\multicolumn{2}{p{0.9\linewidth}}{Unreadable: results/mcts/summary.json: no field "
        r"evaluation.0.tokens\_spent. Run \texttt{slmlab mcts run} again.} \\"
    ]
    quick = table_rows(Section("rl", "RL", "slmlab rl train", status=NOT_RUN), quick=True)
    assert quick[0] == rf"\multicolumn{{2}}{{p{{0.9\linewidth}}}}{{\emph{{{latex_escape(QUICK_NOTE)}}}}} \\"
    assert quick[1] == r"\midrule" and "Not run" in quick[2]
    sample = Number("sample 3: model", "def f(x):\n    return {x: 1}  # " + "y" * 40, "results/lm/c.csv", "model", "t")
    wide = table_rows(Section("lm", "LM", "slmlab lm eval", numbers=[sample]))[0]
    assert wide.startswith(r"\multicolumn{2}{p{0.9\linewidth}}{sample 3: model: def f(x): return \{x: 1\} \# yyy")


def test_quick_mode_changes_every_table_then_back(results, paper):
    quick = fill_latex(gather(results), paper, quick=True)
    assert len(quick) == len(SECTIONS)
    assert all(QUICK_NOTE in path.read_text(encoding="utf-8") for path in quick)
    fill_latex(gather(results), paper)
    assert not any(QUICK_NOTE in path.read_text(encoding="utf-8") for path in quick)


def test_the_filled_paper_builds_with_latexmk(results, paper):
    if not shutil.which("latexmk"):
        pytest.skip("latexmk not on PATH: install latexmk and texlive-latex-recommended (Debian) to build the paper")
    _write(
        results,
        "results/lm/eval.json",
        {"model": {"bits_per_byte": 2.4, "perplexity": 9.1, "bleu": 12.0}, "bigram": {"bits_per_byte": 3.1}},
    )
    _write(
        results,
        "results/notebooks/course_runs.json",
        {"00_setup": {"seconds": 11.4, "peak_rss_mb": 420.5, "energy_j": None, "energy_source": "unavailable: no RAPL"}},
    )
    _write(
        results,
        "results/lm/continuations.csv",
        "document,prefix,truth,model\n"
        '7,"def f(x_1):","    return {x_1: 100%}  # ~$^&","    raise ValueError(f\'\\\\n {x!r}\') → é 中"\n',
    )
    fill_latex(gather(results), paper, quick=True)
    build = subprocess.run(
        ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
        cwd=paper,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:]
    assert (paper / "build" / "main.pdf").stat().st_size > 0
