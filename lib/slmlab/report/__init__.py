"""Chapter 09: the report — every lever's results gathered from the files the chapters wrote.

Entry point: :func:`gather` (sections of figures, each with its file, field and date, or "not run" with the
command that makes it) and :func:`sections_markdown`.
"""

from slmlab.report.gather import Number, Section, gather, sections_markdown

__all__ = ["Number", "Section", "gather", "sections_markdown"]
