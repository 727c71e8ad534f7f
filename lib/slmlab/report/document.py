"""Chapter 09's Markdown report: ``results/report/report.md`` from the gathered sections, written atomically.

Entry point: :func:`write_report`. A quick-mode report says so above every table, since quick sizes are for
checking the pipeline, not for quoting.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from slmlab.io import atomic_write_text
from slmlab.report.gather import NOT_RUN, Section, gather, sections_markdown

QUICK_BANNER = "> Quick mode: small sizes that check the pipeline; these are not the chapter's figures."


def report_markdown(sections: list[Section], root: Path, quick: bool, made: str) -> str:
    """The whole report: a header (when, from where, how many sections ran), then one table per section."""
    ran = sum(section.status != NOT_RUN for section in sections)
    header = ["# SLM Lab report", "", f"Made {made} from `{root}`" + (" (quick mode)" if quick else "") + f"; "
              f"{ran} of {len(sections)} sections have results. Every figure names its file, field and date.", ""]
    body = sections_markdown(sections)
    if quick:
        body = body.replace("| figure | value | from | made |", QUICK_BANNER + "\n\n| figure | value | from | made |")
    return "\n".join(header) + "\n" + body


def write_report(root: str | Path, out_dir: str | Path | None = None, quick: bool = False) -> Path:
    """Gather ``root`` (an artifacts tree) and write ``report.md`` to ``out_dir`` (default ``root/results/report``)."""
    root = Path(root)
    out = Path(out_dir) if out_dir else root / "results" / "report"
    made = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return atomic_write_text(out / "report.md", report_markdown(gather(root), root, quick, made))
