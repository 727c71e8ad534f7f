"""Chapter 05 on one screen: the notebook, the command-line verbs, the quick and full sizes, the Curator's settings
and the files of an ACE run folder, each path a function of the artifacts root. Light (no torch, no pandas)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.models.registry import DEFAULT_MODEL
from slmlab.spec import results_path

KEY = "ace"
NOTEBOOKS = ("05_ace_playbook",)
COMMANDS = ("ace run", "ace summarize", "ace grid", "ace tasks", "ace playbook")  # ``slmlab <verb>``
TITLE = "ACE playbooks (chapter 05)"
TAUGHT_THROUGH = "context"

MODES = ("baseline", "ace", "ace-online")  # what adapts between epochs: nothing, the playbook on train, on test
DOMAINS = ("finance", "medical", "iot")  # each names a train/test pair and a transfer split: the chapter's full runs
QUICK_TASKS = ("tatqa_tiny", "medqa_tiny", "iot_tiny")  # one smoke set per domain: the chapter's quick runs
CHAPTER_EPOCHS, QUICK_EPOCHS = 2, 1  # adaptation epochs of the chapter's full and quick runs
RUN_COMMAND = f"slmlab ace run --task {DOMAINS[0]} --epochs {CHAPTER_EPOCHS} (and {', '.join(DOMAINS[1:])})"
QUICK_RUN_COMMAND = f"slmlab ace run --task {QUICK_TASKS[0]} --epochs {QUICK_EPOCHS} (and {', '.join(QUICK_TASKS[1:])})"

RESULTS = "ace"
ACE_MODE = "ace"  # the run mode that learns a playbook (the report's figures come from it)
CONFIG_FILE = "config.json"  # inside a run folder: the AceConfig it was made with
SUMMARY_FILE = "summary.json"  # accuracy per split and epoch, task name, cost
STATS_FILE = "stats.json"  # per epoch: playbook size, reflection parses, seconds
RESULTS_FILE = "results.csv"  # every evaluated item: epoch, split, prediction, scores
ADAPTATION_FILE = "adaptation.csv"  # every item of the adaptation passes over the train split
PLAYBOOK_FILE = "playbook.jsonl"  # the playbook after the last finished pass
OPERATIONS_FILE = "operations.jsonl"  # every curator operation, in order
STATE_FILE = "state.json"  # where a stopped run resumes
EXAMPLES = "worked examples"  # the playbook section of question -> gold answer bullets learned from feedback


def chapter_runs(quick: bool) -> tuple[tuple[str, ...], int]:
    """The tasks and epochs of the chapter's runs (the notebook's, the report's): quick or full size."""
    return (QUICK_TASKS, QUICK_EPOCHS) if quick else (DOMAINS, CHAPTER_EPOCHS)


@dataclass(frozen=True)
class CurationConfig:
    """How the playbook is kept small and useful."""

    dedup_threshold: float = 0.9  # cosine similarity above which two bullets of a section are merged
    prune_min_harmful: int = 2  # a bullet goes once harmful > helpful and harmful reaches this count
    token_budget: int = 16384  # the whole playbook, rendered in the text format, stays within this; the
    # Generator sees only the top_k retrieved bullets, so the budget bounds storage, not the prompt
    top_k: int = 3  # bullets shown to the Generator for one question
    # sections merged only on identical text: MiniLM sees two worked examples that differ in their numbers
    # (another table, another patient) as near-duplicates, and merging them would lose an answer
    exact_sections: tuple[str, ...] = (EXAMPLES,)

    def __post_init__(self) -> None:
        if not 0 < self.dedup_threshold <= 1:
            raise ValueError(f"dedup_threshold must be in (0, 1], got {self.dedup_threshold}")
        if self.token_budget < 1 or self.top_k < 0 or self.prune_min_harmful < 1:
            raise ValueError("token_budget and prune_min_harmful must be >= 1 and top_k >= 0")


def results_dir(root: Path) -> Path:
    """``results/ace``: one folder per model, task and mode below it."""
    return results_path(root, RESULTS)


def run_dir(root: Path, model_slug: str, task: str, mode: str) -> Path:
    """``results/ace/<model>/<task>/<mode>``: one run folder."""
    return results_dir(root) / model_slug / task / mode


def summary_files(root: Path, mode: str = ACE_MODE) -> list[Path]:
    """The summaries of every run folder of ``mode`` under ``root`` (every model and task), sorted."""
    return sorted(results_dir(root).glob(f"*/*/{mode}/{SUMMARY_FILE}"))


def playbook_file(run: Path, epoch: int | None = None) -> Path:
    """A run's playbook: after ``epoch`` (``playbook_epoch<N>.jsonl``), or the latest (``playbook.jsonl``)."""
    return Path(run) / (PLAYBOOK_FILE if epoch is None else f"playbook_epoch{epoch}.jsonl")


# --- one run's settings ------------------------------------------------------------------------------------------
CORE_COLUMNS = ("model_id", "task_name", "split", "domain", "mode", "sample_id", "gold", "pred", "latency_ms")
DETAIL_COLUMNS = ("question", "context", "correct", "token_f1", "semantic")
ACE_COLUMNS = ("reflection_latency_ms", "reflected", "epoch", "reflection_parse")


class AceRunError(SlmLabError):
    """A run that cannot start: unknown mode or task, a Reflector model that cannot be loaded, or settings
    that contradict each other."""


@dataclass(frozen=True)
class AceConfig:
    """One ACE run. ``task`` is a domain (``finance``, ``medical``, ``iot``: its train and test sets), a
    registry name or a JSON/JSONL path (then used for both adaptation and evaluation unless
    ``train_task`` names another). ``reflector_model`` (a registry name or a model folder) runs the Reflector
    and the Curator; None uses the Generator's model. ``playbook`` is a saved playbook to start from (JSONL, or
    ace-agent text for ``.txt``/``.md``): epoch 0 answers with it and the first adaptation pass extends it."""

    model_id: str = DEFAULT_MODEL
    reflector_model: str | None = None
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
    top_k: int = CurationConfig.top_k
    token_budget: int = CurationConfig.token_budget
    dedup_threshold: float = CurationConfig.dedup_threshold
    prune_min_harmful: int = CurationConfig.prune_min_harmful
    backend: str = "auto"
    playbook: str | None = None  # a saved playbook file to start from; None starts empty

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AceRunError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.epochs < 0 or (self.limit is not None and self.limit < 1) or self.batch_size < 1:
            raise AceRunError("epochs must be >= 0, limit >= 1 (or None) and batch_size >= 1")
        if self.playbook is not None and self.mode == "baseline":
            raise AceRunError(
                f"a baseline run answers without a playbook: drop the playbook or use mode {MODES[1]} or {MODES[2]}"
            )

    @classmethod
    def quick(cls, **changes) -> AceConfig:
        """The chapter's quick size (``QUICK_RUN_COMMAND`` of the spec): the first smoke set, one epoch."""
        return cls(**{"task": QUICK_TASKS[0], "epochs": QUICK_EPOCHS, **changes})

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
