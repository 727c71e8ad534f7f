"""Chapter 06, part two: MCTS over lines of code valued by the task's visible tests (as PG-TD, Zhang et al., ICLR 2023),
and the two methods it is compared with — greedy decoding and sampling + filtering — all on one line decoder.

The search (:func:`search_program`) runs :class:`slmlab.mcts.core.MCTS` over :class:`~slmlab.mcts.code_env.CodeEnvironment`
with batched rounds and virtual loss (``parallel_leaves``). Its evaluator (:class:`CodeEvaluator`) gives:

- priors: RESAMPLE gets the probability, at the resample temperature, of a last line not tried yet
  (:attr:`~slmlab.mcts.code_env.CodeEnvironment.untried_chance`: 1 minus the chances of the line and of those it
  replaced), kept within [:data:`PRIOR_FLOOR`, 1 - :data:`PRIOR_FLOOR`]; the other legal action (CONTINUE, or STOP
  once the program has ended) gets the rest. When every program found so far fails, all values are equal and the
  priors alone share out the visits: a line the model is sure of (a code fence, a signature copied from the prompt)
  is seldom resampled — little else is left to draw there — and a line where it hesitated is tried again often.
- the value of a leaf: a greedy playout from it to the end of the program, whose program is run on the visible tests;
  value = ``2 * pass rate - 1``. A finished (stopped) program is valued the same way. Greedy playouts are remembered
  by the tokens they pass through, so a CONTINUE child — whose playout is the rest of its parent's — costs no
  playout and no sandbox run (and its line was remembered by the playout, so it costs no decoding either).
- without any visible test (``visible_task=None``), the value is the model's likelihood of the reply instead:
  ``2 * exp(mean token log-probability) - 1`` (:func:`~slmlab.mcts.code_env.likelihood_value`); the result says so
  in ``value_source``.

Programs run through a :class:`VisibleScorer`, which holds the visible task only and runs each distinct program once
(cached by :func:`~slmlab.execution.fingerprint.fingerprint`). A program that hangs or floods its output is stopped by
the sandbox's limits and scores 0. The answer is the best program found (highest visible pass rate; ties go to the
earliest), and the first program found is the root's greedy playout, so the search never answers worse than greedy
on the visible tests.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from slmlab.execution import scoring
from slmlab.execution.fingerprint import fingerprint
from slmlab.execution.sandbox import SandboxLimits
from slmlab.execution.scoring import Score
from slmlab.execution.tasks import CodeTask
from slmlab.mcts.code_env import CodeEnvironment, LineAction, likelihood_value
from slmlab.mcts.core import MCTS, Node, Policy, search_tree
from slmlab.mcts.spec import CodeSearchConfig

__all__ = [
    "CodeEvaluator",
    "CodeSearchConfig",
    "CodeSearchResult",
    "Playout",
    "ProgramRecord",
    "VisibleScorer",
    "best_program",
    "describe_tree",
    "filter_programs",
    "greedy_program",
    "line_priors",
    "program_key",
    "sampled_program",
    "search_program",
]

VISIBLE_TESTS, LIKELIHOOD = "visible tests", "likelihood"  # what valued the programs (CodeSearchResult.value_source)
PRIOR_FLOOR = 0.05  # neither action's prior drops below this, so the search may still try it


def program_key(code: str) -> str:
    """The cache key of a program: its :func:`fingerprint` (comments, docstrings, formatting and local names do not
    count). Code that the fingerprint cannot normalise (nesting too deep for it) is keyed by its exact text."""
    try:
        return fingerprint(code)
    except (RecursionError, ValueError, MemoryError):
        return "text:" + hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class VisibleScorer:
    """Runs programs against a task's visible tests in the sandbox, each distinct program (:func:`program_key`) once;
    counts sandbox ``runs`` and cache ``hits``. ``visible_task`` is the only task it ever runs; with None it runs
    nothing (a problem without visible tests) and :meth:`score` refuses."""

    def __init__(self, visible_task: CodeTask | None, limits: SandboxLimits = SandboxLimits(), cache: bool = True):
        if visible_task is not None and visible_task.kind != "check" and not visible_task.tests:
            raise ValueError(f"task '{visible_task.name}' has no visible test: pass None for a problem without any")
        self.task, self.limits, self.cache = visible_task, limits, cache  # cache off: the benchmark's baseline
        self.runs = self.hits = 0
        self._scores: dict[str, Score] = {}

    def score(self, code: str) -> Score:
        """The sandbox's :class:`~slmlab.execution.scoring.Score` of ``code`` on the visible tests (cached)."""
        if self.task is None:
            raise ValueError("this scorer has no visible test to run")
        key = program_key(code)
        if key in self._scores and self.cache:
            self.hits += 1
        else:
            self.runs += 1
            self._scores[key] = scoring.score_program(self.task, code, self.limits)
        return self._scores[key]

    def rate(self, code: str) -> float:
        """The share of visible tests ``code`` passes (0 for a program that fails to load, hangs or floods)."""
        score = self.score(code)
        return score.passed / score.total if score.total else 0.0


@dataclass
class ProgramRecord:
    """A distinct program the search produced: its code, its value in [-1, 1] (what the search backed up; fixed when
    first found), its visible pass rate and sandbox status (None and "likelihood" without visible tests), the model's
    likelihood of the reply it came from, the generated tokens spent when it was first found, and how often it came."""

    code: str
    value: float
    visible_rate: float | None
    status: str
    likelihood: float
    tokens: int
    found: int = 1

    @property
    def solved(self) -> bool:
        """It passes every visible test."""
        return self.status == "passed"


def best_program(programs: Sequence[ProgramRecord]) -> ProgramRecord:
    """The program with the highest value (the visible pass rate, or the likelihood); ties go to the earliest found."""
    if not programs:
        raise ValueError("no program to choose from")
    return max(programs, key=lambda record: record.value)  # max keeps the first of equal values


def line_priors(state: CodeEnvironment) -> Policy:
    """RESAMPLE's prior is the chance of a last line not tried yet (``state.untried_chance``) within [PRIOR_FLOOR,
    1 - PRIOR_FLOOR]; the other legal action gets the rest (the module docstring says why)."""
    legal = state.legal_actions()
    if LineAction.RESAMPLE not in legal:
        return {legal[0]: 1.0}
    untried = min(max(state.untried_chance, PRIOR_FLOOR), 1.0 - PRIOR_FLOOR)
    return {legal[0]: 1.0 - untried, LineAction.RESAMPLE: untried}


class CodeEvaluator:
    """The search's :class:`~slmlab.mcts.core.Evaluator`: priors from :func:`line_priors`, values from greedy playouts
    scored by ``scorer`` (or valued by likelihood when it is None). Every distinct program is kept in ``programs``,
    in the order found. With ``stop_when_solved``, once a program passes every visible test, leaves still to be
    evaluated in the same round get the neutral value 0 without a playout (the search ends after that round)."""

    def __init__(self, scorer: VisibleScorer | None, stop_when_solved: bool = True):
        self.scorer = scorer if scorer is not None and scorer.task is not None else None
        self.stop_when_solved = stop_when_solved
        self.programs: list[ProgramRecord] = []
        self._by_key: dict[str, ProgramRecord] = {}
        # (token ids, ended) → the program the greedy playout from there ends in
        self._ends: dict[tuple[tuple[int, ...], bool], ProgramRecord] = {}

    @property
    def value_source(self) -> str:
        return VISIBLE_TESTS if self.scorer is not None else LIKELIHOOD

    @property
    def solved(self) -> bool:
        return any(record.solved for record in self.programs)

    def evaluate(self, state: CodeEnvironment) -> tuple[Policy, float]:
        priors = line_priors(state)
        if self.stop_when_solved and self.solved:
            return priors, 0.0
        return priors, self.playout_record(state).value

    def value_of(self, state: CodeEnvironment) -> float:
        """A stopped state's value (the environment's ``value_fn``): its program's."""
        return self.playout_record(state).value

    def record_at(self, state: CodeEnvironment) -> ProgramRecord | None:
        """The program ``state``'s value came from, if it was valued."""
        return self._ends.get((state.ids, state.ended))

    def playout_record(self, state: CodeEnvironment) -> ProgramRecord:
        """The program the greedy playout from ``state`` ends in (``state``'s own when it has ended), scored and
        recorded; every line boundary the playout passes is remembered, so states on its way cost nothing later."""
        key = (state.ids, state.ended)
        if key not in self._ends:
            end = state if state.ended else state.playout()
            record = self.record(end)
            length = len(state.ids)
            for line in end.lines[len(state.lines) : -1]:
                length += len(line.token_ids)
                self._ends[(end.ids[:length], False)] = record
            self._ends[(end.ids, True)] = record
            self._ends[key] = record
        return self._ends[key]

    def record(self, end: CodeEnvironment) -> ProgramRecord:
        """Value the program of an ended state and keep it (a program already kept only counts once more)."""
        code = end.program
        if self.scorer is not None:
            score = self.scorer.score(code)
            rate = score.passed / score.total if score.total else 0.0
            value, status = 2.0 * rate - 1.0, score.status
        else:
            rate, value, status = None, likelihood_value(end), LIKELIHOOD
        key = program_key(code)
        if key in self._by_key:
            self._by_key[key].found += 1
            return self._by_key[key]
        record = ProgramRecord(code, value, rate, status, end.likelihood, end.spent["tokens"])
        self._by_key[key] = record
        self.programs.append(record)
        return record


@dataclass
class CodeSearchResult:
    """What a search (or sampling + filtering) answered and spent. ``tokens`` counts every generated token (steps,
    playouts, resamples, samples); ``programs`` every distinct program, in the order found; ``root`` the search tree
    (None for filtering) and ``simulations`` how many simulations ran before it stopped."""

    code: str
    visible_rate: float | None
    solved_visible: bool
    tokens: int
    sandbox_runs: int
    cache_hits: int
    seconds: float
    programs: list[ProgramRecord]
    value_source: str
    root: Node | None = field(default=None, repr=False)
    simulations: int = 0
    evaluator: CodeEvaluator | None = field(default=None, repr=False)  # for describe_tree


class Playout(NamedTuple):
    """One whole program decoded line by line: its code, generated tokens and seconds."""

    code: str
    tokens: int
    seconds: float


def _result(evaluator: CodeEvaluator, tokens: int, start: float, root: Node | None, simulations: int) -> CodeSearchResult:
    best = best_program(evaluator.programs)
    scorer = evaluator.scorer
    return CodeSearchResult(
        code=best.code,
        visible_rate=best.visible_rate,
        solved_visible=best.solved,
        tokens=tokens,
        sandbox_runs=scorer.runs if scorer else 0,
        cache_hits=scorer.hits if scorer else 0,
        seconds=time.perf_counter() - start,
        programs=list(evaluator.programs),
        value_source=evaluator.value_source,
        root=root,
        simulations=simulations,
        evaluator=evaluator,
    )


def search_program(
    model,
    task: CodeTask,
    visible_task: CodeTask | None,
    config: CodeSearchConfig = CodeSearchConfig(),
    limits: SandboxLimits = SandboxLimits(),
) -> CodeSearchResult:
    """MCTS over lines for ``task`` (only its prompt is read), valued on ``visible_task``'s tests (None: by
    likelihood). The root's greedy program is found first; then rounds of ``parallel_leaves`` simulations run until
    ``simulations`` are done or, with ``stop_when_solved``, a program passes every visible test."""
    start = time.perf_counter()
    evaluator = CodeEvaluator(VisibleScorer(visible_task, limits, config.cache_scores), config.stop_when_solved)
    state = CodeEnvironment(model, task, config, value_fn=evaluator.value_of)
    evaluator.evaluate(state)  # the greedy program, found before any simulation (the root's expansion reuses it)
    root, done = Node(prior=1.0, state=state), 0
    while done < config.simulations and not (config.stop_when_solved and evaluator.solved):
        leaves = min(config.parallel_leaves, config.simulations - done)
        MCTS(replace(config.mcts(), num_simulations=leaves), evaluator).run(state, root=root)  # one batched round
        done += leaves
    return _result(evaluator, state.spent["tokens"], start, root, done)


def greedy_program(model, task: CodeTask, config: CodeSearchConfig = CodeSearchConfig()) -> Playout:
    """Greedy decoding by the search's line decoder: CONTINUE until the program has ended."""
    start = time.perf_counter()
    end = CodeEnvironment(model, task, config).playout()
    return Playout(end.program, end.spent["tokens"], time.perf_counter() - start)


def sampled_program(
    model, task: CodeTask, config: CodeSearchConfig = CodeSearchConfig(), temperature: float = 0.8, seed: int = 0
) -> Playout:
    """One program with every line sampled at ``temperature`` (one generator seeded with ``seed``)."""
    start = time.perf_counter()
    end = CodeEnvironment(model, task, config).playout(temperature, seed)
    return Playout(end.program, end.spent["tokens"], time.perf_counter() - start)


def filter_programs(
    model,
    task: CodeTask,
    visible_task: CodeTask | None,
    config: CodeSearchConfig = CodeSearchConfig(),
    token_budget: int = 1,
    temperature: float | None = None,
    limits: SandboxLimits = SandboxLimits(),
) -> CodeSearchResult:
    """Sampling + filtering: whole programs sampled at ``temperature`` (default: the config's resample temperature),
    seeds ``config.seed``, ``config.seed + 1``, ..., all from one encoded prompt, until ``token_budget`` generated tokens
    are spent (the last sample may go past it; a sample counts at least one token) or, with ``stop_when_solved``, a
    sample passes every visible test. The answer is the best visible pass rate (ties: the first), or the most likely
    program without visible tests."""
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    temperature = config.resample_temperature if temperature is None else temperature
    if temperature <= 0:
        raise ValueError(f"sampling needs a temperature > 0, got {temperature}")
    start = time.perf_counter()
    evaluator = CodeEvaluator(VisibleScorer(visible_task, limits, config.cache_scores), config.stop_when_solved)
    root = CodeEnvironment(model, task, config)
    counted, number = 0, 0
    while counted < token_budget and not (config.stop_when_solved and evaluator.solved):
        before = root.spent["tokens"]
        evaluator.record(root.playout(temperature, config.seed + number))
        counted += max(1, root.spent["tokens"] - before)
        number += 1
    return _result(evaluator, root.spent["tokens"], start, None, 0)


def describe_tree(result: CodeSearchResult, max_depth: int = 3) -> dict[str, Any]:
    """:func:`~slmlab.mcts.core.search_tree` of a search, each node with the ``line`` its action wrote ("" for the
    root and STOP) and the ``rate`` (visible pass rate, None where not valued or without visible tests) and ``code`` of
    the program its value came from, for drawing."""
    if result.root is None or result.evaluator is None:
        raise ValueError("only a search has a tree (filtering has none)")
    evaluator = result.evaluator

    def annotate(entry: dict[str, Any], node: Node) -> None:
        state = node.state
        record = evaluator.record_at(state) if state is not None else None
        wrote = entry["action"] in (LineAction.CONTINUE, LineAction.RESAMPLE)
        entry["line"] = state.lines[-1].text if wrote and state is not None else ""
        entry["rate"] = record.visible_rate if record else None
        entry["code"] = record.code if record else None
        for child in entry["children"]:
            annotate(child, node.children[child["action"]])

    tree = search_tree(result.root, max_depth)
    annotate(tree, result.root)
    return tree
