"""Chapter 02's knowledge augmentation: more phrasings of each fact (question forms, declarative statements).

:func:`load_augmentation` reads a template file (``patterns/augmentation/facts.yaml``) with file:line errors;
:func:`phrasings` renders its templates for one pattern. Chapter 02 adds a seeded sample of them to the training
rows, never one that is (or nearly is) the pattern's held-out test prompt.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from slmlab.errors import SlmLabError

PATTERN_SLOTS = ("input", "output")  # every template may use the pattern's own fields
FILE_KEYS = ("category", "description", "slots", "templates", "facts")
NEAR_COPY = 0.7  # word-set overlap (Jaccard) with the held-out prompt above which a phrasing is dropped


class AugmentationError(SlmLabError):
    """A template file that cannot be used; the message names the file, line and field or slot."""


@dataclass(frozen=True)
class Template:
    text: str
    line: int


@dataclass(frozen=True)
class KnowledgeTemplates:
    """The templates of one file and the slot values of each pattern they apply to (by pattern id)."""

    path: str
    category: str
    slots: tuple[str, ...]
    templates: tuple[Template, ...]
    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    fact_lines: dict[str, int] = field(default_factory=dict)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node, where: str, name: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise AugmentationError(f"{where}:{_line(node)}: {name}: expected a non-empty string")
    return str(node.value)


def _sequence(node: yaml.Node, where: str, name: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise AugmentationError(f"{where}:{_line(node)}: {name}: expected a non-empty list")
    return list(node.value)


def template_slots(text: str) -> list[str]:
    """The ``{slot}`` names a template uses, in order."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as error:  # an unmatched brace
        raise AugmentationError(str(error)) from error


def _templates(node: yaml.Node, where: str, known: tuple[str, ...]) -> tuple[Template, ...]:
    templates = []
    for item in _sequence(node, where, "templates"):
        text = _scalar(item, where, "templates")
        try:
            used = template_slots(text)
        except AugmentationError as error:
            raise AugmentationError(f"{where}:{_line(item)}: templates: {error} in {text!r}") from error
        for slot in used:
            if slot not in known:
                raise AugmentationError(
                    f"{where}:{_line(item)}: templates: unknown slot {{{slot}}} in {text!r}; known slots: {', '.join(known)}"
                )
        templates.append(Template(text, _line(item)))
    return tuple(templates)


def _facts(node: yaml.Node, where: str, slots: tuple[str, ...]) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    if not isinstance(node, yaml.MappingNode) or not node.value:
        raise AugmentationError(f"{where}:{_line(node)}: facts: expected a mapping of pattern id to slot values")
    facts, lines = {}, {}
    for key, value in node.value:
        pattern_id = _scalar(key, where, "facts")
        if not isinstance(value, yaml.MappingNode):
            raise AugmentationError(f"{where}:{_line(value)}: facts.{pattern_id}: expected a mapping of slot to text")
        given = {_scalar(k, where, f"facts.{pattern_id}"): (k, v) for k, v in value.value}
        for name, (slot_key, _) in given.items():
            if name not in slots:
                raise AugmentationError(
                    f"{where}:{_line(slot_key)}: facts.{pattern_id}: unknown slot {name!r}; declared slots: {', '.join(slots)}"
                )
        missing = [name for name in slots if name not in given]
        if missing:
            raise AugmentationError(f"{where}:{_line(key)}: facts.{pattern_id}: missing slot(s) {', '.join(missing)}")
        facts[pattern_id] = {name: _scalar(v, where, f"facts.{pattern_id}.{name}") for name, (_, v) in given.items()}
        lines[pattern_id] = _line(key)
    return facts, lines


def load_augmentation(path: str | Path) -> KnowledgeTemplates:
    """Read and check a template file: every ``{slot}`` a template uses must be declared or a pattern field."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise AugmentationError(f"{where}: no such augmentation file")
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        raise AugmentationError(f"{where}:{mark.line + 1 if mark else '?'}: not valid YAML ({error.problem})") from error
    if not isinstance(root, yaml.MappingNode):
        raise AugmentationError(f"{where}:1: expected a mapping with {', '.join(FILE_KEYS)}")
    items = {_scalar(key, where, "key"): (key, value) for key, value in root.value}
    for name, (key, _) in items.items():
        if name not in FILE_KEYS:
            raise AugmentationError(f"{where}:{_line(key)}: {name}: unknown key; expected {', '.join(FILE_KEYS)}")
    for name in ("category", "slots", "templates", "facts"):
        if name not in items:
            raise AugmentationError(f"{where}:1: {name}: missing")
    slots = tuple(_scalar(node, where, "slots") for node in _sequence(items["slots"][1], where, "slots"))
    templates = _templates(items["templates"][1], where, slots + PATTERN_SLOTS)
    facts, lines = _facts(items["facts"][1], where, slots)
    return KnowledgeTemplates(where, _scalar(items["category"][1], where, "category"), slots, templates, facts, lines)


def phrasings(templates: KnowledgeTemplates, pattern_id: str, input_text: str, output: str) -> list[str]:
    """Every template rendered with one pattern's slot values (empty when the file has no entry for it)."""
    values = templates.facts.get(pattern_id)
    if values is None:
        return []
    slots = {**values, "input": input_text, "output": output}
    return [template.text.format(**slots) for template in templates.templates]


def unknown_facts(templates: KnowledgeTemplates, pattern_ids: set[str]) -> list[str]:
    """``file:line: id`` of each entry whose pattern id does not exist."""
    return [
        f"{templates.path}:{templates.fact_lines[pid]}: facts.{pid}: no pattern has this id"
        for pid in templates.facts
        if pid not in pattern_ids
    ]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.casefold()))


def word_overlap(left: str, right: str) -> float:
    """Jaccard overlap of the two texts' word sets (0 to 1)."""
    a, b = _words(left), _words(right)
    return len(a & b) / len(a | b) if a | b else 1.0
