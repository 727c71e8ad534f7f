"""Chapter 09's files: the report's figures (PNG and PDF at video size), the video script with measured figures,
and where ``slmlab report`` puts them."""

from __future__ import annotations

import json

from slmlab.report import default_video_script, gather, write_report
from slmlab.report.video import video_script_markdown
from slmlab.report.views import FIGURE_DPI, FIGURE_INCHES, plot_section

COMPARISON = {
    "baseline": {"normalized_match": 1.2, "per_category": {"fact": {"normalized": 0.0}}},
    "tuned": {"normalized_match": 88.9, "per_category": {"fact": {"normalized": 96.3}}},
}
RL = {"heldout": {"tasks": 34, "before": 0.71, "after": 0.91}, "humaneval": {"tasks": 164, "before": 0.04, "after": 0.07}}


def _write(root, relative, data):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_the_report_embeds_one_png_and_pdf_per_section_with_results(tmp_path):
    from PIL import Image

    _write(tmp_path, "results/comparison.json", COMPARISON)
    _write(tmp_path, "results/rl/eval.json", RL)
    report = write_report(tmp_path)
    figures = report.parent / "figures"
    assert sorted(p.name for p in figures.iterdir()) == ["lora.pdf", "lora.png", "rl.pdf", "rl.png"]
    with Image.open(figures / "lora.png") as image:
        assert image.size == (round(FIGURE_INCHES[0] * FIGURE_DPI), round(FIGURE_INCHES[1] * FIGURE_DPI))
    assert (figures / "rl.pdf").read_bytes().startswith(b"%PDF")
    text = report.read_text(encoding="utf-8")
    assert "![LoRA: patterns → adapter (chapters 03–04)](figures/lora.png)" in text and "figures/ace.png" not in text


def test_a_figure_plots_the_gathered_numbers_by_group_and_series(tmp_path):
    _write(tmp_path, "results/comparison.json", COMPARISON)
    lora = next(s for s in gather(tmp_path) if s.key == "lora")
    figure = plot_section(lora, quick=True)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["all", "fact"]
    heights = sorted(round(bar.get_height(), 1) for bar in axes.patches)
    assert heights == [0.0, 1.2, 88.9, 96.3]
    assert "quick mode" in figure._suptitle.get_text()
    assert plot_section(next(s for s in gather(tmp_path) if s.key == "mcts")) is None  # not run: no figure


def test_the_video_script_quotes_the_measured_figures_and_names_what_is_missing(tmp_path):
    _write(tmp_path, "results/comparison.json", COMPARISON)
    _write(tmp_path, "results/rl/eval.json", RL)
    text = video_script_markdown(gather(tmp_path))
    assert "Held-out normalized match: **1.2** % before, **88.9** % after; facts **0** % → **96.3** %." in text
    assert "Held-out pass@1 **0.71** → **0.91**; HumanEval **0.04** → **0.07**." in text
    assert "*Figures not run: `slmlab mcts run` makes them.*" in text
    assert "*(not measured yet)* steps" in text  # the LoRA training metrics file is missing
    assert text.count("**Demo.**") == 8 and "## Recording checklist" in text and "`slmlab demo lora`" in text
    assert "do not record" in video_script_markdown(gather(tmp_path), quick=True)


def test_the_video_script_goes_to_docs_only_for_a_full_report_of_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_ROOT", str(tmp_path))
    assert default_video_script(tmp_path, quick=False) == tmp_path / "docs" / "video_script.md"
    assert default_video_script(tmp_path, quick=True) is None
    assert default_video_script(tmp_path / "elsewhere", quick=False) is None
    report = write_report(tmp_path / "elsewhere", quick=True)
    assert "Quick mode" in (report.parent / "video_script.md").read_text(encoding="utf-8")


def test_slmlab_report_latex_fills_the_paper_once(tmp_path, monkeypatch, capsys):
    import shutil
    from pathlib import Path

    from slmlab.cli import main

    paper = Path(
        shutil.copytree(Path(__file__).resolve().parents[1] / "paper", tmp_path / "paper", ignore=shutil.ignore_patterns("build"))
    )
    monkeypatch.setenv("SLMLAB_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("SLMLAB_QUICK", raising=False)  # a full-mode report: only the LoRA table changes
    _write(tmp_path / "artifacts", "results/comparison.json", COMPARISON)
    assert main(["report", "--latex", "--paper", str(paper)]) == 0
    assert "paper tables: 1 rewritten" in capsys.readouterr().out
    assert "88.9" in (paper / "tables" / "lora.tex").read_text(encoding="utf-8")
    assert main(["report", "--latex", "--paper", str(paper)]) == 0
    assert "paper tables: up to date" in capsys.readouterr().out


def test_an_all_zero_chart_starts_at_zero_with_a_unit_axis(tmp_path):
    zero = {"normalized_match": 0.0, "per_category": {"fact": {"normalized": 0.0}}}
    _write(tmp_path, "results/comparison.json", {"baseline": zero, "tuned": zero})
    figure = plot_section(next(s for s in gather(tmp_path) if s.key == "lora"))
    assert figure.axes[0].get_ylim() == (0.0, 1.0)
