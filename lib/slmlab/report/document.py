"""Chapter 09's Markdown report: ``results/report/report.md`` with its figures, and the video script, written atomically.

Entry point: :func:`write_report`. A quick-mode report says so above every table and in every figure's title,
since quick sizes are for checking the pipeline, not for quoting.
"""

from __future__ import annotations

from pathlib import Path

from slmlab.io import atomic_write_text, created_now
from slmlab.report.gather import NOT_RUN, Section, gather, sections_markdown
from slmlab.report.spec import FIGURES, REPORT_FILE, VIDEO_SCRIPT_FILE, report_dir
from slmlab.report.video import video_script_markdown
from slmlab.report.views import write_figures
from slmlab.settings import project_root

QUICK_BANNER = "> Quick mode: small sizes that check the pipeline; these are not the chapter's figures."
TABLE_HEAD = "| figure | value | from | made |"


def report_markdown(sections: list[Section], root: Path, quick: bool, made: str, figures: dict[str, str] | None = None) -> str:
    """The whole report: a header (when, from where, how many sections ran), then per section its table and figure.

    ``figures`` maps a section key to its image path relative to the report.
    """
    ran = sum(section.status != NOT_RUN for section in sections)
    header = [
        "# SLM Lab report",
        "",
        f"Made {made} from `{root}`" + (" (quick mode)" if quick else "") + f"; "
        f"{ran} of {len(sections)} sections have results. Every figure names its file, field and date.",
        "",
    ]
    body = []
    for section in sections:
        text = sections_markdown([section])
        if quick:
            text = text.replace(TABLE_HEAD, QUICK_BANNER + "\n\n" + TABLE_HEAD)
        body.append(text)
        if figures and section.key in figures:
            body.append(f"![{section.title}]({figures[section.key]})\n")
    return "\n".join(header) + "\n" + "\n".join(body)


def default_video_script(root: Path, quick: bool) -> Path | None:
    """``docs/video_script.md`` of the checkout for a full-mode report of the checkout's own results, else None
    (beside the report), so quick figures or a moved artifacts tree never overwrite the committed script."""
    checkout = project_root()
    return checkout / "docs" / VIDEO_SCRIPT_FILE if not quick and Path(root).resolve() == checkout.resolve() else None


def write_report(
    root: str | Path,
    out_dir: str | Path | None = None,
    quick: bool = False,
    video_script: str | Path | None = None,
    sections: list[Section] | None = None,
) -> Path:
    """Gather ``root`` (an artifacts tree) unless ``sections`` were gathered already; write ``report.md`` and
    ``figures/`` to ``out_dir``; return the report path.

    ``out_dir`` defaults to ``root/results/report``; the video script goes to ``video_script`` (default: beside
    the report).
    """
    root = Path(root)
    out = Path(out_dir) if out_dir else report_dir(root)
    sections = gather(root) if sections is None else sections
    made = created_now()
    written = write_figures(sections, out / FIGURES, quick)
    figures = {path.stem: f"{FIGURES}/{path.name}" for path in written if path.suffix == ".png"}
    atomic_write_text(Path(video_script) if video_script else out / VIDEO_SCRIPT_FILE, video_script_markdown(sections, quick))
    return atomic_write_text(out / REPORT_FILE, report_markdown(sections, root, quick, made, figures))
