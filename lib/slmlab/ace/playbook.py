"""The ACE playbook: bullets of advice with helpful/harmful counters, changed only by delta operations.

JSONL on disk (atomic save; a corrupt line is reported and skipped, the file never rewritten on load), and
import/export of the ace-agent text format (``[slug-00001] helpful=X harmful=Y :: content`` under
``## SECTION`` headers) so playbooks move between the two projects.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_text

_TEXT_LINE = re.compile(r"^\[(?P<id>[^\]]+)\]\s+helpful=(?P<helpful>\d+)\s+harmful=(?P<harmful>\d+)\s+::\s?(?P<content>.*)$")
_SECTION = re.compile(r"^##\s+(?P<name>.+?)\s*$")
OPERATIONS = ("ADD", "UPDATE", "REMOVE", "MERGE")
TEXT_SUFFIXES = (".txt", ".md")  # a playbook file with one of these is in the ace-agent text format, any other is JSONL


class PlaybookError(SlmLabError):
    """A delta operation that cannot apply, or a playbook file that cannot be read at all."""


@dataclass(frozen=True)
class Bullet:
    id: str
    section: str
    content: str
    helpful: int = 0
    harmful: int = 0
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class DeltaOp:
    """One curator edit. ADD needs section + content; UPDATE an id + content; REMOVE an id; MERGE ids
    (the first survives, absorbing the others' counters) and optionally new content."""

    op: str
    section: str = ""
    content: str = ""
    bullet_id: str = ""
    merge_ids: tuple[str, ...] = ()


def section_slug(section: str) -> str:
    """Short id prefix for a section: ``"Strategies and hard rules"`` → ``"str"``."""
    letters = re.sub(r"[^a-z]", "", section.lower())
    return (letters[:3] or "gen").ljust(3, "x")


@dataclass
class Playbook:
    bullets: dict[str, Bullet] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # lines skipped on load, "file:line: why"
    issued: dict[str, int] = field(default_factory=dict, repr=False)  # highest number given out per prefix

    # --- delta operations ---------------------------------------------------------------------
    def next_id(self, section: str) -> str:
        """A fresh id; numbers are never handed out twice, even after the highest bullet was removed."""
        prefix = section_slug(section)
        numbers = [
            int(b.id.rsplit("-", 1)[1])
            for b in self.bullets.values()
            if b.id.startswith(prefix + "-") and b.id.rsplit("-", 1)[1].isdigit()
        ]
        return f"{prefix}-{max(numbers + [self.issued.get(prefix, 0)], default=0) + 1:05d}"

    def reserve(self, bullet_ids: Iterable[str]) -> None:
        """Mark ids as used (e.g. ids of removed bullets read from an operations log) so they stay unique."""
        for bullet_id in bullet_ids:
            prefix, _, number = bullet_id.rpartition("-")
            if number.isdigit():
                self.issued[prefix] = max(self.issued.get(prefix, 0), int(number))

    def apply(self, delta: DeltaOp, now: float | None = None) -> Bullet | None:
        """Apply one delta operation; returns the bullet added or changed (None for REMOVE)."""
        now = time.time() if now is None else now
        if delta.op not in OPERATIONS:
            raise PlaybookError(f"Unknown operation '{delta.op}': use one of {', '.join(OPERATIONS)}")
        if delta.op == "ADD":
            if not delta.section.strip() or not delta.content.strip():
                raise PlaybookError("ADD needs a section and non-empty content")
            bullet = Bullet(self.next_id(delta.section), delta.section.strip(), delta.content.strip(), created=now, updated=now)
            self.reserve([bullet.id])
            self.bullets[bullet.id] = bullet
            return bullet
        if delta.op == "UPDATE":
            current = self._get(delta.bullet_id)
            if not delta.content.strip():
                raise PlaybookError(f"UPDATE of {delta.bullet_id} needs non-empty content")
            self.bullets[current.id] = replace(current, content=delta.content.strip(), updated=now)
            return self.bullets[current.id]
        if delta.op == "REMOVE":
            del self.bullets[self._get(delta.bullet_id).id]
            return None
        return self._merge(delta, now)

    def _merge(self, delta: DeltaOp, now: float) -> Bullet:
        if len(delta.merge_ids) < 2:
            raise PlaybookError("MERGE needs at least two bullet ids")
        keep, *others = [self._get(i) for i in delta.merge_ids]
        merged = replace(
            keep,
            content=delta.content.strip() or keep.content,
            helpful=keep.helpful + sum(o.helpful for o in others),
            harmful=keep.harmful + sum(o.harmful for o in others),
            updated=now,
        )
        for other in others:
            del self.bullets[other.id]
        self.bullets[keep.id] = merged
        return merged

    def tag(self, bullet_id: str, helpful: bool) -> None:
        """Count one helpful or harmful use of a bullet (the reflector's verdict)."""
        current = self._get(bullet_id)
        field_name = "helpful" if helpful else "harmful"
        self.bullets[bullet_id] = replace(current, **{field_name: getattr(current, field_name) + 1})

    def _get(self, bullet_id: str) -> Bullet:
        if bullet_id not in self.bullets:
            raise PlaybookError(f"No bullet '{bullet_id}' in the playbook")
        return self.bullets[bullet_id]

    # --- JSONL --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        lines = "".join(json.dumps(asdict(b), ensure_ascii=False) + "\n" for b in self.bullets.values())
        return atomic_write_text(path, lines)

    @classmethod
    def load(cls, path: str | Path, strict: bool = False) -> Playbook:
        """Read a JSONL playbook; good lines load, bad ones are listed in ``problems`` (file untouched), or with
        ``strict`` the first bad one is refused as ``file:line: why``."""
        path = Path(path)
        if not path.is_file():
            raise PlaybookError(f"{path}: no such playbook file")
        playbook = cls()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                bullet = Bullet(**json.loads(line))
            except (ValueError, TypeError) as exc:
                if strict:
                    raise PlaybookError(f"{path}:{number}: not a playbook bullet ({exc})") from exc
                playbook.problems.append(f"{path}:{number}: skipped ({exc})")
                continue
            playbook.bullets[bullet.id] = bullet
        return playbook

    # --- ace-agent text format ----------------------------------------------------------------
    def to_text(self) -> str:
        sections: dict[str, list[Bullet]] = {}
        for bullet in self.bullets.values():
            sections.setdefault(bullet.section, []).append(bullet)
        blocks = []
        for section, bullets in sections.items():
            lines = [f"## {section.upper()}"]
            lines += [f"[{b.id}] helpful={b.helpful} harmful={b.harmful} :: {b.content}" for b in bullets]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str = "<text>", strict: bool = False) -> Playbook:
        """Parse the ace-agent text format; lines that are neither header nor bullet are reported in ``problems``,
        or with ``strict`` the first one is refused as ``source:line: why``."""
        playbook, section = cls(), "general"
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if header := _SECTION.match(line):
                section = header["name"].lower()
            elif bullet := _TEXT_LINE.match(line):
                playbook.bullets[bullet["id"]] = Bullet(
                    bullet["id"], section, bullet["content"].strip(), int(bullet["helpful"]), int(bullet["harmful"])
                )
            elif strict:
                raise PlaybookError(f"{source}:{number}: not a bullet or section header")
            else:
                playbook.problems.append(f"{source}:{number}: not a bullet or section header")
        return playbook

    def __len__(self) -> int:
        return len(self.bullets)

    def sections(self) -> list[str]:
        return sorted({b.section for b in self.bullets.values()})

    def extend(self, deltas: Iterable[DeltaOp], now: float | None = None) -> list[Bullet | None]:
        return [self.apply(d, now) for d in deltas]


def is_text_file(path: str | Path) -> bool:
    """Whether a playbook file is in the ace-agent text format (by its suffix, :data:`TEXT_SUFFIXES`)."""
    return Path(path).suffix in TEXT_SUFFIXES


def read_playbook(path: str | Path, strict: bool = False) -> Playbook:
    """A playbook file in either format (JSONL, or ace-agent text for ``.txt``/``.md``); see :meth:`Playbook.load`."""
    path = Path(path)
    if not is_text_file(path):
        return Playbook.load(path, strict=strict)
    if not path.is_file():
        raise PlaybookError(f"{path}: no such playbook file")
    return Playbook.from_text(path.read_text(encoding="utf-8"), str(path), strict=strict)


def write_playbook(playbook: Playbook, path: str | Path) -> Path:
    """Save ``playbook`` atomically in the format the file name asks for (ace-agent text for ``.txt``/``.md``)."""
    return atomic_write_text(path, playbook.to_text()) if is_text_file(path) else playbook.save(path)
