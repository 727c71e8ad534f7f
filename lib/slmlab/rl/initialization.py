"""Weight-initialization diagnostics of chapter 08's from-scratch policy: explicit init schemes, per-tensor statistics,
health checks (tiny or exploded scales, offset means, NaN/Inf, an over-confident first output) and automatic repair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slmlab.errors import SlmLabError

if TYPE_CHECKING:
    import numpy
    import pandas
    import torch

# Each scheme draws a Linear or Embedding weight of shape (fan_out, fan_in) = (rows, columns) as torch.nn.init does:
# - "normal": N(0, std^2), the GPT-2 / Llama default (transformers' ``initializer_range``), whatever the shape;
# - "xavier_uniform": U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), variance 2 / (fan_in + fan_out) (Glorot);
# - "xavier_normal": N(0, 2 / (fan_in + fan_out));
# - "kaiming_uniform": U(-b, b) with b = sqrt(6 / fan_in), variance 2 / fan_in (He, gain sqrt(2) for ReLU-like units);
# - "kaiming_normal": N(0, 2 / fan_in);
# - "orthogonal": a (semi-)orthogonal matrix, gain 1: W W^T = I for a square W (Saxe et al.), rows or columns
#   orthonormal for a rectangular one.
INIT_SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal")
# The schemes ``ensure_good_initialization`` falls back to, in order, when the model as built fails a check.
REPAIR_SCHEMES = ("normal", "xavier_normal", "orthogonal")
AS_BUILT = "as built"  # the scheme named in a report's history for the model before any re-initialization
OUTPUT = "output"  # the tensor named by a problem of the model's first output


class InitializationError(SlmLabError, RuntimeError):
    """Every re-initialization scheme tried still fails a check; ``report`` holds the last report and its history."""

    def __init__(self, message: str, report: InitReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class InitCheckConfig:
    """The limits of a healthy initialization. A weight matrix (2-D or more) with a standard deviation under
    ``min_std`` (1e-4) is near-constant, so its units learn the same thing; one over ``max_std`` (1.0) has exploded
    (the usual scales are 0.02 to about 0.3); a mean beyond ``max_abs_mean`` (0.1) shifts every unit the same way. The
    first output's mean next-token entropy must be at least ``min_entropy_ratio`` (0.5) of the uniform policy's
    ln(vocabulary): a policy that starts peaked barely explores, so REINFORCE sees the same few programs."""

    min_std: float = 1e-4
    max_std: float = 1.0
    max_abs_mean: float = 0.1
    min_entropy_ratio: float = 0.5


@dataclass(frozen=True)
class Problem:
    """One failed check: the tensor (a parameter name, or ``"output"``), the check, the measured value and its limit."""

    tensor: str
    check: str  # "nan_inf", "near_zero_std", "large_std", "large_mean" or "peaked_output"
    value: float
    limit: float

    def describe(self) -> str:
        return f"{self.tensor}: {self.check} ({self.value:.4g}, limit {self.limit:.4g})"


@dataclass(frozen=True)
class Attempt:
    """One round of ``ensure_good_initialization``: the scheme and seed applied (none for the model as built) and the
    problems the checks found afterwards."""

    scheme: str
    seed: int | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class InitReport:
    """The result of the checks: the problems found, the output entropy measured, the per-tensor statistics and, from
    ``ensure_good_initialization``, the history of attempts (the last one is this report's)."""

    problems: tuple[Problem, ...]
    entropy: dict[str, float]
    statistics: pandas.DataFrame = field(compare=False, repr=False)
    attempts: tuple[Attempt, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """A few readable lines: the verdict, the entropy ratio, each problem, and each attempt of a repair."""
        lines = [
            f"{'ok' if self.ok else 'FAILED'}: output entropy {self.entropy['entropy']:.3f} nats = "
            f"{self.entropy['ratio']:.2f} x uniform ({self.entropy['uniform_entropy']:.3f})"
        ]
        lines += [f"  {problem.describe()}" for problem in self.problems]
        for attempt in self.attempts:
            seed = "" if attempt.seed is None else f" (seed {attempt.seed})"
            lines.append(f"  attempt {attempt.scheme}{seed}: {'ok' if attempt.ok else f'{len(attempt.problems)} problem(s)'}")
        return "\n".join(lines)


def _draw(scheme: str, std: float) -> Callable[[torch.Tensor, torch.Generator], Any]:
    """The torch.nn.init call of ``scheme`` (the formulas are in the comment above ``INIT_SCHEMES``)."""
    from torch.nn import init

    draws = {
        "normal": lambda tensor, generator: init.normal_(tensor, 0.0, std, generator=generator),
        "xavier_uniform": lambda tensor, generator: init.xavier_uniform_(tensor, generator=generator),
        "xavier_normal": lambda tensor, generator: init.xavier_normal_(tensor, generator=generator),
        "kaiming_uniform": lambda tensor, generator: init.kaiming_uniform_(tensor, nonlinearity="relu", generator=generator),
        "kaiming_normal": lambda tensor, generator: init.kaiming_normal_(tensor, nonlinearity="relu", generator=generator),
        "orthogonal": lambda tensor, generator: init.orthogonal_(tensor, generator=generator),
    }
    if scheme not in draws:
        raise ValueError(f"Unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}.")
    return draws[scheme]


def _is_norm(module: torch.nn.Module) -> bool:
    """LayerNorm, RMSNorm and the transformers norms (LlamaRMSNorm, ...), recognised by their class name."""
    return "Norm" in type(module).__name__


def initialize(model: torch.nn.Module, scheme: str = "normal", std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Re-initialize ``model`` in place and return it: every Linear and Embedding weight drawn with ``scheme`` (``std``
    is used by "normal" only), every norm weight set to 1, every bias to 0; an Embedding's padding row stays 0 as
    ``nn.Embedding`` does. A tied matrix is drawn once. The draws are made in float32 on the CPU from one generator
    seeded with ``seed``, then copied in, so a seed gives the same weights on any device and dtype."""
    import torch

    draw = _draw(scheme, std)
    generator = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    drawn = 0
    with torch.no_grad():
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                if name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                    values = torch.empty(parameter.shape, dtype=torch.float32)
                    draw(values, generator)
                    if isinstance(module, torch.nn.Embedding) and module.padding_idx is not None:
                        values[module.padding_idx] = 0.0
                    parameter.copy_(values)
                    drawn += 1
                elif name == "bias":
                    parameter.zero_()
                elif name == "weight" and _is_norm(module):
                    parameter.fill_(1.0)
    if not drawn:
        raise ValueError(f"{type(model).__name__} has no Linear or Embedding weight to initialize.")
    return model


def _named_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Each parameter tensor once (a tied matrix under its first name), detached, as float64 on the CPU."""
    import torch

    for name, parameter in model.named_parameters():
        yield name, parameter.detach().to("cpu", dtype=torch.float64)


def weight_statistics(model: torch.nn.Module) -> pandas.DataFrame:
    """One row per parameter tensor: name, shape, size, mean, std (population), min and max over its finite entries
    (NaN when it has none), and the counts of NaN and infinite entries."""
    import pandas
    import torch

    rows = []
    for name, values in _named_tensors(model):
        finite = values[torch.isfinite(values)]
        empty = finite.numel() == 0
        rows.append(
            {
                "name": name,
                "shape": tuple(values.shape),
                "size": values.numel(),
                "mean": math.nan if empty else finite.mean().item(),
                "std": math.nan if empty else finite.std(correction=0).item(),
                "min": math.nan if empty else finite.min().item(),
                "max": math.nan if empty else finite.max().item(),
                "nan": int(torch.isnan(values).sum()),
                "inf": int(torch.isinf(values).sum()),
            }
        )
    return pandas.DataFrame(rows, columns=["name", "shape", "size", "mean", "std", "min", "max", "nan", "inf"])


def _as_batch(model: torch.nn.Module, input_ids: Any) -> torch.Tensor:
    """``input_ids`` (a tensor or nested lists of token ids) as a 2-D long tensor on the model's device."""
    import torch

    device = next(model.parameters()).device
    ids = torch.as_tensor(input_ids, dtype=torch.long, device=device)
    return ids.unsqueeze(0) if ids.dim() == 1 else ids


def output_entropy(model: torch.nn.Module, input_ids: Any) -> dict[str, float]:
    """The mean next-token entropy in nats over every position of a small batch (``entropy``), the uniform policy's
    ln(vocabulary) (``uniform_entropy``) and their ratio (``ratio``, 1 for a uniform start). ``model`` is a
    transformers causal LM or any module mapping token ids to logits; it runs once in eval mode, without gradients."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(_as_batch(model, input_ids))
    finally:
        model.train(was_training)
    logits = getattr(output, "logits", output).float()
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1).mean().item()
    uniform = math.log(logits.shape[-1])
    return {"entropy": entropy, "uniform_entropy": uniform, "ratio": entropy / uniform}


def _weight_problems(statistics: pandas.DataFrame, config: InitCheckConfig) -> list[Problem]:
    """NaN/Inf in any tensor; std and mean limits on the weight matrices (norm weights and biases are constant)."""
    problems = []
    for row in statistics.itertuples(index=False):
        if row.nan or row.inf:
            problems.append(Problem(row.name, "nan_inf", float(row.nan + row.inf), 0.0))
            continue
        if len(row.shape) < 2 or row.size < 2:
            continue
        if row.std < config.min_std:
            problems.append(Problem(row.name, "near_zero_std", row.std, config.min_std))
        if row.std > config.max_std:
            problems.append(Problem(row.name, "large_std", row.std, config.max_std))
        if abs(row.mean) > config.max_abs_mean:
            problems.append(Problem(row.name, "large_mean", row.mean, config.max_abs_mean))
    return problems


def check_initialization(model: torch.nn.Module, input_ids: Any, config: InitCheckConfig | None = None) -> InitReport:
    """Check every parameter tensor and the first output on ``input_ids`` against ``config``'s limits: NaN/Inf,
    near-zero or exploded std and a large mean of the weight matrices, and an initial output entropy below
    ``min_entropy_ratio`` x ln(vocabulary) (or not finite) reported as ``peaked_output`` of the tensor ``"output"``."""
    config = config or InitCheckConfig()
    statistics = weight_statistics(model)
    problems = _weight_problems(statistics, config)
    entropy = output_entropy(model, input_ids)
    if not math.isfinite(entropy["ratio"]) or entropy["ratio"] < config.min_entropy_ratio:
        problems.append(Problem(OUTPUT, "peaked_output", entropy["ratio"], config.min_entropy_ratio))
    return InitReport(tuple(problems), entropy, statistics)


def ensure_good_initialization(
    model: torch.nn.Module,
    input_ids: Any,
    schemes: Sequence[str] = REPAIR_SCHEMES,
    config: InitCheckConfig | None = None,
    seed: int = 0,
) -> InitReport:
    """Check ``model`` as built; while a check fails, re-initialize it in place with the next of ``schemes`` (the k-th
    with seed ``seed + k``) and check again. Returns the passing report with the history of every attempt; raises
    :class:`InitializationError` naming each attempt's problems when none passes."""
    unknown = [scheme for scheme in schemes if scheme not in INIT_SCHEMES]
    if unknown:  # fail before the model is touched
        raise ValueError(f"Unknown init scheme {', '.join(map(repr, unknown))}; choose from {', '.join(INIT_SCHEMES)}.")
    report = check_initialization(model, input_ids, config)
    attempts = [Attempt(AS_BUILT, None, report.problems)]
    for offset, scheme in enumerate(schemes):
        if report.ok:
            break
        initialize(model, scheme, seed=seed + offset)
        report = check_initialization(model, input_ids, config)
        attempts.append(Attempt(scheme, seed + offset, report.problems))
    report = InitReport(report.problems, report.entropy, report.statistics, tuple(attempts))
    if not report.ok:
        tried = "; ".join(
            f"{attempt.scheme}: " + ", ".join(problem.describe() for problem in attempt.problems[:3]) for attempt in attempts
        )
        raise InitializationError(f"No initialization passed the checks ({tried}).", report)
    return report


def histogram_data(
    model: torch.nn.Module, names: Sequence[str] | None = None, bins: int = 60
) -> dict[str, tuple[numpy.ndarray, numpy.ndarray]]:
    """``{name: (counts, bin_edges)}`` of the finite entries of each named parameter (by default every weight matrix),
    from ``numpy.histogram``, for a views module to plot."""
    import numpy
    import torch

    tensors = dict(_named_tensors(model))
    if names is None:
        names = [name for name, values in tensors.items() if values.dim() >= 2]
    unknown = [name for name in names if name not in tensors]
    if unknown:
        raise KeyError(f"No parameter named {', '.join(unknown)}; the model has {', '.join(tensors)}.")
    histograms = {}
    for name in names:
        values = tensors[name]
        histograms[name] = numpy.histogram(values[torch.isfinite(values)].numpy(), bins=bins)
    return histograms
