"""Chapter 07's evaluation run: the trained model and a bigram baseline scored on the held-out split (loss,
perplexity, bits per byte, BLEU and ROUGE of greedy continuations), written to ``results/lm/``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from slmlab.io import atomic_write_json, save_table
from slmlab.models import load_model
from slmlab.settings import artifacts_root
from slmlab.tinylm import spec
from slmlab.tinylm.evaluation import BigramModel, EvalConfig, continuation_examples, evaluate_lm, score_continuations
from slmlab.tinylm.prepare import PreparedData


def default_results_dir(quick: bool | None = None) -> Path:
    """``results/lm`` (``quick/results/lm`` in quick mode), created on demand."""
    folder = spec.results_dir(artifacts_root(quick))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def evaluate_run(
    model_dir: str | Path,
    data_dir: str | Path,
    out: str | Path | None = None,
    samples: int | None = None,
    config: EvalConfig = EvalConfig(),
    progress: bool = False,
) -> dict:
    """Score the model folder against a bigram fitted on the same training tokens; write ``eval.json`` (the report
    returned), ``continuations.csv`` (prefix, truth, model, bigram) and ``scores.csv`` (one row per system)."""
    config = replace(config, samples=samples) if samples else config
    data = PreparedData(Path(data_dir))
    lm = load_model(str(model_dir), backend="torch")
    context_length = int(lm.model.config.max_position_embeddings)
    documents = data.valid_documents()
    model_scores = evaluate_lm(
        lm.model, lm.tokenizer, documents, context_length, config.batch_size, config.max_tokens, progress=progress
    )
    bigram = BigramModel(len(lm.tokenizer), config.smoothing).fit(data.token_file("train").ids)
    bigram_scores = bigram.evaluate(lm.tokenizer, documents, context_length, config.max_tokens)
    examples = continuation_examples(
        lm,
        lm.tokenizer,
        documents,
        config.prefix_tokens,
        config.continuation_tokens,
        config.samples,
        config.seed,
        bigram=bigram,
        progress=progress,
    )
    overlap = score_continuations(examples)
    table = overlap.assign(
        bits_per_byte=[model_scores.bits_per_byte, bigram_scores.bits_per_byte],
        perplexity=[model_scores.perplexity, bigram_scores.perplexity],
        loss=[model_scores.loss_nats_per_token, bigram_scores.loss_nats_per_token],
    )
    out_dir = Path(out).parent if out else default_results_dir()
    report = {
        "model_dir": str(model_dir),
        "data_dir": str(data.folder),
        "held_out": {"documents": len(documents), "tokens": model_scores.tokens, "bytes": model_scores.bytes},
        "model": model_scores.as_dict() | overlap.loc["model"].to_dict(),
        "bigram": bigram_scores.as_dict() | overlap.loc["bigram"].to_dict(),
        "bits_per_byte_gain": bigram_scores.bits_per_byte - model_scores.bits_per_byte,
        "config": config.__dict__,
    }
    report = _finite(report)
    atomic_write_json(Path(out) if out else out_dir / spec.EVAL_FILE, report)
    save_table(table.reset_index(names="system"), out_dir / spec.SCORES_FILE)
    save_table(examples, out_dir / spec.CONTINUATIONS_FILE)
    return report


def _finite(value):
    """JSON has no infinity: an overflowing perplexity is written as null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
