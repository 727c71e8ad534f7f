"""Chapter 09 on one screen: the notebook, the command-line verbs and where the report, its figures, the video
script and the screenshots go, each path a function of the artifacts root."""

from __future__ import annotations

from pathlib import Path

from slmlab.spec import results_path

KEY = "report"
NOTEBOOKS = ("09_report",)
COMMANDS = ("report", "demo", "grid")
TITLE = "The report (chapter 09)"

RESULTS = "report"
REPORT_FILE = "report.md"
VIDEO_SCRIPT_FILE = "video_script.md"
FIGURES, SCREENS = "figures", "screens"


def report_dir(root: Path) -> Path:
    """``results/report``: ``report.md``, ``figures/``, the video script and ``screens/``."""
    return results_path(root, RESULTS)


def screens_dir(root: Path) -> Path:
    return report_dir(root) / SCREENS
