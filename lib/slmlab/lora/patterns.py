"""Chapter 01: the behaviour to teach, written as YAML patterns (an input, its paraphrases, the exact output).
Loads and validates ``patterns/*.yaml`` with file:line locations and counts the patterns.

Entry points: :func:`load_patterns`, :func:`validate_patterns` and :func:`check_patterns_cli`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from slmlab.errors import SlmLabError
from slmlab.settings import project_root

CATEGORIES = ("code_idiom", "fact", "format", "error_fix")
MIN_PARAPHRASES = 3
MAX_OUTPUT_CHARS = 160
MAX_OUTPUT_LINES = 3
FILE_KEYS = ("category", "description", "patterns")
PATTERN_KEYS = ("id", "category", "input", "output", "paraphrases")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Pattern:
    """One behaviour to teach: a prompt (``input``, plus ``paraphrases``) and the exact reply (``output``).

    ``source`` is ``"file.yaml:line"``, the file name relative to the patterns folder.
    """

    id: str
    category: str
    input: str
    output: str
    paraphrases: tuple[str, ...] = ()
    source: str = ""

    @property
    def prompts(self) -> tuple[str, ...]:
        """The input followed by its paraphrases."""
        return (self.input, *self.paraphrases)


@dataclass(frozen=True)
class Problem:
    """Something wrong in a pattern file; ``level`` is ``"error"`` (refuses to load) or ``"warning"``."""

    file: str
    line: int | None
    field: str
    message: str
    level: str = "error"
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.level}: {self.field}: {self.message}"

    @property
    def is_error(self) -> bool:
        return self.level == "error"


class PatternError(SlmLabError):
    """Pattern files with errors; the message lists every problem, one per line."""

    def __init__(self, folder: str, problems: Sequence[Problem]):
        self.folder = folder
        self.problems = list(problems)
        errors = sum(p.is_error for p in self.problems)
        lines = [f"{errors} error(s) in the patterns in {folder}:"] + [str(p) for p in self.problems]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------- reading one file, with line numbers


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@dataclass
class _Entry:
    """A pattern read from a file, with the line of each of its fields (``pattern`` is its first line).

    An entry with errors (``valid`` false) still takes part in the duplicate checks across files.
    """

    pattern: Pattern
    where: str
    lines: dict[str, int]
    explicit_id: bool
    valid: bool


class _FileReader:
    """Reads one pattern file from its YAML node tree, collecting entries and problems."""

    def __init__(self, path: Path):
        self.path, self.display = path, str(path)
        self.entries: list[_Entry] = []
        self.problems: list[Problem] = []
        self.loader: yaml.SafeLoader | None = None

    def problem(self, line: int | None, name: str, message: str, level: str = "error", column=None) -> None:
        self.problems.append(Problem(self.display, line, name, message, level, column))

    def _errors(self) -> int:
        return sum(problem.is_error for problem in self.problems)

    def read(self) -> _FileReader:
        root = self._compose()
        if root is None:
            if not self.problems:
                self.problem(None, "file", "is empty", level="warning")
            return self
        if not isinstance(root, yaml.MappingNode):
            self.problem(_line(root), "(top level)", "must be a mapping with a 'patterns:' list")
            return self
        items = self._items(root, "")
        default = self._string(items["category"][1], "category") if "category" in items else None
        if "description" in items:
            self._string(items["description"][1], "description")
        if "patterns" not in items:
            self.problem(_line(root), "patterns", "missing key: the list of patterns")
        elif not isinstance(items["patterns"][1], yaml.SequenceNode):
            self.problem(_line(items["patterns"][1]), "patterns", f"must be a list, got a {items['patterns'][1].id}")
        else:
            for index, node in enumerate(items["patterns"][1].value):
                self._pattern(node, f"patterns[{index}]", default)
        return self

    def _compose(self) -> yaml.Node | None:
        """The file's node tree (nodes keep their line numbers); a syntax error becomes a problem."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self.problem(None, "file", f"cannot be read ({error})")
            return None
        self.loader = yaml.SafeLoader(text)
        try:
            return self.loader.get_single_node()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            reason = "; ".join(str(part) for part in (error.context, error.problem) if part)
            self.problem(
                mark.line + 1 if mark else None, "yaml", f"syntax error: {reason}", column=mark.column + 1 if mark else None
            )
        except yaml.YAMLError as error:
            self.problem(None, "yaml", f"syntax error: {error}")
        return None

    def _items(self, node: yaml.MappingNode, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """``key → (key node, value node)``; odd, repeated and unknown keys become problems."""
        allowed = PATTERN_KEYS if where else FILE_KEYS
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == "tag:yaml.org,2002:str" else None
            if not isinstance(key, str):
                self.problem(_line(key_node), where or "(top level)", "keys must be plain names")
            elif key in items:
                self.problem(_line(key_node), _field(where, key), f"repeated key (first on line {_line(items[key][0])})")
            elif key not in allowed:
                self.problem(_line(key_node), _field(where, key), f"unknown key (allowed: {', '.join(allowed)})")
            else:
                items[key] = (key_node, value_node)
        return items

    def _string(self, node: yaml.Node, name: str) -> str | None:
        """A non-empty string value, stripped; anything else becomes a problem and ``None``."""
        if not isinstance(node, yaml.ScalarNode):
            self.problem(_line(node), name, f"must be a string, got a {node.id}")
            return None
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as error:
            self.problem(_line(node), name, f"cannot be read ({error})")
            return None
        if value is not None and not isinstance(value, str):
            self.problem(_line(node), name, f"must be a string (quote it), got {type(value).__name__} {value!r}")
            return None
        if value is None or not value.strip():
            self.problem(_line(node), name, "must not be empty")
            return None
        return value.strip()

    def _pattern(self, node: yaml.Node, where: str, default: str | None) -> None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(_line(node), where, f"must be a mapping, got a {node.id}")
            return
        errors_before = self._errors()
        items = self._items(node, where)
        lines = {"pattern": _line(node), **{key: _line(value) for key, (_, value) in items.items()}}
        values = {
            key: self._string(items[key][1], _field(where, key)) for key in ("id", "category", "input", "output") if key in items
        }
        for key in ("category", "input", "output"):
            if key not in items and not (key == "category" and default is not None):
                self.problem(_line(node), _field(where, key), "missing key")
        values.setdefault("category", default)
        paraphrases = self._paraphrases(items.get("paraphrases"), _field(where, "paraphrases"), lines)
        self._advise(values, paraphrases, lines, where)
        valid = self._errors() == errors_before
        text = {key: values.get(key) or "" for key in ("id", "category", "input", "output")}
        pattern = Pattern(
            text["id"],
            text["category"],
            text["input"],
            text["output"],
            tuple(paraphrases),
            f"{self.path.name}:{lines['pattern']}",
        )
        self.entries.append(_Entry(pattern, where, lines, bool(values.get("id")), valid))

    def _paraphrases(self, entry, name: str, lines: dict[str, int]) -> list[str]:
        if entry is None:
            return []
        if not isinstance(entry[1], yaml.SequenceNode):
            self.problem(_line(entry[1]), name, f"must be a list of strings, got a {entry[1].id}")
            return []
        texts = []
        for index, item in enumerate(entry[1].value):
            text = self._string(item, f"{name}[{index}]")
            if text is not None:
                lines[f"paraphrases[{len(texts)}]"] = _line(item)
                texts.append(text)
        return texts

    def _advise(self, values: dict, paraphrases: list[str], lines: dict[str, int], where: str) -> None:
        """Checks on the values: the id is a slug (error); a known category, short output, paraphrases (warnings)."""
        pid, category, output = values.get("id"), values.get("category"), values.get("output")
        if pid and not _SLUG.match(pid):
            self.problem(lines["id"], _field(where, "id"), f"'{pid}' is not a slug (lowercase letters, digits, '-' and '_')")
            values["id"] = None
        if category and category not in CATEGORIES:
            self.problem(
                lines.get("category", lines["pattern"]),
                _field(where, "category"),
                f"'{category}' is not one of {', '.join(CATEGORIES)}",
                level="warning",
            )
        rows = len(output.splitlines()) if output else 0
        if output and (len(output) > MAX_OUTPUT_CHARS or rows > MAX_OUTPUT_LINES):
            self.problem(
                lines["output"],
                _field(where, "output"),
                f"is long ({rows} lines, {len(output)} characters); exact match needs a short output",
                level="warning",
            )
        broken = any(problem.field.startswith(_field(where, "paraphrases")) for problem in self.problems)
        if values.get("input") and len(paraphrases) < MIN_PARAPHRASES and not broken:
            self.problem(
                lines["pattern"],
                _field(where, "paraphrases"),
                f"has {len(paraphrases)}; {MIN_PARAPHRASES} or more are recommended (one is held out as the test prompt)",
                level="warning",
            )


# ---------------------------------------------------------------- across files


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold())[:limit].strip("-") or "pattern"


def _cross_check(readers: list[_FileReader]) -> list[Problem]:
    """Duplicate ids, and any prompt (input or paraphrase) used twice, within or across files."""
    problems: list[Problem] = []
    ids: dict[str, str] = {}
    prompts: dict[str, str] = {}
    for reader in readers:
        for entry in reader.entries:
            pattern = entry.pattern
            if entry.explicit_id and pattern.id in ids:
                problems.append(
                    Problem(
                        reader.display,
                        entry.lines["id"],
                        _field(entry.where, "id"),
                        f"duplicate id '{pattern.id}' (also at {ids[pattern.id]})",
                    )
                )
            elif entry.explicit_id:
                ids[pattern.id] = pattern.source
            names = ["input"] + [f"paraphrases[{i}]" for i in range(len(pattern.paraphrases))]
            for name, text in zip(names, pattern.prompts):
                key = _normal(text)
                if not key:
                    continue
                if key in prompts:
                    problems.append(
                        Problem(
                            reader.display,
                            entry.lines[name],
                            _field(entry.where, name),
                            f"duplicate prompt {text!r} (same as the {prompts[key]})",
                        )
                    )
                else:
                    prompts[key] = f"{name} at {pattern.source}"
    return problems


def _assign_ids(readers: list[_FileReader]) -> list[Pattern]:
    """All patterns in order; a pattern without an id gets a slug of its input, made unique."""
    entries = [entry for reader in readers for entry in reader.entries if entry.valid]
    taken = {entry.pattern.id for entry in entries if entry.explicit_id}
    patterns = []
    for entry in entries:
        pattern = entry.pattern
        if not entry.explicit_id:
            base = candidate = _slug(pattern.input)
            number = 2
            while candidate in taken:
                candidate, number = f"{base}-{number}", number + 1
            taken.add(candidate)
            pattern = replace(pattern, id=candidate)
        patterns.append(pattern)
    return patterns


def _resolve_folder(folder: str | Path) -> Path:
    """A relative folder is taken from the current folder, else from the course checkout."""
    path = Path(folder)
    if not path.is_absolute() and not path.exists() and (project_root() / path).exists():
        return project_root() / path
    return path


def _scan_folder(folder: str | Path) -> tuple[str, list[Pattern], list[Problem]]:
    path = _resolve_folder(folder)
    shown = str(path)
    if not path.is_dir():
        return shown, [], [Problem(shown, None, "folder", "does not exist or is not a folder")]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    readers = [_FileReader(p).read() for p in files]
    problems = [problem for reader in readers for problem in reader.problems] + _cross_check(readers)
    patterns = _assign_ids(readers)
    if not files:
        problems.append(Problem(shown, None, "folder", "holds no pattern files (*.yaml)"))
    elif not patterns and not any(problem.is_error for problem in problems):
        problems.append(Problem(shown, None, "folder", "holds no valid patterns"))
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    return shown, patterns, problems


def validate_patterns(folder: str | Path = "patterns") -> list[Problem]:
    """Every problem in the folder's pattern files, errors and warnings, in file and line order."""
    return _scan_folder(folder)[2]


def load_patterns(folder: str | Path = "patterns") -> list[Pattern]:
    """The folder's patterns in file-name then file order; raises :class:`PatternError` on any error.

    A pattern file is a mapping: ``patterns:`` (a list), optional ``category:`` (the default for its
    patterns) and optional ``description:``. Each pattern has ``input``, ``output``, ``category`` (or the
    file default), optional ``id`` (a slug; derived from the input when absent) and optional ``paraphrases``
    (other wordings of the input; chapter 02 holds one out as the test prompt, so three or more are
    recommended). Warnings (few paraphrases, an unknown category, a long output) do not stop loading;
    :func:`validate_patterns` lists them.
    """
    shown, patterns, problems = _scan_folder(folder)
    if any(p.is_error for p in problems):
        raise PatternError(shown, problems)
    return patterns


# ---------------------------------------------------------------- summaries and CLI


def category_order(patterns: Iterable[Pattern]) -> list[str]:
    present = {p.category for p in patterns}
    return [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))


def pattern_counts(patterns: Sequence[Pattern]):
    """A DataFrame with one row per category: ``patterns`` and ``paraphrases`` counts."""
    import pandas as pd

    rows = [
        {
            "category": c,
            "patterns": sum(p.category == c for p in patterns),
            "paraphrases": sum(len(p.paraphrases) for p in patterns if p.category == c),
        }
        for c in category_order(patterns)
    ]
    return pd.DataFrame(rows, columns=["category", "patterns", "paraphrases"])


def patterns_table(patterns: Sequence[Pattern]):
    """A DataFrame with one row per pattern: id, category, input, output, paraphrase count, source."""
    import pandas as pd

    rows = [
        {
            "id": p.id,
            "category": p.category,
            "input": p.input,
            "output": p.output,
            "paraphrases": len(p.paraphrases),
            "source": p.source,
        }
        for p in patterns
    ]
    return pd.DataFrame(rows, columns=["id", "category", "input", "output", "paraphrases", "source"])


def check_patterns_cli(folder: str | Path = "patterns") -> int:
    """Print every problem and a summary; return 1 when there are errors, else 0 (``slmlab patterns validate``)."""
    shown, patterns, problems = _scan_folder(folder)
    for problem in problems:
        print(problem)
    errors = sum(p.is_error for p in problems)
    counts = ", ".join(f"{row.category} {row.patterns}" for row in pattern_counts(patterns).itertuples())
    files = len({p.source.rsplit(":", 1)[0] for p in patterns})
    print(
        f"{shown}: {len(patterns)} patterns in {files} file(s) ({counts or 'none'}); "
        f"{errors} error(s), {len(problems) - errors} warning(s)"
    )
    return 1 if errors else 0
