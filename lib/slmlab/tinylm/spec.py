"""Chapter 07 on one screen: the notebook, the command-line verbs, the corpus, tokenizer, model and training settings,
and where its corpus, token files, model and results live, each path a function of the artifacts root.

Light (no torch): the report, the demos, the grid and ``slmlab lm --help`` read it. The chapter is ``lm`` everywhere a
user types or reads it (``slmlab lm``, ``results/lm``); the package is ``slmlab.tinylm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slmlab.spec import adapters_path, data_path, results_path

KEY = "lm"
NOTEBOOKS = ("07_tiny_lm_from_scratch",)
COMMANDS = ("lm corpus", "lm crawl", "lm clean", "lm tokenizer", "lm train", "lm sample", "lm eval")
TITLE = "A tiny LM from scratch (chapter 07)"
TAUGHT_THROUGH = "pre-training"
RUN_COMMAND = "slmlab lm tokenizer && slmlab lm train && slmlab lm eval"
QUICK_RUN_COMMAND = "slmlab lm tokenizer --quick && slmlab lm train --quick && slmlab lm eval --quick --samples 8"
MODEL_IS_FOLDER = True  # its --model is a trained checkpoint folder, not a registry model

RESULTS = "lm"
RUN_NAME = KEY  # the model folder under adapters/ is named after the chapter, like results/lm and data/lm
CORPUS = "stdlib"  # the default corpus: the Python standard library's source
CRAWLS = "corpus"  # data/lm/corpus/<site>: crawled sites
EVAL_FILE = "eval.json"  # bits per byte, perplexity, BLEU/ROUGE of the model and the bigram baseline
SCORES_FILE = "scores.csv"  # the same, one row per system
CONTINUATIONS_FILE = "continuations.csv"  # held-out prefixes with the true and the model's continuation
DATA_SUMMARY_FILE = "summary.json"  # a token folder's sizes, settings and bytes per token
VALID_DOCUMENTS_FILE = "valid.jsonl"  # a token folder's held-out documents as text
MANIFEST_FILE = "manifest.json"  # a corpus folder's description of its files (crawled or cleaned); never a document
DATA_SETTING = "data"  # the checkpoint setting that fingerprints the token folder a run trains on


def results_dir(root: Path) -> Path:
    """``results/lm``."""
    return results_path(root, RESULTS)


def data_dir(root: Path, corpus: str = CORPUS) -> Path:
    """``data/lm/<corpus>``: a prepared token folder."""
    return data_path(root, RESULTS, corpus)


def crawl_dir(root: Path, site: str) -> Path:
    """``data/lm/corpus/<site>``: the pages crawled from one site."""
    return data_path(root, RESULTS, CRAWLS, site)


def run_dir(root: Path) -> Path:
    """``adapters/lm``: the run and model folder."""
    return adapters_path(root, RUN_NAME)


def eval_file(root: Path) -> Path:
    return results_dir(root) / EVAL_FILE


def continuations_file(root: Path) -> Path:
    return results_dir(root) / CONTINUATIONS_FILE


# --- settings -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CrawlConfig:
    """The crawl's limits and manners; ``slmlab lm crawl URL --max-pages N --depth D`` sets the first two."""

    max_pages: int = 50  # pages written; the crawl stops when it has this many
    depth: int = 2  # link hops from the start page (0: the start page only)
    delay: float = 1.0  # seconds between two requests (a larger robots.txt Crawl-delay wins)
    timeout: float = 10.0  # seconds per request
    user_agent: str = "slmlab-crawler"
    max_page_bytes: int = 5_000_000  # larger bodies are skipped unread
    progress: bool = True  # a tqdm bar of the pages written


@dataclass(frozen=True)
class CleanConfig:
    """The cleaning steps' settings; the defaults keep nearly all of the standard library's source."""

    unicode_form: str = "NFC"  # unicodedata normalization form
    max_blank_lines: int = 2  # longer runs of blank lines collapse to this many
    min_chars: int = 64  # shorter documents (after normalization) are dropped
    max_chars: int = 1_000_000  # longer ones too (a dump, a data file)
    min_printable_fraction: float = 0.98  # share of printable or whitespace characters a text needs
    min_alpha_fraction: float = 0.25  # share of letters a text needs (the standard library's lowest is about 0.28)
    max_replacement_fraction: float = 0.001  # share of U+FFFD above which a text counts as badly decoded
    shingle_words: int = 5  # near duplicates: documents are sets of shingles of this many consecutive words
    num_perm: int = 128  # MinHash permutations
    near_duplicate_threshold: float = 0.8  # estimated Jaccard similarity from which a document is a near duplicate
    seed: int = 0  # MinHash seed


@dataclass(frozen=True)
class PrepareConfig:
    """Which part of the corpus to use and how to tokenize it."""

    vocab_size: int = 1024  # small: the output layer dominates a tiny model's cost on a CPU
    min_frequency: int = 2
    valid_fraction: float = 0.1
    max_bytes: int | None = 6_000_000  # a seeded subset of the corpus's documents (None: all of it)
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> PrepareConfig:
        """Quick mode's sizes: a 300 kB corpus and a 512-token vocabulary, prepared in seconds."""
        return cls(vocab_size=512, max_bytes=300_000, seed=seed)


@dataclass(frozen=True)
class ModelConfig:
    """The decoder's shape. The defaults (about 2M parameters with a 1,024-token vocabulary) train in minutes on
    two CPU cores; a short context keeps each step cheap, and the BPE tokens make 128 of them about 400 bytes."""

    hidden_size: int = 192
    layers: int = 4
    heads: int = 3  # 64-wide heads
    kv_heads: int = 3  # fewer than ``heads``: grouped-query attention
    intermediate_size: int = 512  # the SwiGLU MLP's inner width
    context_length: int = 128
    rope_theta: float = 10000.0
    tie_embeddings: bool = True  # the output layer reuses the embedding matrix: far fewer parameters
    init_std: float = 0.02
    dropout: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.hidden_size % self.heads:
            problems.append(f"hidden_size {self.hidden_size} must be a multiple of heads {self.heads}")
        if self.heads % self.kv_heads:
            problems.append(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")
        if (self.hidden_size // max(self.heads, 1)) % 2:
            problems.append(f"the head width hidden_size/heads = {self.hidden_size / self.heads:g} must be even (RoPE)")
        if min(self.layers, self.context_length, self.intermediate_size) < 1:
            problems.append("layers, context_length and intermediate_size must be >= 1")
        if problems:
            raise ValueError("Invalid ModelConfig: " + "; ".join(problems))


PRECISIONS = ("fp32", "bf16")
# settings that say how long to train, how often to look or save: a checkpoint differing only in these resumes
NOT_TRAJECTORY = ("steps", "eval_every", "eval_batches", "save_every", "keep_checkpoints")


@dataclass(frozen=True)
class LMTrainConfig:
    """Model shape, batches and optimisation. The defaults are the chapter's recipe for two CPU cores."""

    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = 16  # windows per step, over all processes
    sampling: str = "random"  # "random" windows or "sequential" packing (see slmlab.tinylm.tokens)
    steps: int = 850  # about two minutes on two CPU cores with the default model
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1  # the cosine ends at this share of the peak rate
    warmup_steps: int = 28
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: str = "fp32"  # "bf16": bfloat16 autocast (CUDA, and CPUs with AVX512-BF16 or AMX); weights stay fp32
    compile: bool = False  # torch.compile the model (inductor needs a C++ compiler on CPU)
    eval_every: int = 100
    eval_batches: int = 4  # validation windows scored = eval_batches × batch_size
    save_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sampling not in ("random", "sequential"):
            raise ValueError(f"sampling must be 'random' or 'sequential', got '{self.sampling}'")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if min(self.batch_size, self.steps) < 1 or self.learning_rate <= 0:
            raise ValueError("batch_size and steps must be >= 1 and learning_rate > 0")

    @classmethod
    def quick(cls) -> LMTrainConfig:
        """Quick mode's recipe: a model and a run small enough to train in seconds under test."""
        model = ModelConfig(hidden_size=64, layers=2, heads=4, kv_heads=4, intermediate_size=128, context_length=64)
        return cls(model=model, batch_size=8, steps=120, warmup_steps=10, eval_every=40, eval_batches=4, save_every=40)
