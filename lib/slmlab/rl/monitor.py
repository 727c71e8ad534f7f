"""Watching chapter 08's learner: tokens of the generated code against the reference solutions, the policy's next-token
choices, the size of each weight update, the run's rotating log, a live terminal panel and per-task tables of attempts.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import math
import re
import time
import tokenize
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import torch
    from rich.console import Console
    from rich.table import Table

STRING = "<STR>"  # every string literal (f-strings included) counts as this one token
LOG_FILE = "train.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
ATTEMPTS_FILE = "attempts.jsonl"
ATTEMPT_COLUMNS = ("step", "task", "family", "sample", "reward", "status", "duplicate", "hint", "tokens", "code")
ATTEMPTS_TABLE_COLUMNS = ("family", "attempts", "executed", "best_reward", "mean_reward", "pass_rate", "first_pass_step", "hints")

# --- tokens of generated code -------------------------------------------------------------------------------------
_SKIPPED = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
    tokenize.ENCODING,
}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ splits an f-string into parts
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
# The fallback for code tokenize refuses (unclosed brackets, bad dedents, stray quotes): comments, strings (closed or
# not), numbers, names, the multi-character operators, then any other visible character.
_FALLBACK = re.compile(
    r"(?P<comment>#[^\n]*)"
    r"|(?P<string>[rbuf]{0,2}(?:\"\"\"[\s\S]*?(?:\"\"\"|$)|'''[\s\S]*?(?:'''|$)|\"[^\"\n]*\"?|'[^'\n]*'?))"
    r"|(?P<number>\d[\w.]*)"
    r"|(?P<name>[^\W\d]\w*)"
    r"|(?P<op>\*\*=?|//=?|>>=?|<<=?|->|\.\.\.|:=|[-+*/%&|^@<>=!:]=|\S)",
    re.IGNORECASE,
)


def _tokenize_lines(code: str) -> list[tuple[int, str]]:
    """(line number, token) for each token as the stdlib tokenizer reads it; raises on code it cannot read."""
    tokens: list[tuple[int, str]] = []
    depth = 0  # inside an f-string (3.12+), whose parts collapse into one <STR>
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == _FSTRING_START:
            depth += 1
            if depth == 1:
                tokens.append((token.start[0], STRING))
        elif token.type == _FSTRING_END:
            depth -= 1
        elif depth or token.type in _SKIPPED:
            continue
        elif token.type == tokenize.ERRORTOKEN:
            if token.string.strip():
                raise SyntaxError(f"cannot tokenize {token.string!r}")
        else:
            tokens.append((token.start[0], STRING if token.type == tokenize.STRING else token.string))
    return tokens


def _regex_lines(code: str) -> list[tuple[int, str]]:
    tokens = []
    for match in _FALLBACK.finditer(code):
        if match.lastgroup != "comment":
            line = code.count("\n", 0, match.start()) + 1
            tokens.append((line, STRING if match.lastgroup == "string" else match.group()))
    return tokens


def line_tokens(code: str) -> list[list[str]]:
    """The tokens of ``code`` grouped by the line they start on (lines without tokens left out), as
    :func:`code_tokens` reads them."""
    try:
        located = _tokenize_lines(code)
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        located = _regex_lines(code)
    lines: dict[int, list[str]] = {}
    for line, token in located:
        lines.setdefault(line, []).append(token)
    return list(lines.values())


def code_tokens(code: str) -> list[str]:
    """The Python tokens of ``code``: names and keywords, operators, numbers as written, each string literal as
    ``<STR>``; comments, newlines and indentation left out. Code the stdlib ``tokenize`` refuses (generated code often
    is broken) is split with a regular expression into the same kinds of tokens."""
    return [token for line in line_tokens(code) for token in line]


@dataclass(frozen=True)
class TokenReport:
    """Token usage of a set of programs: ``frequencies`` (every token: token, count, share, most used first),
    ``cooccurrence`` (the ``top`` pairs of distinct tokens most often on the same line: first, second, count — a line
    counts once per pair, first < second), and, against reference solutions, ``overused`` / ``underused`` (the ``top``
    tokens with the highest / lowest log_ratio: token, generated_share, reference_share, log_ratio), None without
    references."""

    programs: int
    tokens: int
    frequencies: pd.DataFrame
    cooccurrence: pd.DataFrame
    overused: pd.DataFrame | None = None
    underused: pd.DataFrame | None = None


def _frequencies(counts: Counter) -> pd.DataFrame:
    total = sum(counts.values())
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    table = pd.DataFrame(rows, columns=["token", "count"])
    table["count"] = table["count"].astype(int)
    table["share"] = table["count"] / total if total else 0.0
    return table


def _cooccurrence(codes: Sequence[str], top: int) -> pd.DataFrame:
    pairs: Counter = Counter()
    for code in codes:
        for line in line_tokens(code):
            pairs.update(combinations(sorted(set(line)), 2))
    rows = [(first, second, count) for (first, second), count in sorted(pairs.items(), key=lambda item: (-item[1], item[0]))]
    table = pd.DataFrame(rows[:top], columns=["first", "second", "count"])
    table["count"] = table["count"].astype(int)
    return table


def _usage_against(generated: Counter, reference: Counter) -> pd.DataFrame:
    """Every token of either side with both raw shares and log(smoothed generated share / smoothed reference share),
    each share add-one smoothed over the joint vocabulary, (count + 1) / (total + vocabulary), so a token one side
    never used still has a finite ratio."""
    vocabulary = sorted(set(generated) | set(reference))
    generated_total, reference_total = sum(generated.values()), sum(reference.values())
    rows = []
    for token in vocabulary:
        smoothed_generated = (generated[token] + 1) / (generated_total + len(vocabulary))
        smoothed_reference = (reference[token] + 1) / (reference_total + len(vocabulary))
        rows.append(
            {
                "token": token,
                "generated_share": generated[token] / generated_total if generated_total else 0.0,
                "reference_share": reference[token] / reference_total if reference_total else 0.0,
                "log_ratio": math.log(smoothed_generated / smoothed_reference),
            }
        )
    return pd.DataFrame(rows, columns=["token", "generated_share", "reference_share", "log_ratio"])


def token_report(codes: Sequence[str], reference_codes: Sequence[str] | None = None, top: int = 20) -> TokenReport:
    """Token frequencies and same-line pairs of ``codes`` and, given ``reference_codes`` (the tasks' solutions), the
    tokens the generated code uses more (log_ratio > 0) or less (< 0) than the references; see :class:`TokenReport`."""
    counts = Counter(token for code in codes for token in code_tokens(code))
    overused = underused = None
    if reference_codes is not None:
        usage = _usage_against(counts, Counter(token for code in reference_codes for token in code_tokens(code)))
        overused = usage[usage["log_ratio"] > 0].sort_values(["log_ratio", "token"], ascending=[False, True])
        underused = usage[usage["log_ratio"] < 0].sort_values(["log_ratio", "token"], ascending=[True, True])
        overused, underused = overused.head(top).reset_index(drop=True), underused.head(top).reset_index(drop=True)
    return TokenReport(
        programs=len(codes),
        tokens=sum(counts.values()),
        frequencies=_frequencies(counts),
        cooccurrence=_cooccurrence(codes, top),
        overused=overused,
        underused=underused,
    )


# --- the policy's next-token choices ------------------------------------------------------------------------------
def next_token_table(model: Any, tokenizer: Any, prompt_ids: list[int], completion_ids: list[int], top: int = 5) -> pd.DataFrame:
    """How the policy saw a completion, from one teacher-forced pass over prompt + completion without gradients: per
    completion token its position (0-based), id, text, the probability the model gave it, the entropy (nats) of the
    distribution it was drawn from and the ``top`` most likely tokens there (alternatives, alternative_probabilities).
    ``model`` is a transformers causal LM (a PEFT model too) or a module mapping token ids to logits."""
    import torch

    if not prompt_ids:
        raise ValueError("next_token_table needs at least one prompt token: it predicts the first completion token.")
    columns = ["position", "token_id", "token", "probability", "entropy", "alternatives", "alternative_probabilities"]
    if not completion_ids:
        return pd.DataFrame(columns=columns)
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(ids)
    finally:
        model.train(was_training)
    logits = getattr(output, "logits", output)[0].float()
    start = len(prompt_ids) - 1  # the logits at position i predict token i + 1
    log_probs = torch.log_softmax(logits[start : start + len(completion_ids)], dim=-1).cpu()
    probs = log_probs.exp()
    entropy = -(probs * log_probs).sum(dim=-1)
    chosen = torch.tensor(completion_ids, dtype=torch.long)
    chosen_probs = probs.gather(1, chosen[:, None])[:, 0]
    top_probs, top_ids = probs.topk(min(top, probs.shape[-1]), dim=-1)
    rows = []
    for position, token_id in enumerate(completion_ids):
        rows.append(
            {
                "position": position,
                "token_id": int(token_id),
                "token": tokenizer.decode([int(token_id)]),
                "probability": float(chosen_probs[position]),
                "entropy": float(entropy[position]),
                "alternatives": [tokenizer.decode([int(i)]) for i in top_ids[position]],
                "alternative_probabilities": [float(p) for p in top_probs[position]],
            }
        )
    return pd.DataFrame(rows, columns=columns)


# --- how much the weights move ------------------------------------------------------------------------------------
class WeightChangeMonitor:
    """The relative size of each update of the tracked parameters, ||w_t - w_{t-1}|| / ||w_{t-1}|| over all of them
    together (a LoRA B matrix starts at zero, so a per-tensor ratio would divide by zero), with a WARNING once
    ``patience`` updates in a row moved the weights by more than ``explode`` (training about to diverge) or by less
    than ``vanish`` (nothing is learned: a zero gradient or learning rate). The previous weights are a CPU copy."""

    def __init__(
        self,
        parameters: Iterable[tuple[str, torch.nn.Parameter]],
        explode: float,
        vanish: float,
        patience: int = 3,
        logger: logging.Logger | None = None,
    ) -> None:
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError("WeightChangeMonitor needs at least one parameter to track.")
        if not 0 <= vanish < explode or patience < 1:
            raise ValueError(
                f"WeightChangeMonitor needs 0 <= vanish < explode and patience >= 1 "
                f"(got vanish={vanish}, explode={explode}, patience={patience})."
            )
        self.explode, self.vanish, self.patience = explode, vanish, patience
        self.logger = logger or logging.getLogger("slmlab.rl")
        self.warnings: list[str] = []
        self.updates = 0
        self.fast_streak = self.slow_streak = 0
        self.last: float | None = None
        self._snapshot = self._copy()

    def _copy(self) -> list[torch.Tensor]:
        import torch

        return [parameter.detach().to("cpu", dtype=torch.float32, copy=True) for _, parameter in self.parameters]

    def update(self) -> float:
        """The relative change since the previous update (or since the monitor was made or loaded); warns as above."""
        current = self._copy()
        change = math.sqrt(sum(float((now - before).square().sum()) for now, before in zip(current, self._snapshot)))
        size = math.sqrt(sum(float(before.square().sum()) for before in self._snapshot))
        self._snapshot = current
        self.updates += 1
        self.last = relative = change / (size + 1e-12)
        self.fast_streak = self.fast_streak + 1 if relative > self.explode else 0
        self.slow_streak = self.slow_streak + 1 if relative < self.vanish else 0
        if self.fast_streak == self.patience:
            self._warn(
                f"weights changing fast: relative change above {self.explode:g} for {self.patience} updates "
                f"in a row (now {relative:.3g}, update {self.updates})"
            )
        if self.slow_streak == self.patience:
            self._warn(
                f"weights barely changing: relative change below {self.vanish:g} for {self.patience} updates "
                f"in a row (now {relative:.3g}, update {self.updates})"
            )
        return relative

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.logger.warning(message)

    def state_dict(self) -> dict[str, int]:
        """The update count and streaks, as plain JSON values (the weights themselves are in the checkpoint)."""
        return {"updates": self.updates, "fast_streak": self.fast_streak, "slow_streak": self.slow_streak}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue the counts of :meth:`state_dict`; the previous weights are copied again from the parameters now."""
        self.updates, self.fast_streak, self.slow_streak = state["updates"], state["fast_streak"], state["slow_streak"]
        self._snapshot = self._copy()


# --- the run's log file -------------------------------------------------------------------------------------------
class _RunLogHandler(logging.handlers.RotatingFileHandler):
    """The handler :func:`run_logger` adds, so :func:`close_run_logger` removes only its own."""


def run_logger(run_dir: Path, name: str = "slmlab.rl", max_bytes: int = 1_000_000, backups: int = 3) -> logging.Logger:
    """The logger ``name`` writing to ``run_dir/train.log`` (time, level, message), rotated at ``max_bytes`` with
    ``backups`` older files kept. Calling it again for the same folder adds nothing; for another folder the previous
    run's file is closed, so one logger never writes into an old run. Records still propagate (to a notebook's or the
    CLI's handlers); a logger without a level is set to INFO."""
    path = (Path(run_dir) / LOG_FILE).resolve()
    logger = logging.getLogger(name)
    for handler in [h for h in logger.handlers if isinstance(h, _RunLogHandler)]:
        if Path(handler.baseFilename) == path:
            return logger
        logger.removeHandler(handler)
        handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _RunLogHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


def close_run_logger(logger: logging.Logger) -> None:
    """Remove and close the file handlers :func:`run_logger` added to ``logger``."""
    for handler in [h for h in logger.handlers if isinstance(h, _RunLogHandler)]:
        logger.removeHandler(handler)
        handler.close()


# --- the live terminal panel --------------------------------------------------------------------------------------
def _number(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


# (label, scalar of the step, format); the step and elapsed time are added around them
PANEL_ROWS = (
    ("reward", "reward", ".3f"),
    ("pass rate", "pass_rate", ".1%"),
    ("duplicate rate", "duplicate_rate", ".1%"),
    ("hints", "hints", "g"),
    ("lr", "lr", ".2e"),
    ("grad norm", "grad_norm", ".3g"),
    ("weight change", "weight_change", ".2e"),
    ("completions/s", "completions_per_s", ".2f"),
)


class LivePanel:
    """A ``rich`` table of the latest step, redrawn in place in the terminal (or a notebook), as a train-loop callback:
    a "step" event (its ``state.step`` and ``state.scalars``) redraws it, starting it when needed; "end" stops it.
    Also ``start()``/``stop()`` and ``with LivePanel(...) as panel:``."""

    def __init__(self, total_steps: int, console: Console | None = None, refresh_per_second: float = 4.0) -> None:
        self.total_steps, self.console, self.refresh_per_second = total_steps, console, refresh_per_second
        self.step = 0
        self.scalars: dict[str, float] = {}
        self.started: float | None = None
        self._live = None

    def render(self) -> Table:
        """The table as it is drawn now."""
        from rich.table import Table

        elapsed = time.monotonic() - self.started if self.started is not None else 0.0
        table = Table(title="REINFORCE on coding tasks", show_header=False)
        table.add_column("metric", style="bold")
        table.add_column("value", justify="right")
        share = f" ({self.step / self.total_steps:.0%})" if self.total_steps else ""
        table.add_row("step", f"{self.step}/{self.total_steps}{share}")
        for label, key, spec in PANEL_ROWS:
            table.add_row(label, _number(self.scalars.get(key), spec))
        table.add_row("elapsed", f"{elapsed:.1f} s")
        return table

    def start(self) -> LivePanel:
        from rich.live import Live

        if self._live is None:
            self.started = time.monotonic() if self.started is None else self.started
            self._live = Live(self.render(), console=self.console, refresh_per_second=self.refresh_per_second)
            self._live.start()
        return self

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None

    def __call__(self, event: str, state: Any) -> None:
        if event == "step":
            self.step, self.scalars = state.step, dict(state.scalars)
            self.start()
            self._live.update(self.render(), refresh=True)
        elif event == "end":
            self.stop()

    def __enter__(self) -> LivePanel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- attempts per task --------------------------------------------------------------------------------------------
def attempts_frame(run_dir: Path) -> pd.DataFrame:
    """The rows of ``run_dir/attempts.jsonl`` (one per completion; a half-written last line of a killed run is left
    out), or an empty frame with the same columns when the file is missing."""
    return pd.DataFrame(attempt_records(Path(run_dir) / ATTEMPTS_FILE), columns=list(ATTEMPT_COLUMNS))


def attempt_records(path: Path) -> list[dict]:
    """The records of an attempts file, without the half-written line a killed run may leave ([] when missing)."""
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _first_pass_step(group: pd.DataFrame) -> float:
    steps = group.loc[group["status"] == "passed", "step"]
    return float(steps.min()) if len(steps) else math.nan


def attempts_table(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per task (the index), sorted by family then task: family, attempts, executed (attempts that were not
    duplicates of an earlier program), best_reward, mean_reward (over all attempts), pass_rate (share of attempts with
    status "passed"), first_pass_step (NaN when it never passed) and hints (how many different hints it was shown)."""
    rows = {}
    for task, group in attempts.groupby("task", sort=False):
        rows[task] = {
            "family": group["family"].iloc[0],
            "attempts": len(group),
            "executed": int((~group["duplicate"].astype(bool)).sum()),
            "best_reward": float(group["reward"].max()),
            "mean_reward": float(group["reward"].mean()),
            "pass_rate": float((group["status"] == "passed").mean()),
            "first_pass_step": _first_pass_step(group),
            "hints": int(group["hint"].dropna().nunique()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(ATTEMPTS_TABLE_COLUMNS))
    table.index.name = "task"
    if table.empty:
        return table
    table = table.astype({"attempts": int, "executed": int, "hints": int, "first_pass_step": float})
    return table.reset_index().sort_values(["family", "task"]).set_index("task")


def per_task_curves(attempts: pd.DataFrame, window: int = 1) -> pd.DataFrame:
    """Mean reward of each task (a column, sorted by name) at each step (the index) it was drawn in, NaN at the
    steps it was not; with ``window`` > 1 each value is the mean over the task's last ``window`` drawn steps."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if attempts.empty:
        return pd.DataFrame(index=pd.Index([], name="step", dtype=int))
    curves = attempts.pivot_table(index="step", columns="task", values="reward", aggfunc="mean").sort_index()
    curves = curves.reindex(sorted(curves.columns), axis=1)
    if window > 1:
        for task in curves.columns:
            drawn = curves[task].dropna()
            curves.loc[drawn.index, task] = drawn.rolling(window, min_periods=1).mean()
    curves.columns.name = "task"
    return curves
