"""ACE runs: baseline, ACE offline (adapt on train, evaluate the frozen playbook on test) and ACE online
(adapt while evaluating), over several epochs, with results appended as they come so an interrupted run
resumes at the first missing sample.

One run writes one folder (default ``results/ace/<model>/<task>/<mode>/`` of the artifacts tree, see
:func:`~slmlab.settings.artifacts_root`):

- ``results.csv``     one row per evaluated test sample and epoch (the columns are :data:`CORE_COLUMNS`, then
                      :data:`DETAIL_COLUMNS`, then :data:`ACE_COLUMNS` in ACE modes, then ``parse`` —
                      strict, lenient or failed — and in ACE modes ``bullets``, the ids shown to the model).
                      A domain has two test splits, ``generalization`` (new tables, facts, windows) and
                      ``transfer`` (what the adaptation items' feedback teaches, asked again in other words);
                      a task file has one, ``test``. ``token_f1`` and ``semantic`` (MiniLM cosine between the
                      answer and the gold) give partial credit beside exact match (``correct``);
- ``adaptation.csv``  the same columns for the training samples ACE offline learned from;
- ``playbook_epoch{N}.jsonl`` the playbook after epoch N (``playbook_epoch0.jsonl``: the saved playbook a
                      run started from); ``playbook.jsonl`` / ``state.json`` the playbook so far and how far
                      adaptation got (for resuming);
- ``operations.jsonl`` every delta operation with its epoch and the sample that caused it;
- ``stats.json``      per-epoch accuracy (overall and per split), per-step latency, parse failures of the
                      Generator and the Reflector, playbook size and operations, peak memory; ``config.json``.

The Reflector and the Curator run on ``reflector_model`` (default: the Generator's model).

Epoch 0 is the baseline (an empty playbook, or the saved one ``AceConfig.playbook`` names: JSONL or ace-agent
text); epoch N ≥ 1 evaluates after N adaptation passes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.ace.curation import Curator, retrieve
from slmlab.ace.playbook import Playbook, read_playbook
from slmlab.ace.roles import (
    GeneratorReply,
    answer_text,
    generator_messages,
    parse_generator_reply,
    parse_reflection,
    reflector_prompt,
    used_bullets,
)
from slmlab.ace.spec import (
    ADAPTATION_FILE,
    CONFIG_FILE,
    DOMAINS,
    OPERATIONS_FILE,
    PLAYBOOK_FILE,
    RESULTS_FILE,
    STATE_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    AceConfig,
    AceRunError,
    playbook_file,
)
from slmlab.ace.spec import run_dir as run_folder
from slmlab.ace.tasks import transfer_path
from slmlab.embeddings import TextEmbedder, load_embedder
from slmlab.environment import peak_rss_mb
from slmlab.errors import SlmLabError
from slmlab.generation import DecodingConfig, Prompt
from slmlab.io import atomic_write_json, atomic_write_text
from slmlab.metrics import latency_percentiles, token_f1
from slmlab.models import load_model
from slmlab.settings import artifacts_root
from slmlab.tasks import TaskItem, load_tasks, resolve_task, score_answer, task_split

SPLITS = ("generalization", "transfer")  # a domain's test splits; a task file has one split, "test"


def model_slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_id).name if "/" in model_id else model_id).strip("_")


def task_sets(config: AceConfig) -> tuple[str, str, list[TaskItem], dict[str, list[TaskItem]]]:
    """(task name, domain, train items, test items by split), each cut to ``config.limit``. A domain is
    measured on its generalization (test) and transfer splits, a task file on itself."""
    if config.task in DOMAINS:
        train_spec, test_spec = task_split(config.task)
        name, domain = config.task, test_spec.domain
        paths = {"generalization": test_spec.full_path(), "transfer": transfer_path(config.task)}
    else:
        test_spec = resolve_task(config.task)
        train_spec = resolve_task(config.train_task) if config.train_task else test_spec
        name, domain = test_spec.name, test_spec.domain
        paths = {"test": test_spec.full_path()}
    train = load_tasks(train_spec.full_path())[: config.limit]
    return name, domain, train, {split: load_tasks(path)[: config.limit] for split, path in paths.items()}


def run_dir_of(config: AceConfig, root: str | Path | None = None, quick: bool | None = None) -> Path:
    """``results/ace/<model>/<task>/<mode>`` of the artifacts tree ``root`` (default: the mode's,
    :func:`~slmlab.settings.artifacts_root`; ``quick`` defaults to ``SLMLAB_QUICK``)."""
    name = config.task if config.task in DOMAINS else Path(config.task).stem
    return run_folder(Path(root) if root is not None else artifacts_root(quick), model_slug(config.model_id), name, config.mode)


def recorded_config(config: AceConfig) -> dict:
    """The settings a run folder records (``config.json``, the summary): every field, and for a run started from a
    saved playbook a digest of that file too, so an edited start counts as changed settings. A run without one
    records no ``playbook`` key, as before the option existed, so its folder and files stay as they were."""
    record = asdict(config)
    if config.playbook is None:
        del record["playbook"]
    else:
        record["playbook_sha256"] = hashlib.sha256(Path(config.playbook).read_bytes()).hexdigest()
    return record


def starting_playbook(path: str | Path) -> Playbook:
    """The saved playbook a run starts from (JSONL, or ace-agent text for ``.txt``/``.md``); a missing file or a
    line that is no bullet is refused as ``file:line: why`` before anything runs."""
    return read_playbook(path, strict=True)


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
        self.run_dir = Path(run_dir) if run_dir else run_dir_of(config)
        self.start = Playbook()  # the playbook of epoch 0: empty, or the saved one config.playbook names
        self.progress = progress
        self.task_name, self.domain, self.train, self.tests = task_sets(config)
        self.test = [item for items in self.tests.values() for item in items]
        self.split_of = {item.id: split for split, items in self.tests.items() for item in items}
        self._model = model
        self._reflector = None
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
            self._model = load_model(self.config.model_id, backend=self.config.backend)
        return self._model

    @property
    def reflector(self):
        """The model of the Reflector and the Curator: ``reflector_model``, or the Generator's model."""
        if self._reflector is None:
            name = self.config.reflector_model
            self._reflector = self.model if name in (None, self.config.model_id) else load_reflector(name, self.config.backend)
        return self._reflector

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = load_embedder()
        return self._embedder

    @property
    def curator(self) -> Curator:
        if self._curator is None:  # the budget counts the Generator's tokens: the playbook goes into its context
            self._curator = Curator(self.config.curation, self.embedder, self.model.count_tokens)
        return self._curator

    # --- paths --------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.run_dir / name

    def _prepare_dir(self) -> None:
        """Create the folder; a folder left by a run with other settings is emptied (its results would
        not be comparable), one with the same settings is resumed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved = self.path(CONFIG_FILE)
        wanted = recorded_config(self.config)
        if saved.is_file() and json.loads(saved.read_text()) != wanted:
            changed = sorted(k for k, v in json.loads(saved.read_text()).items() if wanted.get(k) != v)
            print(f"{self.run_dir}: settings changed ({', '.join(changed)}); starting this run over")
            for old in self.run_dir.iterdir():
                if old.is_file():
                    old.unlink()
        if self.path(STATS_FILE).is_file():
            self.stats = json.loads(self.path(STATS_FILE).read_text())
        atomic_write_json(saved, wanted)

    # --- the run -------------------------------------------------------------------------------------
    def run(self) -> Path:
        """Run every epoch (skipping what is already on disk) and return the results CSV path."""
        if self.config.mode != "baseline":
            _ = self.reflector  # a Reflector that cannot load stops the run before any generation starts
        if self.config.playbook is not None:  # so does a starting playbook that cannot be read
            self.start = starting_playbook(self.config.playbook)
        self._prepare_dir()
        for epoch in range(self.config.epoch_count):
            self._run_epoch(epoch)
        atomic_write_json(self.path(SUMMARY_FILE), self.summary())
        return self.path(RESULTS_FILE)

    def _run_epoch(self, epoch: int) -> None:
        times = _StepTimes()
        online = self.config.mode == "ace-online"
        if epoch == 0:
            self.playbook = self.start
            if self.config.playbook is not None:  # the start on disk: epoch 1 continues from it, also after a resume
                self.playbook.save(playbook_file(self.run_dir, 0))
            self._pass(self.test, epoch, "eval", adapt=False, csv_name=RESULTS_FILE, times=times)
        elif online:
            self._load_playbook(epoch)
            self._pass(self.test, epoch, "online", adapt=True, csv_name=RESULTS_FILE, times=times)
            self.playbook.save(playbook_file(self.run_dir, epoch))
        else:
            self._load_playbook(epoch)
            if not playbook_file(self.run_dir, epoch).is_file():
                self._pass(self.train, epoch, "adapt", adapt=True, csv_name=ADAPTATION_FILE, times=times)
                self.playbook.save(playbook_file(self.run_dir, epoch))
            self._pass(self.test, epoch, "eval", adapt=False, csv_name=RESULTS_FILE, times=times)
        self._record_epoch(epoch, times)

    def _load_playbook(self, epoch: int) -> None:
        """The playbook to continue from: this epoch's finished one, the one saved mid-epoch, or the
        previous epoch's."""
        for candidate in (
            playbook_file(self.run_dir, epoch),
            playbook_file(self.run_dir),
            playbook_file(self.run_dir, epoch - 1),
        ):
            if candidate.name == PLAYBOOK_FILE and self._state().get("epoch") != epoch:
                continue
            if candidate.is_file():
                self.playbook = Playbook.load(candidate)
                for problem in self.playbook.problems:
                    print(f"warning: {problem}")
                break
        else:
            self.playbook = Playbook()
        self.playbook.reserve(self._logged_ids())

    def _logged_ids(self) -> list[str]:
        """Every bullet id the operations log mentions, so a reloaded playbook never reuses one."""
        path = self.path(OPERATIONS_FILE)
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return [i for op in map(json.loads, lines) for i in [op["bullet_id"], *op["merge_ids"]] if i]

    def _state(self) -> dict:
        path = self.path(STATE_FILE)
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
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="sample", disable=not self.progress)
        for batch in _chunks(todo, self.config.batch_size):
            rows = self._batch(batch, epoch, adapt, times)
            append_rows(self.path(csv_name), rows, self.config.columns())
            if adapt:
                self.playbook.save(playbook_file(self.run_dir))
                state = self._state()
                done_now = state.get("done", 0) if (state.get("epoch"), state.get("phase")) == (epoch, phase) else 0
                atomic_write_json(self.path(STATE_FILE), {"epoch": epoch, "phase": phase, "done": done_now + len(batch)})
            bar.update(len(batch))
        bar.close()

    # --- one batch: generate, score, (reflect, curate) ------------------------------------------------
    def _batch(self, batch: Sequence[TaskItem], epoch: int, adapt: bool, times: _StepTimes) -> list[dict]:
        shown = [self._retrieve(item) for item in batch]
        started = time.perf_counter()
        messages = [generator_messages(i, s) for i, s in zip(batch, shown)]
        raws = self._generate(self.model, messages, "Answer:", self.config.answer_tokens)
        generation_ms = (time.perf_counter() - started) * 1000
        times.generation_ms += generation_ms
        replies = [parse_generator_reply(item, raw) for item, raw in zip(batch, raws)]
        correct = [score_answer(item, reply.answer) if reply.answer else False for item, reply in zip(batch, replies)]
        reflection_ms, parses = 0.0, [""] * len(batch)
        if adapt:
            reflection_ms, parses = self._reflect_and_curate(batch, replies, correct, shown, epoch, times)
        semantic = self._semantic(batch, replies)
        return [
            {
                **self._row(item, reply, ok, generation_ms / len(batch), reflection_ms / len(batch), adapt, epoch, bullets),
                **({"reflection_parse": parse} if self.config.mode != "baseline" else {}),
                "semantic": score,
            }
            for item, reply, ok, bullets, parse, score in zip(batch, replies, correct, shown, parses, semantic)
        ]

    def _semantic(self, batch: Sequence[TaskItem], replies: Sequence[GeneratorReply]) -> list[float]:
        """Partial credit per answer: MiniLM cosine between the answer and the gold (choice texts for letters),
        0 for an empty answer."""
        answers = [answer_text(item, reply.answer) for item, reply in zip(batch, replies)]
        golds = [answer_text(item, item.answer) for item in batch]
        vectors, gold_vectors = self.embedder.encode(answers), self.embedder.encode(golds)
        return [round(max(0.0, float(a @ g)), 4) if text else 0.0 for a, g, text in zip(vectors, gold_vectors, answers)]

    def _retrieve(self, item: TaskItem):
        if not self.playbook.bullets:
            return []
        return retrieve(self.playbook, self.embedder, f"{item.question} {item.context}", self.config.top_k)

    def _generate(self, model, prompts: Sequence[Prompt], prefix: str, max_new_tokens: int) -> list[str]:
        """Batched greedy generation on ``model`` with the reply started by ``prefix`` (e.g. ``Answer:``)."""
        texts = [model.render(p) + prefix for p in prompts]
        decoding = DecodingConfig(max_new_tokens=max_new_tokens, seed=self.config.seed, batch_size=self.config.batch_size)
        return model.generate(texts, decoding, chat=False)

    def _reflect_and_curate(
        self, batch, replies: Sequence[GeneratorReply], correct, shown, epoch: int, times: _StepTimes
    ) -> tuple[float, list[str]]:
        """Reflect on a batch and curate the playbook; returns the reflection time and each reply's parse
        status. An unparsable reflection still lets the Curator record what the label holds (a worked example)."""
        labels = self.config.use_labels
        started = time.perf_counter()
        prompts = [reflector_prompt(item, reply, labels) for item, reply in zip(batch, replies)]
        raws = self._generate(self.reflector, prompts, "Lesson:" if labels else "Correct:", self.config.reflection_tokens)
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
        return reflection_ms, [r.parse for r in reflections]

    def _log_operations(self, operations, epoch: int, sample_id: str) -> None:
        if not operations:
            return
        self.operations.update(op.op for op in operations)
        lines = "".join(json.dumps({"epoch": epoch, "sample_id": sample_id, **asdict(op)}) + "\n" for op in operations)
        with self.path(OPERATIONS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(lines)

    def _row(
        self,
        item: TaskItem,
        reply: GeneratorReply,
        correct: bool,
        latency_ms: float,
        reflection_ms: float,
        reflected: bool,
        epoch: int,
        shown,
    ) -> dict:
        row = {
            "model_id": self.config.model_id,
            "task_name": self.task_name,
            "split": self.split_of.get(item.id, "adaptation"),
            "domain": item.domain,
            "mode": self.config.mode,
            "sample_id": item.id,
            "gold": item.answer,
            "pred": reply.answer,
            "latency_ms": round(latency_ms, 1),
            "question": item.question,
            "context": item.context,
            "correct": correct,
            "token_f1": round(token_f1(reply.answer, item.answer), 4),
            "parse": reply.parse,
        }
        if self.config.mode != "baseline":
            row.update(
                reflection_latency_ms=round(reflection_ms, 1),
                reflected=reflected,
                epoch=epoch,
                bullets=" ".join(b.id for b in shown),
            )
        return row

    # --- statistics ------------------------------------------------------------------------------------
    def _record_epoch(self, epoch: int, times: _StepTimes) -> None:
        rows = [r for r in read_rows(self.path(RESULTS_FILE)) if str(r.get("epoch", "0")) == str(epoch)]
        entry = self.stats.get(str(epoch), {})
        if times.generation_ms or not entry:  # keep the timings of a run resumed after this epoch ended
            reflected = sum(self._reflection_parses.values())
            entry = {
                "epoch": epoch,
                "samples": len(rows),
                "accuracy": accuracy(rows),
                "accuracy_by_split": {split: accuracy([r for r in rows if r["split"] == split]) for split in self.tests},
                "parse_failures": sum(r["parse"] == "failed" for r in rows),
                "reflection_parse_failure_rate": round(100 * self._reflection_parses["failed"] / reflected, 1)
                if reflected
                else None,
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
        atomic_write_json(self.path(STATS_FILE), self.stats)

    def summary(self) -> dict:
        epochs = [self.stats[k] for k in sorted(self.stats, key=int)]
        return {
            "config": recorded_config(self.config),
            "task_name": self.task_name,
            "domain": self.domain,
            "accuracy_by_epoch": {e["epoch"]: e["accuracy"] for e in epochs},
            "accuracy_by_split": {e["epoch"]: e.get("accuracy_by_split", {}) for e in epochs},
            "samples": len(self.test),
            "splits": {split: len(items) for split, items in self.tests.items()},
        }


def accuracy(rows: Sequence[dict]) -> float:
    """Exact-match accuracy (%) of results rows."""
    return round(100 * sum(r["correct"] == "True" for r in rows) / max(len(rows), 1), 2)


def load_reflector(name: str, backend: str = "auto"):
    """The Reflector's model; a name that does not resolve or load is refused in one sentence."""
    try:
        return load_model(name, backend=backend)
    except (SlmLabError, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()).rstrip(".")
        raise AceRunError(
            f"The Reflector model '{name}' cannot be loaded ({reason}); give a registry name or a model folder."
        ) from exc


def run_ace(config: AceConfig, run_dir: str | Path | None = None, model=None, progress: bool = True) -> Path:
    """Run ``config`` (resuming what a previous run left) and return the results CSV."""
    return AceRunner(config, run_dir, model=model, progress=progress).run()
