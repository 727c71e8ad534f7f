"""The Curator's side of the playbook: turning lessons into delta operations, then refining — merging
near-duplicates found by embeddings, pruning bullets that hurt more than they help, and enforcing a
token budget — plus top-k retrieval of the bullets a question gets to see.

Every change is a :class:`DeltaOp`; the playbook is never rewritten wholesale.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slmlab.ace.playbook import Bullet, DeltaOp, Playbook
from slmlab.ace.spec import EXAMPLES as EXAMPLES  # the settings live in the chapter's spec; kept importable here
from slmlab.ace.spec import CurationConfig as CurationConfig
from slmlab.embeddings import TextEmbedder

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Lesson:
    """One bullet the Reflector proposes."""

    section: str
    content: str


def _score(bullet: Bullet) -> tuple[int, float]:
    return bullet.helpful - bullet.harmful, bullet.updated


def duplicate_merges(
    playbook: Playbook, embedder: TextEmbedder, threshold: float, exact_sections: Sequence[str] = ()
) -> list[DeltaOp]:
    """MERGE operations for groups of bullets in one section whose contents are at least ``threshold``
    cosine-similar (``exact_sections`` are left alone: their repeats are refused when added). The oldest
    bullet of a group keeps its id; the best-scored content survives."""
    merges = []
    for section in playbook.sections():
        if section in exact_sections:
            continue
        bullets = [b for b in playbook.bullets.values() if b.section == section]
        if len(bullets) < 2:
            continue
        similar = embedder.similarity([b.content for b in bullets], [b.content for b in bullets]) >= threshold
        taken: set[int] = set()
        for i in range(len(bullets)):
            if i in taken:
                continue
            group = [j for j in range(i, len(bullets)) if j not in taken and similar[i, j]]
            taken.update(group)
            if len(group) > 1:
                best = max((bullets[j] for j in group), key=_score)
                merges.append(DeltaOp("MERGE", content=best.content, merge_ids=tuple(bullets[j].id for j in group)))
    return merges


def prune_removals(playbook: Playbook, min_harmful: int) -> list[DeltaOp]:
    """REMOVE operations for bullets whose harmful count outweighs the helpful one (and is at least
    ``min_harmful``, so one unlucky use does not delete a new bullet)."""
    return [
        DeltaOp("REMOVE", bullet_id=b.id) for b in playbook.bullets.values() if b.harmful > b.helpful and b.harmful >= min_harmful
    ]


def budget_removals(playbook: Playbook, count_tokens: TokenCounter, budget: int) -> list[DeltaOp]:
    """REMOVE operations, lowest score (helpful − harmful, then least recently updated) first, until the
    playbook's text rendering fits in ``budget`` tokens."""
    trial = Playbook(dict(playbook.bullets))
    removals = []
    for bullet in sorted(playbook.bullets.values(), key=_score):
        if not trial.bullets or count_tokens(trial.to_text()) <= budget:
            break
        removal = DeltaOp("REMOVE", bullet_id=bullet.id)
        trial.apply(removal)
        removals.append(removal)
    return removals


def retrieve(playbook: Playbook, embedder: TextEmbedder, query: str, k: int) -> list[Bullet]:
    """The ``k`` bullets most similar to ``query`` (cosine of MiniLM embeddings), best first."""
    if k <= 0 or not playbook.bullets:
        return []
    bullets = list(playbook.bullets.values())
    similarity = embedder.similarity([query], [b.content for b in bullets])[0]
    order = sorted(range(len(bullets)), key=lambda i: (-float(similarity[i]), bullets[i].id))
    return [bullets[i] for i in order[:k]]


@dataclass
class Curator:
    """Applies the Reflector's verdicts and lessons to a playbook as delta operations."""

    config: CurationConfig
    embedder: TextEmbedder
    count_tokens: TokenCounter
    operations: Counter = field(default_factory=Counter)  # operations applied so far, by type

    def curate(
        self,
        playbook: Playbook,
        lessons: Sequence[Lesson],
        tags: Sequence[tuple[str, bool]] = (),
        now: float | None = None,
    ) -> list[DeltaOp]:
        """Tag bullets, ADD new lessons, then refine (merge duplicates, prune, fit the budget).
        Returns the operations applied, in order."""
        for bullet_id, helpful in tags:
            if bullet_id in playbook.bullets:
                playbook.tag(bullet_id, helpful)
        existing = {b.content.casefold() for b in playbook.bullets.values()}
        applied = []
        for lesson in lessons:
            if lesson.content.strip().casefold() in existing:
                continue
            existing.add(lesson.content.strip().casefold())
            added = playbook.apply(DeltaOp("ADD", section=lesson.section, content=lesson.content), now)
            applied.append(DeltaOp("ADD", section=added.section, content=added.content, bullet_id=added.id))
        applied += self.refine(playbook, now)
        self.operations.update(op.op for op in applied)
        return applied

    def refine(self, playbook: Playbook, now: float | None = None) -> list[DeltaOp]:
        """Merge near-duplicates, prune harmful bullets, then enforce the token budget."""
        applied = []
        for step in (
            lambda: duplicate_merges(playbook, self.embedder, self.config.dedup_threshold, self.config.exact_sections),
            lambda: prune_removals(playbook, self.config.prune_min_harmful),
            lambda: budget_removals(playbook, self.count_tokens, self.config.token_budget),
        ):
            operations = step()
            playbook.extend(operations, now)
            applied += operations
        return applied
