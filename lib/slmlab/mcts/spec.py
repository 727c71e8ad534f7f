"""Chapter 06 on one screen: the notebook, the command-line verbs, the controller's default sizes, its settings classes
and the files of a run folder, each path a function of the artifacts root. Light (no torch, no fastapi): the report,
the demos, the grid and the command line read it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from slmlab.spec import benchmark_file, results_path

KEY = "mcts"
NOTEBOOKS = ("06_mcts_controller",)
COMMANDS = ("mcts run", "mcts selfplay", "mcts train", "mcts eval", "serve")
TITLE = "MCTS controller (chapter 06)"
TAUGHT_THROUGH = "decoding"
RUN_COMMAND = "slmlab mcts run"
QUICK_RUN_COMMAND = "slmlab mcts run --quick"
CONTROLLERS = ("scripted", "mcts")  # ``slmlab serve --controller``: a fixed policy (the default) or the search

# The controller's sizes, written once: every settings class of the chapter (ChapterSettings, EvalSettings,
# SelfPlayConfig, SearchSettings, EnvConfig, MacroState), both controllers and the server's requests default to them.
BUDGET = 48  # tokens an answer may use, thoughts included
SPAN_TOKENS = 8  # tokens per CONTINUE / RESAMPLE span
SIMULATIONS = 8  # search simulations per macro-action
PARALLEL_LEAVES = 4  # simulations per batched round of the search (virtual loss); 1 = one at a time
BEST_OF = 4  # samples of best-of-n and of majority vote
MAX_BUDGET = 512  # the largest budget a request to ``slmlab serve`` may ask for
MAX_RESAMPLES = 3  # RESAMPLEs in a row an episode allows (MacroState, EnvConfig)
HIDDEN = 128  # width of the policy-value network's hidden layers (NetworkConfig, SelfPlayConfig)

RESULTS = "mcts"
LONG_RUN_NAME = "mcts-long"  # the long self-play run, beside the chapter's run folder
SUMMARY_FILE = "summary.json"  # the chapter's headline: each method's accuracy and tokens, reward by round
EVAL_FILE = "eval.csv"  # every test item's answer per method
EVAL_RECORD_FILE = "eval.json"  # what eval.csv was made with (settings, methods, items, network digest)
EVAL_SUMMARY_FILE = "eval_summary.md"  # the comparison table, also as .csv
EVAL_SUMMARY_CSV_FILE = "eval_summary.csv"

# inside any run folder (the chapter's, the long run's, or one ``--run`` names)
CONFIG_FILE = "config.json"  # the SelfPlayConfig the folder was made with
EPISODES_FILE = "episodes.jsonl"  # one line per finished self-play episode
REPLAY_DIR = "replay"  # the replay buffer: four .npy arrays and their header
REPLAY_HEADER_FILE = "header.json"
NETWORK_DIR = "network"  # the policy-value network's training folder: checkpoints, metrics, TensorBoard
NETWORK_FILE = "network.pt"  # the trained network, in the network folder and in each checkpoint


def run_dir(root: Path) -> Path:
    """``results/mcts``: the chapter's run folder."""
    return results_path(root, RESULTS)


def long_run_dir(root: Path) -> Path:
    """``results/mcts-long``: the long self-play run the notebook draws when it exists."""
    return results_path(root, LONG_RUN_NAME)


def summary_file(root: Path) -> Path:
    return run_dir(root) / SUMMARY_FILE


def eval_file(root: Path) -> Path:
    return run_dir(root) / EVAL_FILE


def eval_summary_file(root: Path) -> Path:
    return run_dir(root) / EVAL_SUMMARY_CSV_FILE


def network_dir(root: Path) -> Path:
    """``results/mcts/network``: where the chapter's run trains its policy-value network."""
    return run_dir(root) / NETWORK_DIR


def network_file(root: Path) -> Path:
    """``results/mcts/network/network.pt``: the chapter's trained network (``slmlab serve --network``)."""
    return network_dir(root) / NETWORK_FILE


# --- part two: search on code, valued by visible tests -----------------------------------------------------------
CODE_DIR = "code"  # inside results/mcts: greedy, sampling + filtering and MCTS on code tasks
CODE_RUNS_FILE = "runs.csv"  # one row per task set, model, task and method: hidden verdict, visible rate, tokens, program
CODE_SUMMARY_FILE = "summary.csv"  # the comparison table (pass@1 on hidden tests, tokens, sandbox runs, latency, McNemar)
CODE_RECORD_FILE = "comparison.json"  # the settings, the table and its generated reading
CODE_BENCHMARK = "mcts_code"  # benchmarks/mcts_code.py: the search with and without its caches, and filtering
CODE_METHODS = ("greedy", "filtering", "mcts")
CODE_TASK_SETS = ("heldout", "humaneval")  # chapter 08's committed held-out tasks, HumanEval's 164 problems
HELDOUT_GAIN_GOAL = 15  # points MCTS should add to greedy's hidden pass@1 on the held-out tasks (base model)
HUMANEVAL_RATIO_GOAL = 2  # MCTS's hidden pass@1 on HumanEval should be this many times greedy's


def code_dir(root: Path) -> Path:
    """``results/mcts/code``: part two's comparison."""
    return results_path(root, RESULTS, CODE_DIR)


def code_runs_file(root: Path) -> Path:
    return code_dir(root) / CODE_RUNS_FILE


def code_summary_file(root: Path) -> Path:
    return code_dir(root) / CODE_SUMMARY_FILE


def code_record_file(root: Path) -> Path:
    return code_dir(root) / CODE_RECORD_FILE


def code_benchmark_file(root: Path) -> Path:
    """``results/benchmarks/mcts_code.json``."""
    return benchmark_file(root, CODE_BENCHMARK)


COMPARISON_TABLE_FILE = "comparison.csv"  # the notebook's copy of the comparison, beside its figure
COMPARISON_FIGURE_FILE = "comparison.png"


# --- the settings classes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MCTSConfig:
    """Search size, the PUCT exploration schedule and the root's Dirichlet noise (AlphaZero defaults)."""

    num_simulations: int = 64
    c_init: float = 1.25
    c_base: float = 19652
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25  # weight of the noise in the root priors
    seed: int = 0  # seeds the Dirichlet noise
    # Leaves gathered per round: each simulation's path gets a virtual loss so the next one looks elsewhere,
    # then the new states are stepped together (one batched forward pass where the environment has
    # ``step_batch``). 1 is the plain one-leaf-at-a-time search.
    parallel_leaves: int = 1
    # Step every unstepped sibling of a new leaf in the same batch, so later visits find them ready.
    expand_siblings: bool = False
    virtual_loss: float = 1.0  # the value a pending visit counts as, against the player who chose it

    def __post_init__(self) -> None:
        checks = {
            "num_simulations": isinstance(self.num_simulations, int) and self.num_simulations >= 1,
            "c_init": self.c_init >= 0,
            "c_base": self.c_base > 0,
            "dirichlet_alpha": self.dirichlet_alpha > 0,
            "dirichlet_fraction": 0 <= self.dirichlet_fraction <= 1,
            "parallel_leaves": isinstance(self.parallel_leaves, int) and self.parallel_leaves >= 1,
            "virtual_loss": self.virtual_loss >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"MCTSConfig.{name} is out of range: {getattr(self, name)!r}")


@dataclass(frozen=True)
class SearchSettings:
    """How one episode is searched. While exploring (self-play) the first ``temperature_moves`` moves are
    drawn from the visit counts at ``temperature`` and the root gets Dirichlet noise; otherwise (evaluation,
    serving) the most visited action is played."""

    simulations: int = SIMULATIONS
    temperature: float = 1.0
    temperature_moves: int = 3
    tree_reuse: bool = True
    parallel_leaves: int = PARALLEL_LEAVES  # simulations per batched round (see MCTSConfig.parallel_leaves); 1 = one at a time
    seed: int = 0

    def __post_init__(self) -> None:
        if self.simulations < 1 or self.temperature < 0 or self.temperature_moves < 0 or self.parallel_leaves < 1:
            raise ValueError(
                f"SearchSettings needs simulations >= 1, temperature >= 0, temperature_moves >= 0 and "
                f"parallel_leaves >= 1, got {self.simulations}, {self.temperature}, "
                f"{self.temperature_moves}, {self.parallel_leaves}"
            )

    def mcts(self) -> MCTSConfig:
        """The search's settings: with several leaves per round, their siblings are stepped in the same batch."""
        return MCTSConfig(
            num_simulations=self.simulations,
            seed=self.seed,
            parallel_leaves=self.parallel_leaves,
            expand_siblings=self.parallel_leaves > 1,
        )


@dataclass(frozen=True)
class EnvConfig:
    """How macro-actions are decoded.

    ``continue_temperature`` 0 means greedy CONTINUE (the default, so a tree's CONTINUE children are
    reproducible); RESAMPLE always samples, at ``resample_temperature``. The marker texts are fed to the
    model on THINK_BEGIN / THINK_END; the defaults cue a small instruct model to reason, then to answer.
    """

    span_tokens: int = SPAN_TOKENS
    budget: int = BUDGET
    continue_temperature: float = 0.0
    resample_temperature: float = 0.8
    think_begin: str = "\nLet's think step by step.\n"
    think_end: str = "\n\nAnswer:"
    max_resamples: int = MAX_RESAMPLES
    early_stop: bool = False  # offer STOP before the model ends its reply (see :mod:`slmlab.mcts.lm_env`)
    reuse_cache: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "span_tokens": self.span_tokens >= 1,
            "budget": self.budget >= 1,
            "continue_temperature": self.continue_temperature >= 0,
            "resample_temperature": self.resample_temperature > 0,
            "think_begin": bool(self.think_begin),
            "think_end": bool(self.think_end),
            "max_resamples": self.max_resamples >= 0,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"Invalid EnvConfig: {', '.join(bad)} (spans, budget >= 1; resample temperature > 0; markers non-empty)"
            )


@dataclass(frozen=True)
class ConsistencySettings:
    """How a search uses agreement at test time: it stops once ``min_finished`` branches have finished and one
    answer holds ``share`` of their votes, or once ``max_finished`` have finished whatever they say; each vote
    weighs the model's likelihood of its reply to the power ``sharpness`` (see :mod:`slmlab.mcts.consistency`;
    0 counts every vote alike)."""

    min_finished: int = 3
    share: float = 0.75
    max_finished: int = 6
    sharpness: float = 4.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_finished <= self.max_finished or not 0.0 < self.share <= 1.0 or not self.sharpness >= 0:
            raise ValueError(
                f"ConsistencySettings needs 1 <= min_finished <= max_finished, share in (0, 1] and sharpness >= 0, got {self}"
            )


SCHEDULES = ("cosine", "linear", "constant")  # TrainSettings.schedule: the learning rate's decay after warm-up


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings for :func:`slmlab.mcts.learning.train_network`.

    ``steps`` is the global step to train up to (a resumed run only adds the missing ones). The learning
    rate warms up linearly over ``warmup_steps``, then decays (``schedule``) to 0 at ``schedule_steps``
    (default: ``steps``). To grow a run in stages — e.g. train between self-play rounds — set
    ``schedule_steps`` to the final total and raise ``steps`` from call to call: every stage then follows
    the one schedule, exactly as a single uninterrupted run would.
    """

    steps: int = 500
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    warmup_steps: int = 20
    schedule: str = "cosine"
    schedule_steps: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    value_weight: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 0,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip > 0,
            "warmup_steps": self.warmup_steps >= 0,
            "schedule": self.schedule in SCHEDULES,
            "schedule_steps": self.schedule_steps is None or self.schedule_steps >= self.steps,
            "checkpoint_every": self.checkpoint_every >= 1,
            "keep_checkpoints": self.keep_checkpoints >= 1,
            "value_weight": self.value_weight >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainSettings.{name} is out of range: {getattr(self, name)!r}")

    @property
    def horizon(self) -> int:
        """The step at which the learning rate reaches the end of its decay."""
        return self.schedule_steps if self.schedule_steps is not None else self.steps


@dataclass(frozen=True)
class SelfPlayConfig:
    """Everything that shapes the positions of a self-play folder (saved as ``config.json``)."""

    span_tokens: int = SPAN_TOKENS
    budget: int = BUDGET
    simulations: int = SIMULATIONS
    temperature_moves: int = SearchSettings.temperature_moves
    replay_capacity: int = 20_000
    hidden: int = HIDDEN
    early_stop: bool = EnvConfig.early_stop  # offer STOP before the model ends its reply
    parallel_leaves: int = PARALLEL_LEAVES  # see SearchSettings.parallel_leaves
    seed: int = 0

    def env_config(self) -> EnvConfig:
        return EnvConfig(span_tokens=self.span_tokens, budget=self.budget, early_stop=self.early_stop, seed=self.seed)

    def search(self, episode: int) -> SearchSettings:
        return SearchSettings(
            simulations=self.simulations,
            temperature_moves=self.temperature_moves,
            parallel_leaves=self.parallel_leaves,
            seed=self.seed + episode,
        )


@dataclass(frozen=True)
class EvalSettings:
    """The shared token budget and each method's knobs (``best_of`` samples for best-of-n and majority vote;
    ``consistency`` for the search's test-time value, None for the verifier-free fluency reward instead)."""

    budget: int = BUDGET
    span_tokens: int = SPAN_TOKENS
    best_of: int = BEST_OF
    # sampling (best-of-n, majority vote) and the search's RESAMPLE; tuned on the self-play items (never the test
    # items): at 0.3 best-of-n gained 10 points over greedy there; at 0.6 and 1.0 samples ramble and votes do worse
    temperature: float = 0.3
    simulations: int = SIMULATIONS
    parallel_leaves: int = PARALLEL_LEAVES  # see SearchSettings.parallel_leaves
    consistency: ConsistencySettings | None = ConsistencySettings()
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.budget, self.span_tokens, self.best_of, self.simulations, self.parallel_leaves) < 1 or self.temperature <= 0:
            raise ValueError(f"EvalSettings needs budget, span_tokens, best_of, simulations >= 1 and temperature > 0: {self}")


@dataclass(frozen=True)
class ChapterSettings:
    """Sizes of the chapter's run; :meth:`quick` shrinks them to a smoke run of a minute or two."""

    n_train: int = 40
    n_test: int = 30
    rounds: int = 3
    episodes_per_round: int = 12
    steps_per_round: int = 150
    batch_size: int = 32
    simulations: int = SIMULATIONS
    parallel_leaves: int = PARALLEL_LEAVES  # simulations per batched round of the search (see SearchSettings)
    budget: int = BUDGET
    span_tokens: int = SPAN_TOKENS
    best_of: int = BEST_OF
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> ChapterSettings:
        return cls(
            n_train=4,
            n_test=3,
            rounds=1,
            episodes_per_round=2,
            steps_per_round=10,
            batch_size=8,
            simulations=2,
            budget=16,
            best_of=2,
            seed=seed,
        )

    def selfplay(self) -> SelfPlayConfig:
        return SelfPlayConfig(
            span_tokens=self.span_tokens,
            budget=self.budget,
            simulations=self.simulations,
            parallel_leaves=self.parallel_leaves,
            seed=self.seed,
        )

    def training(self, round_index: int) -> TrainSettings:
        """Round ``round_index`` (0-based) trains up to its share of one schedule over all rounds."""
        total = self.rounds * self.steps_per_round
        return TrainSettings(
            steps=(round_index + 1) * self.steps_per_round,
            schedule_steps=total,
            batch_size=self.batch_size,
            warmup_steps=min(20, total // 10),
            checkpoint_every=self.steps_per_round,
            seed=self.seed,
        )

    def evaluation(self) -> EvalSettings:
        return EvalSettings(
            budget=self.budget,
            span_tokens=self.span_tokens,
            best_of=self.best_of,
            simulations=self.simulations,
            parallel_leaves=self.parallel_leaves,
            seed=self.seed,
        )


# --- part two's settings --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodeSearchConfig:
    """MCTS over lines of code (:mod:`slmlab.mcts.code`): the search's size, how a line is decoded and resampled, and
    when the search may stop. A program is at most ``max_new_tokens`` long (chapter 08's greedy pass@1 uses the same)."""

    simulations: int = 16
    parallel_leaves: int = 2  # simulations per batched round (virtual loss); 1 = one at a time
    line_tokens: int = 48  # most tokens in one line
    max_new_tokens: int = 192
    resample_temperature: float = 0.8
    max_resamples: int = MAX_RESAMPLES  # resamples of one line
    stop_when_solved: bool = True  # end the search once a program passes every visible test
    reuse_cache: bool = True  # a line starts from a fork of its parent's KV cache (off: the prefix is encoded again)
    cache_scores: bool = True  # a program is run on the visible tests once, recognised by its fingerprint
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "simulations": self.simulations >= 1,
            "parallel_leaves": self.parallel_leaves >= 1,
            "line_tokens": self.line_tokens >= 1,
            "max_new_tokens": self.max_new_tokens >= 1,
            "resample_temperature": self.resample_temperature > 0,
            "max_resamples": self.max_resamples >= 0,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"CodeSearchConfig is out of range: {', '.join(bad)}")

    def quick(self) -> CodeSearchConfig:
        return replace(self, simulations=6)

    def mcts(self) -> MCTSConfig:
        return MCTSConfig(
            num_simulations=self.simulations,
            parallel_leaves=self.parallel_leaves,
            expand_siblings=False,
            seed=self.seed,
        )


@dataclass(frozen=True)
class CodeComparisonConfig:
    """Part two's comparison: which task sets, how many tasks of each (0: all), the search, and the temperature of
    sampling + filtering (which gets, per task, the tokens MCTS spent)."""

    task_sets: tuple[str, ...] = CODE_TASK_SETS
    heldout_limit: int = 0
    humaneval_limit: int = 0
    search: CodeSearchConfig = field(default_factory=CodeSearchConfig)
    filter_temperature: float = 0.8
    adapter: bool = True  # also with chapter 08's trained adapter, when its run left one

    def __post_init__(self) -> None:
        unknown = [name for name in self.task_sets if name not in CODE_TASK_SETS]
        if unknown or self.heldout_limit < 0 or self.humaneval_limit < 0 or self.filter_temperature <= 0:
            raise ValueError(
                f"CodeComparisonConfig needs task sets among {', '.join(CODE_TASK_SETS)}, limits >= 0 and a "
                f"temperature > 0, got {self.task_sets}, {self.heldout_limit}, {self.humaneval_limit}, "
                f"{self.filter_temperature}"
            )

    def quick(self) -> CodeComparisonConfig:
        return replace(self, heldout_limit=4, humaneval_limit=1, search=self.search.quick())

    def limit_of(self, task_set: str) -> int:
        return self.heldout_limit if task_set == "heldout" else self.humaneval_limit
