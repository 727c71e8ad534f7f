"""Held-out evaluation of a causal LM: loss, perplexity and bits per byte next to a count-based bigram baseline
on the same predicted tokens, and BLEU / ROUGE of greedy continuations of held-out prefixes against the true text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from slmlab.errors import CorpusError
from slmlab.generation import DecodingConfig
from slmlab.trainloop import IGNORE_INDEX


@dataclass(frozen=True)
class EvalConfig:
    """The defaults of every knob of this module (the functions below take them as keyword arguments)."""

    batch_size: int = 8  # windows per forward pass
    max_tokens: int | None = None  # stop after this many predicted tokens (None: the whole held-out split)
    smoothing: float = 0.01  # add-k of the bigram baseline; add-one would flatten a 4096-token row far too much
    prefix_tokens: int = 32  # tokens of held-out text given as the prompt of a continuation
    continuation_tokens: int = 32  # tokens generated greedily and compared with the true next tokens
    samples: int = 50  # held-out prefixes scored by BLEU / ROUGE
    seed: int = 0


DEFAULTS = EvalConfig()
ROUGE_TYPES = ("rougeL", "rouge1", "rouge2")


# --- metrics ----------------------------------------------------------------------------------------------
def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean loss in nats per token (``inf`` when it overflows)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Total negative log-likelihood in nats over the UTF-8 bytes it covers, in bits per byte."""
    if total_bytes <= 0:
        raise ValueError(f"bits per byte needs at least one scored byte, got {total_bytes}")
    return total_nats / math.log(2) / total_bytes


@dataclass(frozen=True)
class LMScores:
    """Scores of one model on a set of predicted tokens (which ones: :func:`prediction_windows`)."""

    loss_nats_per_token: float
    perplexity: float
    bits_per_byte: float
    tokens: int
    bytes: int

    @classmethod
    def from_totals(cls, total_nats: float, tokens: int, n_bytes: int) -> LMScores:
        if tokens <= 0:
            raise ValueError("no token was scored: the held-out documents are empty or max_tokens is 0")
        loss = total_nats / tokens
        return cls(loss, perplexity(loss), bits_per_byte(total_nats, n_bytes), tokens, n_bytes)

    def as_dict(self) -> dict:
        return asdict(self)


# --- the predicted positions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What the model reads (``inputs``) and the token each position must predict (``targets``), same length."""

    inputs: np.ndarray
    targets: np.ndarray


def document_texts(documents: Iterable) -> list[str]:
    """The text of each document: objects with ``.text`` or plain strings."""
    return [getattr(document, "text", document) for document in documents]


def eos_id(tokenizer) -> int:
    """The id that closes every document (and opens it, as the end of the previous one)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: documents cannot be closed for scoring")
    return int(tokenizer.eos_token_id)


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (the way the training stream is written)."""
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] if texts else []


def prediction_windows(
    tokenizer, documents: Iterable, context_length: int, max_tokens: int | None = DEFAULTS.max_tokens
) -> list[Window]:
    """The scoring windows of the held-out documents, in document order: the convention that :func:`evaluate_lm`
    and :meth:`BigramModel.evaluate` share, so their numbers compare.

    - each document is read as it sits in the packed training stream, ``[EOS] + ids + [EOS]`` with ``ids`` =
      ``tokenizer(text, add_special_tokens=False)``; the leading EOS (the end of the previous document) is context
      only, so every text token *and* the closing EOS are predicted, each exactly once;
    - that sequence is cut into windows of ``context_length + 1`` tokens with stride ``context_length``: the model
      reads the first ``context_length`` tokens and each of its logits is scored against the next token (windows
      share one token, predicted targets never overlap; a document's last window is shorter);
    - the bytes of a predicted token are the UTF-8 bytes of the text it stands for (:func:`token_byte_lengths`),
      EOS counts 0: with a byte-level BPE tokenizer a fully scored document counts exactly ``len(text.encode())``
      bytes, whatever the vocabulary, so bits per byte compare across tokenizers;
    - ``max_tokens`` stops after that many predicted tokens; the bytes are those of the tokens actually scored.
    """
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    eos, budget, windows = eos_id(tokenizer), max_tokens, []
    for ids in encode_texts(tokenizer, document_texts(documents)):
        stream = np.asarray([eos, *ids, eos], dtype=np.int64)
        for start in range(0, len(stream) - 1, context_length):
            targets = stream[start + 1 : start + context_length + 1]
            inputs = stream[start : start + len(targets)]  # the last logit of a document would predict nothing
            if budget is not None:
                inputs, targets, budget = inputs[:budget], targets[:budget], budget - min(budget, len(targets))
            if len(targets):
                windows.append(Window(inputs, targets))
            if budget == 0:
                return windows
    return windows


def _backend_component_types(tokenizer) -> set[str]:
    """The types of a fast tokenizer's pre-tokenizer and decoder (``ByteLevel``, ``Metaspace``, ...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    state = json.loads(backend.to_str())
    found: set[str] = set()

    def collect(node) -> None:
        if isinstance(node, dict):
            found.add(str(node.get("type")))
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    collect(state.get("pre_tokenizer"))
    collect(state.get("decoder"))
    return found


_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens), as an array indexed by id.

    Read from the token strings because offsets do not split a multi-byte character between two tokens: a
    byte-level BPE token is one alphabet character per byte (exact); SentencePiece pieces count ``▁`` as a space
    and ``<0xNN>`` as one byte; other tokenizers use the UTF-8 length of the token string (an approximation).
    """
    from tokenizers import pre_tokenizers

    vocab_size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    byte_level = "ByteLevel" in _backend_component_types(tokenizer)
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    special = set(tokenizer.all_special_ids)
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for token_id, token in enumerate(tokens):
        if token_id in special or token is None:
            continue
        if byte_level and set(token) <= alphabet:
            lengths[token_id] = len(token)
        elif _BYTE_TOKEN.fullmatch(token):
            lengths[token_id] = 1
        else:
            lengths[token_id] = len(token.replace("\u2581", " ").encode("utf-8"))
    return lengths


def scored_bytes(tokenizer, windows: Sequence[Window]) -> int:
    """The UTF-8 bytes covered by the predicted tokens of ``windows``."""
    if not windows:
        return 0
    return int(token_byte_lengths(tokenizer)[np.concatenate([w.targets for w in windows])].sum())


# --- the model --------------------------------------------------------------------------------------------
def _device_of(model):
    import torch

    device = getattr(model, "device", None)
    if device is not None:
        return torch.device(device)
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def _batch_tensors(windows: Sequence[Window], device):
    """Right-padded inputs, attention mask and targets (IGNORE_INDEX on padding) of a batch of windows."""
    import torch

    width = max(len(w.inputs) for w in windows)
    inputs = torch.zeros((len(windows), width), dtype=torch.long)
    mask = torch.zeros_like(inputs)
    targets = torch.full_like(inputs, IGNORE_INDEX)
    for row, window in enumerate(windows):
        n = len(window.inputs)
        inputs[row, :n] = torch.from_numpy(window.inputs)
        mask[row, :n] = 1
        targets[row, :n] = torch.from_numpy(window.targets)
    return inputs.to(device), mask.to(device), targets.to(device)


def window_nats(model, windows: Sequence[Window], batch_size: int = DEFAULTS.batch_size, progress: bool = False) -> float:
    """Sum of the model's negative log-likelihood (nats) over every target of ``windows``."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _device_of(model)
    ordered = sorted(windows, key=lambda w: -len(w.inputs))  # full windows together: little padding
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    total = 0.0
    with torch.inference_mode():
        for batch in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
            inputs, mask, targets = _batch_tensors(batch, device)
            logits = model(input_ids=inputs, attention_mask=mask).logits
            losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
            total += float(losses.double().sum())  # summed in float64: the total grows with the held-out split
    return total


def evaluate_lm(
    model,
    tokenizer,
    documents: Iterable,
    context_length: int,
    batch_size: int = DEFAULTS.batch_size,
    max_tokens: int | None = DEFAULTS.max_tokens,
    progress: bool = False,
) -> LMScores:
    """Loss, perplexity and bits per byte of a causal LM (anything called as ``model(input_ids=, attention_mask=)``
    returning ``.logits``, e.g. a transformers model) on held-out documents; deterministic."""
    windows = prediction_windows(tokenizer, documents, context_length, max_tokens)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        nats = window_nats(model, windows, batch_size=batch_size, progress=progress)
    finally:
        if was_training:
            model.train()
    return LMScores.from_totals(nats, sum(len(w.targets) for w in windows), scored_bytes(tokenizer, windows))


# --- the bigram baseline ----------------------------------------------------------------------------------
class BigramModel:
    """Next token from the previous token alone: add-k smoothed counts of adjacent pairs.

    Counts are kept sparse (the sorted keys ``prev * vocab_size + next`` of the pairs seen, with their counts)
    so a 4096-token vocabulary costs memory for the pairs of the corpus only.
    """

    _CHUNK = 1 << 20  # pairs counted at once, so a memory-mapped token file streams through

    def __init__(self, vocab_size: int, smoothing: float = DEFAULTS.smoothing) -> None:
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if smoothing <= 0:
            raise ValueError(f"smoothing (add-k) must be > 0 so unseen pairs keep some probability, got {smoothing}")
        self.vocab_size, self.smoothing = int(vocab_size), float(smoothing)
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.row_totals = np.zeros(self.vocab_size, dtype=np.int64)
        self.unigram = np.zeros(self.vocab_size, dtype=np.int64)
        self.best_next = np.zeros(self.vocab_size, dtype=np.int64)

    @property
    def pairs(self) -> int:
        """Number of pairs counted."""
        return int(self.counts.sum())

    def fit(self, ids: Sequence[int] | np.ndarray) -> BigramModel:
        """Add the adjacent pairs of a token stream (an array, a list, a memmap) to the counts; returns self."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        keys, counts = [self.keys], [self.counts]
        for start in range(0, len(ids), self._CHUNK):
            chunk = ids[start : start + self._CHUNK + 1].astype(np.int64)
            self.unigram += np.bincount(chunk[: self._CHUNK], minlength=self.vocab_size)
            unique, count = np.unique(chunk[:-1] * self.vocab_size + chunk[1:], return_counts=True)
            keys.append(unique)
            counts.append(count)
        self.keys, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        self.counts = np.bincount(inverse, weights=np.concatenate(counts), minlength=len(self.keys)).astype(np.int64)
        totals = np.bincount(self.keys // self.vocab_size, weights=self.counts, minlength=self.vocab_size)
        self.row_totals = totals.astype(np.int64)
        self.best_next = self._most_frequent_next()
        return self

    def _most_frequent_next(self) -> np.ndarray:
        """For each previous token the next token seen most often (ties: smallest id); a previous token never
        seen falls back to the most frequent token (its smoothed row is flat)."""
        best = np.full(self.vocab_size, int(np.argmax(self.unigram)), dtype=np.int64)
        rows, nexts = self.keys // self.vocab_size, self.keys % self.vocab_size
        order = np.lexsort((nexts, -self.counts, rows))
        seen_rows, first = np.unique(rows[order], return_index=True)
        best[seen_rows] = nexts[order][first]
        return best

    def pair_counts(self, prev, next_) -> np.ndarray:
        """How often each ``(prev, next_)`` pair was seen (arrays broadcast)."""
        keys = np.asarray(prev, dtype=np.int64) * self.vocab_size + np.asarray(next_, dtype=np.int64)
        if not len(self.keys):
            return np.zeros(keys.shape, dtype=np.int64)
        where = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[where] == keys, self.counts[where], 0)

    def log_prob(self, prev, next_):
        """Natural log of ``P(next_ | prev) = (count(prev, next_) + k) / (count(prev) + k * vocab_size)``;
        ints give a float, arrays an array."""
        prev_array = np.asarray(prev, dtype=np.int64)
        numerator = self.pair_counts(prev_array, next_) + self.smoothing
        denominator = self.row_totals[prev_array] + self.smoothing * self.vocab_size
        result = np.log(numerator) - np.log(denominator)
        return float(result) if np.ndim(result) == 0 else result

    def evaluate(
        self, tokenizer, documents: Iterable, context_length: int, max_tokens: int | None = DEFAULTS.max_tokens
    ) -> LMScores:
        """The same scores as :func:`evaluate_lm`, on exactly the same predicted tokens."""
        windows = prediction_windows(tokenizer, documents, context_length, max_tokens)
        if not windows:
            return LMScores.from_totals(0.0, 0, 0)
        prev = np.concatenate([w.inputs for w in windows])
        targets = np.concatenate([w.targets for w in windows])
        nats = -float(np.sum(self.log_prob(prev, targets), dtype=np.float64))
        return LMScores.from_totals(nats, len(targets), scored_bytes(tokenizer, windows))

    def greedy_continuation(self, prefix_ids: Sequence[int], n: int, stop_id: int | None = None) -> list[int]:
        """The ``n`` most likely next tokens one at a time after ``prefix_ids`` (stops before ``stop_id``)."""
        if len(prefix_ids) == 0:
            raise ValueError("a bigram continuation needs at least one prefix token")
        current, continuation = int(prefix_ids[-1]), []
        for _ in range(n):
            current = int(self.best_next[current])
            if current == stop_id:
                break
            continuation.append(current)
        return continuation


def training_stream(tokenizer, documents: Iterable) -> np.ndarray:
    """``EOS d1 EOS d2 EOS ...``: the documents' ids as the training stream packs them (after a leading EOS)."""
    eos = eos_id(tokenizer)
    parts = [np.asarray([eos, *ids], dtype=np.int64) for ids in encode_texts(tokenizer, document_texts(documents))]
    return np.concatenate([*parts, np.asarray([eos], dtype=np.int64)])


def fit_bigram(tokenizer, documents: Iterable, smoothing: float = DEFAULTS.smoothing) -> BigramModel:
    """A bigram baseline counted on (training) documents, over the tokenizer's whole vocabulary."""
    return BigramModel(len(tokenizer), smoothing=smoothing).fit(training_stream(tokenizer, documents))


# --- continuations ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContinuationSample:
    """A held-out prefix and the tokens that truly follow it."""

    document: int
    offset: int
    prefix_ids: list[int]
    truth_ids: list[int]


def decode_raw(tokenizer, ids: Sequence[int]) -> str:
    """Token ids → text exactly as written (no stripping, no space clean-up: indentation matters in code)."""
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def continuation_samples(
    tokenizer,
    documents: Iterable,
    prefix_tokens: int = DEFAULTS.prefix_tokens,
    continuation_tokens: int = DEFAULTS.continuation_tokens,
    samples: int = DEFAULTS.samples,
    seed: int = DEFAULTS.seed,
) -> list[ContinuationSample]:
    """``samples`` seeded (document, offset) picks among documents of at least prefix + continuation tokens:
    documents drawn without replacement while there are enough, offsets uniform inside each."""
    needed = prefix_tokens + continuation_tokens
    encoded = encode_texts(tokenizer, document_texts(documents))
    eligible = [i for i, ids in enumerate(encoded) if len(ids) >= needed]
    if not eligible:
        longest = max((len(ids) for ids in encoded), default=0)
        raise CorpusError(
            f"no held-out document has {needed} tokens ({prefix_tokens} prefix + {continuation_tokens} continuation); "
            f"the longest of {len(encoded)} has {longest}"
        )
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(eligible), size=samples, replace=samples > len(eligible))
    chosen = []
    for pick in picks:
        ids = encoded[eligible[int(pick)]]
        offset = int(rng.integers(0, len(ids) - needed + 1))
        chosen.append(
            ContinuationSample(
                eligible[int(pick)],
                offset,
                list(ids[offset : offset + prefix_tokens]),
                list(ids[offset + prefix_tokens : offset + needed]),
            )
        )
    return chosen


def continuation_examples(
    lm,
    tokenizer,
    documents: Iterable,
    prefix_tokens: int = DEFAULTS.prefix_tokens,
    continuation_tokens: int = DEFAULTS.continuation_tokens,
    samples: int = DEFAULTS.samples,
    seed: int = DEFAULTS.seed,
    bigram: BigramModel | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per held-out prefix: ``prefix``, ``truth`` and the greedy ``model`` (and ``bigram``) continuations.

    The model continues the decoded prefix through ``lm.generate_ids`` (an slmlab LanguageModel, ``chat=False``)
    and its ids are decoded here with :func:`decode_raw`, because ``lm.generate`` strips the surrounding
    whitespace that code continuations begin with. Without ``bigram`` there is no bigram column (fitting one on
    the held-out documents would let it see the answers).
    """
    chosen = continuation_samples(tokenizer, documents, prefix_tokens, continuation_tokens, samples, seed)
    prefixes = [decode_raw(tokenizer, sample.prefix_ids) for sample in chosen]
    decoding = DecodingConfig(strategy="greedy", max_new_tokens=continuation_tokens, seed=seed)
    generated = lm.generate_ids(prefixes, decoding, chat=False, progress=progress)
    table = pd.DataFrame(
        {
            "document": [sample.document for sample in chosen],
            "offset": [sample.offset for sample in chosen],
            "prefix": prefixes,
            "truth": [decode_raw(tokenizer, sample.truth_ids) for sample in chosen],
            "model": [decode_raw(tokenizer, ids) for ids in generated],
        }
    )
    if bigram is not None:
        eos = tokenizer.eos_token_id
        table["bigram"] = [
            decode_raw(tokenizer, bigram.greedy_continuation(sample.prefix_ids, continuation_tokens, eos)) for sample in chosen
        ]
    return table


def text_overlap(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 0-100) and mean ROUGE-L / ROUGE-1 / ROUGE-2 F-measures (rouge-score, 0-1)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    rouge = [scorer.score(reference, hypothesis) for hypothesis, reference in zip(hypotheses, references)]
    scores = {"bleu": float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)}
    for kind in ROUGE_TYPES:
        scores[kind] = float(np.mean([r[kind].fmeasure for r in rouge])) if rouge else 0.0
    scores["samples"] = len(rouge)
    return scores


def score_continuations(examples: pd.DataFrame) -> pd.DataFrame:
    """BLEU / ROUGE of the ``model`` (and ``bigram``) columns of :func:`continuation_examples` against ``truth``."""
    systems = [name for name in ("model", "bigram") if name in examples.columns]
    rows = {name: text_overlap(list(examples[name]), list(examples["truth"])) for name in systems}
    table = pd.DataFrame.from_dict(rows, orient="index")[["bleu", *ROUGE_TYPES, "samples"]]
    table["samples"] = table["samples"].astype(int)
    return table


def continuation_scores(
    lm,
    tokenizer,
    documents: Iterable,
    prefix_tokens: int = DEFAULTS.prefix_tokens,
    continuation_tokens: int = DEFAULTS.continuation_tokens,
    samples: int = DEFAULTS.samples,
    seed: int = DEFAULTS.seed,
    bigram: BigramModel | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Rows ``model`` (and ``bigram``), columns bleu, rougeL, rouge1, rouge2, samples; to show examples too, call
    :func:`continuation_examples` and :func:`score_continuations` on its result instead."""
    examples = continuation_examples(
        lm, tokenizer, documents, prefix_tokens, continuation_tokens, samples, seed, bigram=bigram, progress=progress
    )
    return score_continuations(examples)
