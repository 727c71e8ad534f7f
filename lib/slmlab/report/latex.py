"""Chapter 09's LaTeX fill: the gathered figures written into the paper's tables (``paper/tables/<key>.tex``).

Entry point: :func:`fill_latex`. Only the rows between ``% slmlab:begin <key>`` and ``% slmlab:end <key>`` are
rewritten; caption, columns and hand-written notes around them are kept. A file is written only when it changes.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_text
from slmlab.report.gather import NOT_RUN, UNREADABLE, Number, Section, format_value

BEGIN, END = "% slmlab:begin", "% slmlab:end"
QUICK_NOTE = "quick mode: pipeline check, not the chapter's figures"
WIDE_COLUMN = r"p{0.9\linewidth}"  # a status row spans the figure and value columns and wraps
LONG_TEXT = 30  # a text figure longer than this (a model's sample) gets a wrapped row of its own

# Hand-written rather than pylatexenc: a dozen characters do not justify a dependency.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "→": r"$\to$",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
}
_LATEX_SPECIAL = re.compile("|".join(re.escape(character) for character in _LATEX_SPECIALS))


class MarkersMissingError(SlmLabError, ValueError):
    """A table file whose ``% slmlab:begin``/``% slmlab:end`` lines were removed or doubled."""


def latex_escape(text: str) -> str:
    """``text`` as LaTeX prints it literally: specials escaped, the few non-ASCII signs the figures use spelled out."""
    return _LATEX_SPECIAL.sub(lambda match: _LATEX_SPECIALS[match.group()], _ascii(text))


def _ascii(text: str) -> str:
    """Other non-ASCII characters folded to ASCII (accents dropped) or ``?``: pdflatex stops at a character it has
    no glyph for, and text figures (a model's samples) may hold any."""
    return "".join(character if character.isascii() or character in _LATEX_SPECIALS else _fold(character) for character in text)


def _fold(character: str) -> str:
    folded = unicodedata.normalize("NFKD", character).encode("ascii", "ignore").decode("ascii")
    return folded or "?"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _wide_row(text: str) -> str:
    return rf"\multicolumn{{2}}{{{WIDE_COLUMN}}}{{{text}}} \\"


def _number_row(number: Number) -> str:
    label, value = latex_escape(_one_line(number.label)), latex_escape(_one_line(format_value(number.value)))
    provenance = _one_line(f"{number.source}: {number.field}, made {number.created}")
    if isinstance(number.value, str) and len(number.value) > LONG_TEXT:
        return f"{_wide_row(f'{label}: {value}')} % {provenance}"
    return rf"{label} & {value} \\ % {provenance}"


def table_rows(section: Section, quick: bool = False) -> list[str]:
    """The marked rows of one section: its figures with their provenance as comments, or one row saying why not."""
    rows = [_wide_row(rf"\emph{{{latex_escape(QUICK_NOTE)}}}"), r"\midrule"] if quick else []
    command = rf"\texttt{{{latex_escape(section.command)}}}"
    if section.status == NOT_RUN:
        return rows + [_wide_row(f"Not run: {command} makes it.")]
    if section.status == UNREADABLE:
        return rows + [_wide_row(f"Unreadable: {latex_escape(_one_line(section.problem))}. Run {command} again.")]
    if section.problem:
        rows.append(_wide_row(f"Skipped: {latex_escape(_one_line(section.problem))}."))
    if not section.numbers:
        rows.append(_wide_row(f"No figures in its results file; run {command} again."))
    return rows + [_number_row(number) for number in section.numbers]


def table_template(section: Section) -> str:
    """A new table file for ``section``: a booktabs table whose caption is the section title, with empty markers."""
    return "\n".join(
        [
            f"% Results table '{section.key}'. `slmlab report --latex` rewrites only the rows between the slmlab markers;",
            "% the caption, label, columns and anything else here are yours to edit and are kept.",
            r"\begin{table}[htbp]",
            r"  \centering",
            rf"  \caption{{{latex_escape(section.title)}}}",
            rf"  \label{{tab:{section.key}}}",
            r"  \begin{tabular}{lr}",
            r"    \toprule",
            r"    Figure & Value \\",
            r"    \midrule",
            f"    {BEGIN} {section.key}",
            f"    {END} {section.key}",
            r"    \bottomrule",
            r"  \end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def replace_marked(text: str, key: str, rows: list[str], where: str | Path = "table") -> str:
    """``text`` with the lines between its ``key`` markers replaced by ``rows`` (indented like the begin marker)."""
    lines = text.splitlines(keepends=True)
    begins = [index for index, line in enumerate(lines) if line.strip() == f"{BEGIN} {key}"]
    ends = [index for index, line in enumerate(lines) if line.strip() == f"{END} {key}"]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise MarkersMissingError(
            f"{where}: needs one '{BEGIN} {key}' line and, below it, one '{END} {key}' line "
            "around the figure rows; put them back, or delete the file to start from the template."
        )
    begin, end = begins[0], ends[0]
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    return "".join(lines[: begin + 1] + [f"{indent}{row}\n" for row in rows] + lines[end:])


def fill_latex(sections: list[Section], paper_dir: str | Path, quick: bool = False) -> list[Path]:
    """Write each section's rows into ``paper_dir/tables/<key>.tex`` (made from the template when missing).

    Returns the files that changed: a second run on the same results returns ``[]`` and touches nothing. Every file
    is checked before any is written, so a table with broken markers stops the fill without a half-filled paper.
    """
    tables = Path(paper_dir) / "tables"
    changed: list[tuple[Path, str]] = []
    for section in sections:
        path = tables / f"{section.key}.tex"
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        filled = replace_marked(
            table_template(section) if current is None else current, section.key, table_rows(section, quick), path
        )
        if filled != current:
            changed.append((path, filled))
    return [atomic_write_text(path, filled) for path, filled in changed]
