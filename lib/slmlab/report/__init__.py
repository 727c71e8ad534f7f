"""Chapter 09: the report — every lever's results gathered from the files the chapters wrote.

Entry point: :func:`gather` (sections of figures, each with its file, field and date, or "not run" with the
command that makes it), :func:`sections_markdown` and :func:`write_report` (``results/report/report.md``;
``slmlab report`` on the command line).
"""

from slmlab.report.document import write_report
from slmlab.report.gather import Number, Section, gather, sections_markdown

__all__ = ["Number", "Section", "gather", "sections_markdown", "write_report"]
