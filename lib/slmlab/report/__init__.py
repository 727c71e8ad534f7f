"""Chapter 09: the report — every lever's results gathered from the files the chapters wrote.

Entry points: :func:`gather` (sections of figures, each with its file, field and date, or "not run" with the
command that makes it), :func:`write_report` (``results/report/report.md``, its figures and the video script;
``slmlab report`` on the command line), :func:`fill_latex` (the paper's tables) and, in the
notebook, :func:`overview_frame` and :func:`show_section`.
"""

from slmlab.report.document import default_video_script, write_report
from slmlab.report.gather import Number, Section, gather, sections_markdown
from slmlab.report.latex import fill_latex
from slmlab.report.views import overview_frame, plot_section, section_frame, show_section

__all__ = [
    "Number",
    "Section",
    "default_video_script",
    "fill_latex",
    "gather",
    "overview_frame",
    "plot_section",
    "section_frame",
    "sections_markdown",
    "show_section",
    "write_report",
]
