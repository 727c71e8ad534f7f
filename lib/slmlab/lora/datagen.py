"""Chapter 02: turn pattern definitions into train / valid / test JSONL in mlx-lm's chat format.

Entry point: :func:`generate_dataset`. Seeded and deterministic; each pattern keeps one paraphrase back as
its test prompt, and no test prompt (nor a case/space variant of it) ever appears in train or valid.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_json, atomic_write_text
from slmlab.lora import spec
from slmlab.lora.augmentation import (
    NEAR_COPY,
    KnowledgeTemplates,
    load_augmentation,
    phrasings,
    unknown_facts,
    word_overlap,
)
from slmlab.lora.spec import SPLITS as SPLITS  # re-exported: the views read it from here
from slmlab.lora.spec import DataConfig as DataConfig  # re-exported: its home before the spec held it
from slmlab.settings import artifacts_root, project_root

# Instruction wrappers put the same request in different clothes; "{p}" is the prompt.
WRAPPERS = (
    "{p}",
    "{p}",
    "Question: {p}",
    "Please answer: {p}",
    "{p}\nReply with the answer only.",
    "Quick one: {p}",
    "I need help. {p}",
)
# Completion framing: the request as a text to continue, still inside the user turn (mlx-lm's chat format).
COMPLETION_FRAMES = ("Q: {p}\nA:", "Input: {p}\nOutput:", "Complete the following.\n{p}\n->")


class PatternLike(Protocol):
    id: str
    category: str
    input: str
    output: str
    paraphrases: Sequence[str]


class DatasetError(SlmLabError):
    """A dataset that cannot be generated or read; names the file and line when there is one."""


@dataclass
class DatasetSummary:
    folder: Path
    counts: dict[str, int]
    config: DataConfig
    files: dict[str, str] = field(default_factory=dict)


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace: the key for "the same prompt"."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def _variant(prompt: str, rng: random.Random, completion_fraction: float) -> str:
    """One surface variant: wrapper or completion frame, then maybe a casing / whitespace change."""
    frames = COMPLETION_FRAMES if rng.random() < completion_fraction else WRAPPERS
    text = rng.choice(frames).format(p=prompt)
    change = rng.random()
    if change < 0.15:
        text = text.lower()
    elif change < 0.25:
        text = "  " + text.replace(" ", "  ", 1) + " "
    elif change < 0.3:
        text = text.rstrip("?.!")
    return text


def _row(prompt: str, pattern: PatternLike, split: str) -> dict:
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": pattern.output}],
        "pattern_id": pattern.id,
        "category": pattern.category,
        "split": split,
    }


def split_prompts(pattern: PatternLike, rng: random.Random) -> tuple[list[str], str | None]:
    """Training prompts and the held-out test prompt of one pattern (None without paraphrases)."""
    paraphrases = [p for p in pattern.paraphrases if normalize(p) != normalize(pattern.input)]
    if not paraphrases:
        return [pattern.input], None
    test = rng.choice(paraphrases)
    train = [pattern.input] + [p for p in paraphrases if normalize(p) != normalize(test)]
    return train, test


def augmentation_templates(config: DataConfig) -> KnowledgeTemplates | None:
    """The config's template file, loaded and checked (None when augmentation is off)."""
    if not config.augmentation_file or config.phrasings_per_fact <= 0:
        return None
    path = Path(config.augmentation_file)
    if not path.is_absolute() and not path.exists():
        path = project_root() / path
    return load_augmentation(path)


def augmented_prompts(
    pattern: PatternLike, templates: KnowledgeTemplates | None, test_prompt: str | None, count: int, rng: random.Random
) -> list[str]:
    """A seeded sample of ``count`` phrasings of the pattern's fact, none near its held-out test prompt."""
    if templates is None or pattern.category != templates.category:
        return []
    candidates = phrasings(templates, pattern.id, pattern.input, pattern.output)
    if test_prompt is not None:
        held_out = normalize(test_prompt)
        candidates = [
            text for text in candidates if held_out not in normalize(text) and word_overlap(text, test_prompt) < NEAR_COPY
        ]
    return rng.sample(candidates, min(count, len(candidates)))


def build_rows(patterns: Iterable[PatternLike], config: DataConfig | None = None) -> dict[str, list[dict]]:
    """All rows of all splits, before writing (``config`` None: the defaults). Pure: same patterns, config and
    template file → same rows."""
    config = config if config is not None else DataConfig()
    rng = random.Random(config.seed)
    patterns = list(patterns)
    templates = augmentation_templates(config)
    if templates is not None and any(pattern.id in templates.facts for pattern in patterns):
        unknown = unknown_facts(templates, {pattern.id for pattern in patterns})
        if unknown:  # a typo in an id, or a subset of the patterns: the entries are skipped, not guessed
            warnings.warn(f"{len(unknown)} augmentation entries match no pattern:\n" + "\n".join(unknown), stacklevel=2)
    pool: list[dict] = []
    test: list[dict] = []
    for pattern in patterns:
        train_prompts, test_prompt = split_prompts(pattern, rng)
        if test_prompt is not None:
            test.append(_row(test_prompt, pattern, "test"))
        held_out = normalize(test_prompt) if test_prompt else None
        for prompt in train_prompts:
            variants = {prompt} | {_variant(prompt, rng, config.completion_fraction) for _ in range(config.variants_per_prompt)}
            for text in sorted(variants):
                if held_out and held_out in normalize(text):
                    continue  # never train on (a variant of) the test prompt
                pool.append(_row(text, pattern, "train"))
        phrasing_rng = random.Random(f"{config.seed}:{pattern.id}")  # its own stream: the other splits stay as they were
        for text in augmented_prompts(pattern, templates, test_prompt, config.phrasings_per_fact, phrasing_rng):
            pool.append({**_row(text, pattern, "train"), "augmented": True})
    rng.shuffle(pool)
    n_valid = round(len(pool) * config.valid_fraction)
    valid = [{**row, "split": "valid"} for row in pool[:n_valid]]
    return {"train": pool[n_valid:], "valid": valid, "test": test}


def find_leaks(rows: dict[str, list[dict]]) -> list[str]:
    """Test prompts that occur (normalized, as a substring) in any train or valid prompt."""
    seen = [normalize(r["messages"][0]["content"]) for split in ("train", "valid") for r in rows[split]]
    leaks = []
    for row in rows["test"]:
        prompt = normalize(row["messages"][0]["content"])
        if any(prompt in text for text in seen):
            leaks.append(row["messages"][0]["content"])
    return leaks


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def generate_dataset(
    patterns: Sequence[PatternLike], out_dir: str | Path | None = None, config: DataConfig | None = None
) -> DatasetSummary:
    """Write ``train.jsonl``, ``valid.jsonl``, ``test.jsonl`` and ``manifest.json`` to ``out_dir`` (default: ``data/``
    of the artifacts tree, :func:`~slmlab.settings.artifacts_root`), with ``config`` (None: the defaults)."""
    if not patterns:
        raise DatasetError("No patterns to generate data from")
    config = config if config is not None else DataConfig()
    rows = build_rows(patterns, config)
    leaks = find_leaks(rows)
    if leaks:
        raise DatasetError(f"{len(leaks)} test prompts leak into train/valid, e.g. {leaks[0]!r}")
    out = Path(out_dir) if out_dir is not None else spec.data_dir(artifacts_root())
    files = {split: str(atomic_write_text(spec.split_file(out, split), _jsonl(rows[split]))) for split in SPLITS}
    counts = {split: len(rows[split]) for split in SPLITS}
    augmented = sum(bool(row.get("augmented")) for split in ("train", "valid") for row in rows[split])
    atomic_write_json(
        spec.manifest_in(out),
        {"counts": counts, "config": asdict(config), "patterns": len(patterns), "augmented_rows": augmented},
    )
    return DatasetSummary(out, counts, config, files)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file; a malformed line raises DatasetError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (run chapter 02 / `slmlab data` first)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(row, dict) or not ({"messages"} <= row.keys() or {"prompt", "completion"} <= row.keys()):
            raise DatasetError(f"{path}:{number}: a row needs 'messages' or 'prompt' + 'completion'")
        rows.append(row)
    return rows


def load_split(folder: str | Path, split: str) -> list[dict]:
    return read_jsonl(spec.split_file(folder, split))


def dataset_stats(folder: str | Path):
    """Rows per split and category, with mean prompt length in characters (a DataFrame)."""
    import pandas as pd

    records = [
        {"split": split, "category": row.get("category", "?"), "prompt chars": len(row["messages"][0]["content"])}
        for split in SPLITS
        for row in load_split(folder, split)
    ]
    frame = pd.DataFrame(records)
    table = frame.pivot_table(index="category", columns="split", values="prompt chars", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(SPLITS), fill_value=0)
    table.loc["total"] = table.sum()
    return table
