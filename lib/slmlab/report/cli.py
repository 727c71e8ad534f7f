"""``slmlab report``: chapter 09 from the command line (the Markdown report of whatever the chapters have written)."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmlab.report.document import default_video_script, write_report
from slmlab.report.gather import gather
from slmlab.report.latex import fill_latex
from slmlab.report.screens import browser_unavailable_reason, screenshot_notebooks
from slmlab.report.spec import FIGURES, REPORT_FILE, VIDEO_SCRIPT_FILE, report_dir, screens_dir
from slmlab.settings import artifacts_root, project_root, quick_mode
from slmlab.spec import executed_notebooks

TREE = Path("<artifacts>")  # how help texts show a path inside the artifacts tree


def _report(args: argparse.Namespace) -> int:
    quick = quick_mode(args.quick)  # --quick, or SLMLAB_QUICK
    root = artifacts_root(quick)
    video = Path(args.video_script) if args.video_script else default_video_script(root, quick)
    sections = gather(root)  # read once: the report, its figures, the video script and the paper all show these
    path = write_report(root, args.out, quick=quick, video_script=video, sections=sections)
    print(f"report: {path}")
    print(f"figures: {path.parent / FIGURES}")
    print(f"video script: {video or path.parent / VIDEO_SCRIPT_FILE}")
    if args.screens:
        reason = browser_unavailable_reason()
        if reason:
            print(f"screens: not taken ({reason})")
        else:
            shots = screenshot_notebooks(quick=quick)
            print(f"screens: {len(shots)} notebook(s) under {shots[0].parent if shots else screens_dir(root)}")
    if args.latex:
        paper = Path(args.paper) if args.paper else project_root() / "paper"
        changed = fill_latex(sections, paper, quick=quick)
        print(
            f"paper tables: {len(changed)} rewritten under {paper / 'tables'}"
            if changed
            else f"paper tables: up to date ({paper / 'tables'})"
        )
    return 0


def add_report_command(commands) -> None:
    report = commands.add_parser("report", help=f"gather every chapter's results into {report_dir(TREE) / REPORT_FILE}")
    report.add_argument(
        "--quick",
        action="store_true",
        default=None,
        help="report on the quick-mode artifacts tree (quick/), and say so on every table",
    )
    report.add_argument("--out", default=None, help=f"output folder (default: {report_dir(TREE)})")
    report.add_argument(
        "--video-script",
        default=None,
        help="where the video script goes (default: docs/video_script.md for a full-mode report of "
        "the checkout, else beside the report)",
    )
    report.add_argument(
        "--latex",
        action="store_true",
        help="also fill the marked rows of the paper's tables (paper/tables/*.tex); build with latexmk",
    )
    report.add_argument(
        "--screens",
        action="store_true",
        help=f"also photograph every executed notebook ({executed_notebooks(TREE)}) in headless Chromium into "
        f"{screens_dir(TREE)} (needs make test-browser's chromium and playwright)",
    )
    report.add_argument("--paper", default=None, help="the paper folder for --latex (default: paper/ of the checkout)")
    report.set_defaults(run=_report)
