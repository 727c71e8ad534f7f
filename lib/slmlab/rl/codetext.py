"""Code as text for the chapter's tiny policy: source normalized before tokenization, block structure written as
<INDENT>/<DEDENT> markers that decode to the same source, and a byte-level BPE trained on that form.
"""

from __future__ import annotations

import bisect
import io
import re
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerFast

from slmlab.bpe import BYTE_ALPHABET, train_byte_bpe

INDENT_WIDTH = 4  # spaces per block level in normalized source; tabs in indentation count as this many columns
INDENT_TOKEN = "<INDENT>"  # this line is one block deeper than the one before
DEDENT_TOKEN = "<DEDENT>"  # this line is one block shallower (one marker per block closed)
RAWLINE_TOKEN = "<RAWLINE>"  # the rest of this line is copied as it is, without the block's indentation
STRUCTURE_TOKENS = (INDENT_TOKEN, DEDENT_TOKEN, RAWLINE_TOKEN)
SPECIAL_TOKENS = ("<PAD>", "<UNK>", "<BOS>", "<EOS>")  # ids 0..3 in this order, the structure tokens 4..6 after them
SPACES = " \t\f"  # Python's whitespace within a line
STRUCTURE_PATTERN = re.compile("|".join(re.escape(token) for token in STRUCTURE_TOKENS))
_STRING_OPENERS = tuple(getattr(tokenize, name) for name in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, name))
_STRING_CLOSERS = tuple(getattr(tokenize, name) for name in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, name))


@dataclass(frozen=True)
class CodeTokenizerConfig:
    """Defaults of the code tokenizer."""

    vocab_size: int = 1024
    min_frequency: int = 2  # a pair seen fewer times is never merged
    model_max_length: int = 1024  # the longest sequence the policy takes


@dataclass
class _Layout:
    """Where a program's lines sit in its token structure (rows count from 0)."""

    statements: dict[int, tuple[int, int]] = field(default_factory=dict)  # first row of a logical line -> (column, depth)
    continues: dict[int, int] = field(default_factory=dict)  # later row of a logical line -> its first row
    starts_in_string: set[int] = field(default_factory=set)  # rows whose first character lies inside a string
    ends_in_string: set[int] = field(default_factory=set)  # rows whose line break lies inside a string


def _layout(code: str) -> _Layout | None:
    """The layout from the stdlib tokenizer, or None when ``code`` does not tokenize."""
    layout, depth, current, opened = _Layout(), 0, None, []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        return None
    for token in tokens:
        kind, (row, column), end_row = token.type, (token.start[0] - 1, token.start[1]), token.end[0] - 1
        if kind == tokenize.INDENT:
            depth += 1
        elif kind == tokenize.DEDENT:
            depth -= 1
        elif kind == tokenize.NEWLINE:
            if current is not None:
                layout.continues.update(dict.fromkeys(range(current + 1, row + 1), current))
            current = None
        elif kind not in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER):
            if current is None:
                current = row
                layout.statements[row] = (column, depth)
            _note_strings(layout, kind, row, end_row, opened)
    return layout


def _note_strings(layout: _Layout, kind: int, row: int, end_row: int, opened: list[int]) -> None:
    """Mark the rows a string token spans; ``opened`` holds the first rows of f-strings not yet closed."""
    if kind == tokenize.STRING:
        _mark_string(layout, row, end_row)
    elif kind in _STRING_OPENERS:  # f-strings are several tokens from Python 3.12 on
        opened.append(row)
    elif kind in _STRING_CLOSERS and opened:
        _mark_string(layout, opened.pop(), end_row)


def _mark_string(layout: _Layout, first_row: int, last_row: int) -> None:
    layout.ends_in_string.update(range(first_row, last_row))
    layout.starts_in_string.update(range(first_row + 1, last_row + 1))


def _width(whitespace: str) -> int:
    return len(whitespace.replace("\f", "").expandtabs(INDENT_WIDTH))


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip(SPACES))]


def _rebased(width: int, levels: Iterable[tuple[int, int]]) -> int:
    """A column re-based on the nearest block level at or left of it: levels are (original column, new column)."""
    original, new = max((level for level in levels if level[0] <= width), default=(0, 0))
    return new + width - original


def _reindented(lines: list[str], layout: _Layout) -> list[str]:
    statement_rows = sorted(layout.statements)
    levels: list[tuple[int, int]] = [(0, 0)]  # (original, new) indentation of the open blocks, outermost first
    shifts: dict[int, tuple[int, int]] = {}  # first row of a logical line -> its (original, new) indentation
    out = []
    for row, line in enumerate(lines):
        if row in layout.starts_in_string:
            new = line
        elif row in layout.statements:
            column, depth = layout.statements[row]
            shifts[row] = (_width(line[:column]), INDENT_WIDTH * depth)
            del levels[depth:]
            levels.append(shifts[row])
            new = " " * shifts[row][1] + line[column:]
        elif row in layout.continues:
            lead = _leading(line)
            new = " " * _rebased(_width(lead), [(0, 0), shifts[layout.continues[row]]]) + line[len(lead) :]
        elif line.strip(SPACES):  # a comment line: placed like the block it belongs to, or the statement after it
            lead, following = _leading(line), bisect.bisect(statement_rows, row)
            candidates = list(levels)
            if following < len(statement_rows):
                next_row = statement_rows[following]
                column, depth = layout.statements[next_row]
                candidates.append((_width(lines[next_row][:column]), INDENT_WIDTH * depth))
            new = " " * _rebased(_width(lead), candidates) + line[len(lead) :]
        else:
            new = ""
        out.append(new if row in layout.ends_in_string else new.rstrip(SPACES))
    return out


def normalize_source(code: str) -> str:
    """Python source in one canonical layout, for tokenization (normalizing twice changes nothing more).

    Line endings become ``\\n``; each statement is indented by :data:`INDENT_WIDTH` spaces per block level, as the
    stdlib tokenizer's INDENT/DEDENT tokens nest (so 2-space or tab-indented code becomes 4-space); continuation lines
    inside brackets or after a backslash move with their statement, keeping their alignment; comment-only lines
    are placed like the block they sit in (or the statement after them); trailing whitespace is removed; blank lines
    become empty; the text ends with exactly one newline (a blank program becomes ""). The text of string literals is
    never touched, also where a multi-line string's inner lines start with spaces or end with them. A program that
    does not tokenize gets only the textual steps: line endings, trailing whitespace, the final newline.
    """
    text = code.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    layout = _layout(text)
    lines = [line.rstrip(SPACES) for line in lines] if layout is None else _reindented(lines, layout)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def _reads_as_statement(content: str) -> bool:
    return bool(content) and not content[0].isspace() and not content.startswith(STRUCTURE_TOKENS)


def _decodes_as_itself(line: str, depth: int) -> bool:
    return not line.startswith(STRUCTURE_TOKENS) and (not line or line[0].isspace() or depth == 0)


def _encoded_line(line: str, depth: int, statement: bool) -> str:
    indent = " " * (INDENT_WIDTH * depth)
    if statement and line.startswith(indent) and _reads_as_statement(line[len(indent) :]):
        return line[len(indent) :]
    return line if _decodes_as_itself(line, depth) else RAWLINE_TOKEN + line


def _is_comment_line(row: int, line: str, layout: _Layout) -> bool:
    return row not in layout.continues and row not in layout.starts_in_string and line.lstrip(SPACES).startswith("#")


def _comment_depth(line: str, depth: int, next_depth: int) -> int:
    """The block a comment line belongs to: one between the statements around it whose indentation it has exactly."""
    lead = _leading(line)
    level, misaligned = divmod(len(lead), INDENT_WIDTH)
    fits = lead == " " * len(lead) and not misaligned and min(depth, next_depth) <= level <= max(depth, next_depth)
    return level if fits else depth


def encode_structure(code: str) -> str:
    """Normalized source with the indentation of statements and comments replaced by block markers.

    A statement one block deeper than the one before starts with :data:`INDENT_TOKEN`, one that closes blocks with a
    :data:`DEDENT_TOKEN` per block, as in Python's tokenizer, and its indentation is dropped. A comment-only line
    indented exactly like a block between the statements before and after it is written the same way (so a comment
    between two top-level functions carries the DEDENT). Every other line (blank lines, other comments,
    continuation lines inside brackets or after a backslash, inner lines of multi-line strings) keeps its text
    with its own leading spaces; where such a line would read as a line of the current block (it starts at column
    0 inside a block) or starts with a marker's text, :data:`RAWLINE_TOKEN` goes in front of it. No marker closes
    the blocks open at the end. :func:`decode_structure` gives back ``code`` exactly, for any text; normalized
    source (:func:`normalize_source`) gets the compact form, and a program that does not tokenize gets no markers.
    """
    layout = _layout(code) or _Layout()
    statement_rows = sorted(layout.statements)
    depth, out = 0, []
    for row, line in enumerate(code.split("\n")):
        new_depth, structural = depth, row in layout.statements
        if structural:
            new_depth = layout.statements[row][1]
        elif _is_comment_line(row, line, layout):
            following = bisect.bisect(statement_rows, row)
            next_depth = layout.statements[statement_rows[following]][1] if following < len(statement_rows) else 0
            new_depth, structural = _comment_depth(line, depth, next_depth), True
        markers = INDENT_TOKEN * (new_depth - depth) + DEDENT_TOKEN * (depth - new_depth)
        depth = new_depth
        out.append(markers + _encoded_line(line, depth, structural))
    return "\n".join(out)


def _decoded_line(line: str, depth: int) -> tuple[str, int]:
    while line.startswith(STRUCTURE_TOKENS):
        if line.startswith(RAWLINE_TOKEN):
            return line[len(RAWLINE_TOKEN) :], depth
        depth = depth + 1 if line.startswith(INDENT_TOKEN) else max(0, depth - 1)
        line = line[len(INDENT_TOKEN if line.startswith(INDENT_TOKEN) else DEDENT_TOKEN) :]
    if not line or line[0].isspace():
        return line, depth
    return " " * (INDENT_WIDTH * depth) + line, depth


def decode_structure(text: str) -> str:
    """Source from :func:`encode_structure`'s form; markers count only at the start of a line, and any text decodes
    (extra DEDENTs stop at the outermost block), so a model's output always gives a program to run.
    """
    depth, out = 0, []
    for line in text.split("\n"):
        decoded, depth = _decoded_line(line, depth)
        out.append(decoded)
    return "\n".join(out)


def min_vocab_size() -> int:
    """The smallest vocabulary of the code tokenizer: every byte plus the special and structure tokens."""
    return BYTE_ALPHABET + len(SPECIAL_TOKENS) + len(STRUCTURE_TOKENS)


def _training_pieces(texts: Iterable[str]) -> Iterator[str]:
    # The trainer does not split its input at added tokens, so the markers are cut out here: merges are then
    # learned only within the pieces that encoding sees between markers.
    for text in texts:
        yield from (piece for piece in STRUCTURE_PATTERN.split(encode_structure(normalize_source(text))) if piece)


def train_code_tokenizer(
    texts: Iterable[str],
    vocab_size: int = CodeTokenizerConfig.vocab_size,
    min_frequency: int = CodeTokenizerConfig.min_frequency,
    progress: bool = False,
    model_max_length: int = CodeTokenizerConfig.model_max_length,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the normalized, structure-encoded form of ``texts`` (Python sources).

    :data:`SPECIAL_TOKENS` get ids 0..3 and :data:`STRUCTURE_TOKENS` 4..6; all are special tokens, so each is one id
    and never split, and none is added when encoding. Training is deterministic.
    """
    if vocab_size < min_vocab_size():
        raise ValueError(
            f"vocab_size {vocab_size} is smaller than the byte alphabet plus special and structure tokens ({min_vocab_size()})"
        )
    return train_byte_bpe(
        _training_pieces(texts), vocab_size, [*SPECIAL_TOKENS, *STRUCTURE_TOKENS], min_frequency, progress, model_max_length
    )


def encode_code(tokenizer: PreTrainedTokenizerFast, code: str, add_bos_eos: bool = False) -> list[int]:
    """Token ids of ``code`` normalized and structure-encoded; with ``add_bos_eos`` framed by <BOS> ... <EOS>."""
    ids = tokenizer(encode_structure(normalize_source(code)), add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id] if add_bos_eos else ids


def decode_code(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Source from token ids: <PAD>, <BOS> and <EOS> are dropped, the structure markers decoded into indentation."""
    framing = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    text = tokenizer.decode([i for i in ids if i not in framing], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return decode_structure(text)
