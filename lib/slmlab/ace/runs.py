"""ACE runs: baseline, ACE offline (adapt on train, evaluate the frozen playbook on test) and ACE online
(adapt while evaluating), over several epochs, with results appended as they come so an interrupted run
resumes at the first missing sample.

One run writes one folder (default ``results/ace/<model>/<task>/<mode>/`` of the artifacts tree, see
:func:`~slmlab.settings.artifacts_root`):

- ``results.csv``     one row per evaluated test sample and epoch (the columns are :data:`CORE_COLUMNS`, then
                      :data:`DETAIL_COLUMNS`, then :data:`ACE_COLUMNS` in ACE modes, then ``parse`` —
                      strict, lenient or failed — and in ACE modes ``bullets``, the ids shown to the model);
- ``adaptation.csv``  the same columns for the training samples ACE offline learned from;
- ``playbook_epoch{N}.jsonl`` the playbook after epoch N; ``playbook.jsonl`` / ``state.json`` the
                      playbook so far and how far adaptation got (for resuming);
- ``operations.jsonl`` every delta operation with its epoch and the sample that caused it;
- ``stats.json``      per-epoch accuracy, per-step latency, parse failures, playbook size and operations, peak
                      memory; ``config.json``.

Epoch 0 is always the baseline (empty playbook); epoch N ≥ 1 evaluates after N adaptation passes.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.ace.curation import CurationConfig, Curator, retrieve
from slmlab.ace.embeddings import load_embedder
from slmlab.ace.playbook import Playbook
from slmlab.ace.roles import (
    GeneratorReply,
    generator_messages,
    parse_generator_reply,
    parse_reflection,
    reflector_prompt,
    used_bullets,
)
from slmlab.environment import peak_rss_mb
from slmlab.errors import SlmLabError
from slmlab.generation import DecodingConfig, Prompt
from slmlab.io import atomic_write_json, atomic_write_text
from slmlab.metrics import latency_percentiles
from slmlab.models.registry import DEFAULT_MODEL
from slmlab.settings import results_dir
from slmlab.tasks import TaskItem, load_tasks, resolve_task, score_answer, task_split

MODES = ("baseline", "ace", "ace-online")
DOMAINS = ("finance", "medical", "iot")
CORE_COLUMNS = ("model_id", "task_name", "domain", "mode", "sample_id", "gold", "pred", "latency_ms")
DETAIL_COLUMNS = ("question", "context", "correct")
ACE_COLUMNS = ("reflection_latency_ms", "reflected", "epoch")


class AceRunError(SlmLabError):
    """A run that cannot start: unknown mode or task, or settings that contradict each other."""


@dataclass(frozen=True)
class AceConfig:
    """One ACE run. ``task`` is a domain (``finance``, ``medical``, ``iot``: its train and test sets), a
    registry name or a JSON/JSONL path (then used for both adaptation and evaluation unless
    ``train_task`` names another)."""

    model_id: str = DEFAULT_MODEL
    task: str = "finance"
    mode: str = "ace"
    epochs: int = 1
    limit: int | None = None  # first N samples of each split
    seed: int = 0
    train_task: str | None = None
    use_labels: bool = True  # False: the Reflector judges answers itself (no gold answers)
    batch_size: int = 8
    answer_tokens: int = 24
    reflection_tokens: int = 40
    top_k: int = 3
    token_budget: int = 2048
    dedup_threshold: float = 0.9
    prune_min_harmful: int = 2
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AceRunError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.epochs < 0 or (self.limit is not None and self.limit < 1) or self.batch_size < 1:
            raise AceRunError("epochs must be >= 0, limit >= 1 (or None) and batch_size >= 1")

    @property
    def curation(self) -> CurationConfig:
        return CurationConfig(self.dedup_threshold, self.prune_min_harmful, self.token_budget, self.top_k)

    @property
    def epoch_count(self) -> int:
        """Epochs evaluated: the baseline only in ``baseline`` mode, else 0..epochs."""
        return 1 if self.mode == "baseline" else self.epochs + 1

    def columns(self) -> tuple[str, ...]:
        extra = ACE_COLUMNS if self.mode != "baseline" else ()
        shown = ("bullets",) if self.mode != "baseline" else ()
        return CORE_COLUMNS + DETAIL_COLUMNS + extra + ("parse",) + shown


def model_slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_id).name if "/" in model_id else model_id).strip("_")


def task_sets(config: AceConfig) -> tuple[str, str, list[TaskItem], list[TaskItem]]:
    """(task name, domain, train items, test items), each cut to ``config.limit``."""
    if config.task in DOMAINS:
        train_spec, test_spec = task_split(config.task)
        name, domain = config.task, test_spec.domain
    else:
        test_spec = resolve_task(config.task)
        train_spec = resolve_task(config.train_task) if config.train_task else test_spec
        name, domain = test_spec.name, test_spec.domain
    train, test = load_tasks(train_spec.full_path()), load_tasks(test_spec.full_path())
    if config.limit:
        train, test = train[: config.limit], test[: config.limit]
    return name, domain, train, test


def default_run_dir(config: AceConfig, root: str | Path | None = None, quick: bool | None = None) -> Path:
    """``<root>/<model>/<task>/<mode>``; ``root`` defaults to ``results/ace`` of the mode's artifacts tree
    (:func:`~slmlab.settings.artifacts_root`; ``quick`` defaults to ``SLMLAB_QUICK``)."""
    name = config.task if config.task in DOMAINS else Path(config.task).stem
    return Path(root or results_dir("ace", quick=quick)) / model_slug(config.model_id) / name / config.mode


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA memory when a GPU is in use), in MB."""
    peak_mb = peak_rss_mb()
    try:
        import torch

        if torch.cuda.is_available():
            peak_mb = max(peak_mb, torch.cuda.max_memory_allocated() / 2**20)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return round(peak_mb, 1)


# --- results files ------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def append_rows(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Append rows (and the header for a new file), flushed at once so Ctrl+C loses nothing written."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()


def rewrite_rows(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Replace a results file atomically (used to drop rows whose playbook update was not saved)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _StepTimes:
    generation_ms: float = 0.0
    reflection_ms: float = 0.0
    curation_ms: float = 0.0


class AceRunner:
    """Runs one :class:`AceConfig` into one folder; call :meth:`run`."""

    def __init__(self, config: AceConfig, run_dir: str | Path | None = None, model=None, progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(config)
        self.progress = progress
        self.task_name, self.domain, self.train, self.test = task_sets(config)
        self._model = model
        self.playbook = Playbook()
        self.stats: dict[str, dict] = {}
        self.operations: Counter = Counter()
        self._embedder = None
        self._curator: Curator | None = None
        self._reflection_parses: Counter = Counter()

    # --- lazily loaded parts ----------------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            from slmlab.models import load_model

            self._model = load_model(self.config.model_id, backend=self.config.backend)
        return self._model

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = load_embedder()
        return self._embedder

    @property
    def curator(self) -> Curator:
        if self._curator is None:
            self._curator = Curator(self.config.curation, self.embedder, self.model.count_tokens)
        return self._curator

    # --- paths --------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.run_dir / name

    def _prepare_dir(self) -> None:
        """Create the folder; a folder left by a run with other settings is emptied (its results would
        not be comparable), one with the same settings is resumed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved = self.path("config.json")
        wanted = asdict(self.config)
        if saved.is_file() and json.loads(saved.read_text()) != wanted:
            changed = sorted(k for k, v in json.loads(saved.read_text()).items() if wanted.get(k) != v)
            print(f"{self.run_dir}: settings changed ({', '.join(changed)}); starting this run over")
            for old in self.run_dir.iterdir():
                if old.is_file():
                    old.unlink()
        if self.path("stats.json").is_file():
            self.stats = json.loads(self.path("stats.json").read_text())
        atomic_write_json(saved, wanted)

    # --- the run -------------------------------------------------------------------------------------
    def run(self) -> Path:
        """Run every epoch (skipping what is already on disk) and return the results CSV path."""
        self._prepare_dir()
        for epoch in range(self.config.epoch_count):
            self._run_epoch(epoch)
        atomic_write_json(self.path("summary.json"), self.summary())
        return self.path("results.csv")

    def _run_epoch(self, epoch: int) -> None:
        times = _StepTimes()
        online = self.config.mode == "ace-online"
        if epoch == 0:
            self.playbook = Playbook()
            self._pass(self.test, epoch, "eval", adapt=False, csv_name="results.csv", times=times)
        elif online:
            self._load_playbook(epoch)
            self._pass(self.test, epoch, "online", adapt=True, csv_name="results.csv", times=times)
            self.playbook.save(self.path(f"playbook_epoch{epoch}.jsonl"))
        else:
            self._load_playbook(epoch)
            if not self.path(f"playbook_epoch{epoch}.jsonl").is_file():
                self._pass(self.train, epoch, "adapt", adapt=True, csv_name="adaptation.csv", times=times)
                self.playbook.save(self.path(f"playbook_epoch{epoch}.jsonl"))
            self._pass(self.test, epoch, "eval", adapt=False, csv_name="results.csv", times=times)
        self._record_epoch(epoch, times)

    def _load_playbook(self, epoch: int) -> None:
        """The playbook to continue from: this epoch's finished one, the one saved mid-epoch, or the
        previous epoch's."""
        for candidate in (f"playbook_epoch{epoch}.jsonl", "playbook.jsonl", f"playbook_epoch{epoch - 1}.jsonl"):
            if candidate == "playbook.jsonl" and self._state().get("epoch") != epoch:
                continue
            if self.path(candidate).is_file():
                self.playbook = Playbook.load(self.path(candidate))
                for problem in self.playbook.problems:
                    print(f"warning: {problem}")
                break
        else:
            self.playbook = Playbook()
        self.playbook.reserve(self._logged_ids())

    def _logged_ids(self) -> list[str]:
        """Every bullet id the operations log mentions, so a reloaded playbook never reuses one."""
        path = self.path("operations.jsonl")
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return [i for op in map(json.loads, lines) for i in [op["bullet_id"], *op["merge_ids"]] if i]

    def _state(self) -> dict:
        path = self.path("state.json")
        return json.loads(path.read_text()) if path.is_file() else {}

    def _done_ids(self, csv_name: str, epoch: int, phase: str, adapt: bool) -> set[str]:
        """Sample ids already recorded for this epoch. While adapting, rows written after the last saved
        playbook are dropped so their lessons are learned again, not lost."""
        path = self.path(csv_name)
        rows = read_rows(path)
        mine = [r for r in rows if str(r.get("epoch", "0")) == str(epoch)]
        if adapt:
            state = self._state()
            saved = state.get("done", 0) if (state.get("epoch"), state.get("phase")) == (epoch, phase) else 0
            if len(mine) > saved:
                dropped = {id(r) for r in mine[saved:]}
                rewrite_rows(path, [r for r in rows if id(r) not in dropped], self.config.columns())
                mine = mine[:saved]
        return {r["sample_id"] for r in mine}

    def _pass(self, items: list[TaskItem], epoch: int, phase: str, adapt: bool, csv_name: str, times: _StepTimes) -> None:
        done = self._done_ids(csv_name, epoch, phase, adapt)
        todo = [item for item in items if item.id not in done]
        if not todo:
            return
        desc = f"{self.task_name} {self.config.mode} epoch {epoch} {phase}"
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc,
                   unit="sample", disable=not self.progress)
        for batch in _chunks(todo, self.config.batch_size):
            rows = self._batch(batch, epoch, adapt, times)
            append_rows(self.path(csv_name), rows, self.config.columns())
            if adapt:
                self.playbook.save(self.path("playbook.jsonl"))
                state = self._state()
                done_now = state.get("done", 0) if (state.get("epoch"), state.get("phase")) == (epoch, phase) else 0
                atomic_write_json(self.path("state.json"), {"epoch": epoch, "phase": phase, "done": done_now + len(batch)})
            bar.update(len(batch))
        bar.close()

    # --- one batch: generate, score, (reflect, curate) ------------------------------------------------
    def _batch(self, batch: Sequence[TaskItem], epoch: int, adapt: bool, times: _StepTimes) -> list[dict]:
        shown = [self._retrieve(item) for item in batch]
        started = time.perf_counter()
        raws = self._generate([generator_messages(i, s) for i, s in zip(batch, shown)], "Answer:", self.config.answer_tokens)
        generation_ms = (time.perf_counter() - started) * 1000
        times.generation_ms += generation_ms
        replies = [parse_generator_reply(item, raw) for item, raw in zip(batch, raws)]
        correct = [score_answer(item, reply.answer) if reply.answer else False for item, reply in zip(batch, replies)]
        reflection_ms = 0.0
        if adapt:
            reflection_ms = self._reflect_and_curate(batch, replies, correct, shown, epoch, times)
        return [
            self._row(item, reply, ok, generation_ms / len(batch), reflection_ms / len(batch), adapt, epoch, bullets)
            for item, reply, ok, bullets in zip(batch, replies, correct, shown)
        ]

    def _retrieve(self, item: TaskItem):
        if not self.playbook.bullets:
            return []
        return retrieve(self.playbook, self.embedder, f"{item.question} {item.context}", self.config.top_k)

    def _generate(self, prompts: Sequence[Prompt], prefix: str, max_new_tokens: int) -> list[str]:
        """Batched greedy generation with the reply started by ``prefix`` (e.g. ``Answer:``)."""
        model = self.model
        texts = [model.render(p) + prefix for p in prompts]
        decoding = DecodingConfig(max_new_tokens=max_new_tokens, seed=self.config.seed, batch_size=self.config.batch_size)
        return model.generate(texts, decoding, chat=False)

    def _reflect_and_curate(
        self, batch, replies: Sequence[GeneratorReply], correct, shown, epoch: int, times: _StepTimes
    ) -> float:
        labels = self.config.use_labels
        started = time.perf_counter()
        prompts = [reflector_prompt(item, reply, labels) for item, reply in zip(batch, replies)]
        raws = self._generate(prompts, "Lesson:" if labels else "Correct:", self.config.reflection_tokens)
        reflection_ms = (time.perf_counter() - started) * 1000
        times.reflection_ms += reflection_ms
        started = time.perf_counter()
        reflections = []
        for item, reply, ok, bullets, raw in zip(batch, replies, correct, shown, raws):
            used = used_bullets(reply, bullets)
            reflection = parse_reflection(item, reply, ("Lesson:" if labels else "Correct:") + raw, ok if labels else None, used)
            reflections.append(reflection)
            operations = self.curator.curate(self.playbook, reflection.lessons, reflection.tags)
            self._log_operations(operations, epoch, item.id)
        times.curation_ms += (time.perf_counter() - started) * 1000
        self._reflection_parses.update(r.parse for r in reflections)
        return reflection_ms

    def _log_operations(self, operations, epoch: int, sample_id: str) -> None:
        if not operations:
            return
        self.operations.update(op.op for op in operations)
        lines = "".join(json.dumps({"epoch": epoch, "sample_id": sample_id, **asdict(op)}) + "\n" for op in operations)
        with self.path("operations.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(lines)

    def _row(self, item: TaskItem, reply: GeneratorReply, correct: bool, latency_ms: float, reflection_ms: float,
             reflected: bool, epoch: int, shown) -> dict:
        row = {
            "model_id": self.config.model_id,
            "task_name": self.task_name,
            "domain": item.domain,
            "mode": self.config.mode,
            "sample_id": item.id,
            "gold": item.answer,
            "pred": reply.answer,
            "latency_ms": round(latency_ms, 1),
            "question": item.question,
            "context": item.context,
            "correct": correct,
            "parse": reply.parse,
        }
        if self.config.mode != "baseline":
            row.update(reflection_latency_ms=round(reflection_ms, 1), reflected=reflected, epoch=epoch,
                       bullets=" ".join(b.id for b in shown))
        return row

    # --- statistics ------------------------------------------------------------------------------------
    def _record_epoch(self, epoch: int, times: _StepTimes) -> None:
        rows = [r for r in read_rows(self.path("results.csv")) if str(r.get("epoch", "0")) == str(epoch)]
        entry = self.stats.get(str(epoch), {})
        if times.generation_ms or not entry:  # keep the timings of a run resumed after this epoch ended
            entry = {
                "epoch": epoch,
                "samples": len(rows),
                "accuracy": round(100 * sum(r["correct"] == "True" for r in rows) / max(len(rows), 1), 2),
                "parse_failures": sum(r["parse"] == "failed" for r in rows),
                "generation_ms": round(times.generation_ms, 1),
                "reflection_ms": round(times.reflection_ms, 1),
                "curation_ms": round(times.curation_ms, 1),
                "latency_ms": latency_percentiles([float(r["latency_ms"]) for r in rows]),
                "reflection_parses": dict(self._reflection_parses),
                "playbook_bullets": len(self.playbook),
                "playbook_tokens": self.model.count_tokens(self.playbook.to_text()) if self.playbook.bullets else 0,
                "operations": dict(self.operations),
                "peak_memory_mb": peak_memory_mb(),
            }
        self.stats[str(epoch)] = entry
        self.operations, self._reflection_parses = Counter(), Counter()
        atomic_write_json(self.path("stats.json"), self.stats)

    def summary(self) -> dict:
        epochs = [self.stats[k] for k in sorted(self.stats, key=int)]
        return {
            "config": asdict(self.config),
            "task_name": self.task_name,
            "domain": self.domain,
            "accuracy_by_epoch": {e["epoch"]: e["accuracy"] for e in epochs},
            "samples": len(self.test),
        }


def run_ace(config: AceConfig, run_dir: str | Path | None = None, model=None, progress: bool = True) -> Path:
    """Run ``config`` (resuming what a previous run left) and return the results CSV."""
    return AceRunner(config, run_dir, model=model, progress=progress).run()


def config_from(options: dict) -> AceConfig:
    """An :class:`AceConfig` from a dict (YAML, CLI); unknown keys are refused by name."""
    known = {f.name for f in fields(AceConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AceRunError(f"Unknown ACE setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(AceConfig(), **options)
