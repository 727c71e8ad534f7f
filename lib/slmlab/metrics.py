"""Answer metrics shared by every chapter: normalized exact match (numbers, percentages, articles), token F1,
choice letters, latency percentiles, and the agreement of two sets of replies. Written by hand because the
SQuAD-style normalisers in evaluate/rouge-score do not treat "1,200", "1200" and "1200.0" (or "12%" and
"12 percent") as the same answer.
"""

from __future__ import annotations

import os
import re
import statistics
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w])")
_PUNCT = str.maketrans("", "", string.punctuation.replace("%", "").replace(".", "").replace("-", ""))
_LETTER = re.compile(r"^\s*\(?([A-Ja-j])\)?(?:[.):\s]|$)")


def _canonical_number(match: re.Match) -> str:
    value = float(match.group(0).replace(",", ""))
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def normalize_text(text: str) -> str:
    """Lower-case, numbers in one form, 'percent' as '%', no articles, punctuation or extra spaces."""
    text = text.lower().replace(" percent", "%").replace("per cent", "%")
    text = _NUMBER.sub(_canonical_number, text)
    text = text.translate(_PUNCT)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # full stops go, decimal points stay
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.replace(" %", "%").split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_text(prediction) == normalize_text(gold)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token overlap F1 on normalized text."""
    predicted, expected = normalize_text(prediction).split(), normalize_text(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def choice_letter(text: str) -> str | None:
    """The answer letter of a multiple-choice reply: 'B', '(b)', 'B) ...', 'Answer: C' → the letter."""
    text = re.sub(r"^\s*(the\s+)?(correct\s+)?answer\s*(is)?\s*[:\-]?\s*", "", text, flags=re.IGNORECASE)
    match = _LETTER.match(text)
    return match.group(1).upper() if match else None


def choice_match(prediction: str, gold: str) -> bool:
    letter = choice_letter(prediction)
    return letter is not None and letter == choice_letter(gold)


def latency_percentiles(milliseconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 (linear interpolation, as numpy's default) of a list of latencies."""
    import numpy as np

    if not milliseconds:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    values = np.asarray(milliseconds, dtype=float)
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)}


def reply_agreement(replies: Sequence[str], reference: Sequence[str]) -> dict:
    """How two runs' replies to the same prompts agree (e.g. two backends, or two ways of batching): how many are
    identical, which differ, and the mean share of each pair that is a common prefix (1.0 when all are identical)."""
    same = [a == b for a, b in zip(replies, reference)]
    shares = [len(os.path.commonprefix([a, b])) / max(len(a), len(b), 1) for a, b in zip(replies, reference)]
    return {
        "identical": sum(same),
        "total": len(same),
        "differing_prompts": [i for i, s in enumerate(same) if not s],
        "mean_common_prefix_share": round(statistics.mean(shares), 3) if shares else 1.0,
    }
