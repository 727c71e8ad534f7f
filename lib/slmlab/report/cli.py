"""``slmlab report``: chapter 09 from the command line (the Markdown report of whatever the chapters have written)."""

from __future__ import annotations

import argparse

from slmlab.report.document import write_report
from slmlab.settings import artifacts_root, quick_mode


def _report(args: argparse.Namespace) -> int:
    quick = quick_mode(args.quick)  # --quick, or SLMLAB_QUICK
    path = write_report(artifacts_root(quick), args.out, quick=quick)
    print(f"report: {path}")
    return 0


def add_report_command(commands) -> None:
    report = commands.add_parser("report", help="gather every chapter's results into results/report/report.md")
    report.add_argument("--quick", action="store_true", default=None,
                        help="report on the quick-mode artifacts tree (quick/), and say so on every table")
    report.add_argument("--out", default=None, help="output folder (default: results/report/ of the artifacts tree)")
    report.set_defaults(run=_report)
