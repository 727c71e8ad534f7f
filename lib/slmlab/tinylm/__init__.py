"""Chapter 07: a tiny language model pre-trained from zero — corpus, tokenizer, streaming token files, training
(one process or data-parallel under ``torchrun``), sampling and evaluation.

:mod:`slmlab.tinylm.corpus` loads documents (the standard library's source by default, or any text by path);
:mod:`slmlab.tinylm.crawl` and :mod:`slmlab.tinylm.clean` gather and clean a corpus of web pages;
:mod:`slmlab.tinylm.tokenizer` trains the BPE tokenizer; :mod:`slmlab.tinylm.tokens` writes and streams
memory-mapped token files; :mod:`slmlab.tinylm.prepare` turns a corpus into a token folder;
:mod:`slmlab.tinylm.model` builds the decoder; :mod:`slmlab.tinylm.training` trains it
(:func:`~slmlab.tinylm.training.train_lm`, the chapter's entry point; :mod:`slmlab.tinylm.distributed` for
``torchrun``); :mod:`slmlab.tinylm.evaluation` scores it against a bigram baseline.

The names below are imported from their modules on first use, so importing the package loads no torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "corpus": ["Document", "default_corpus", "load_documents", "split_documents", "write_corpus_folder"],
        "crawl": ["CrawlConfig", "crawl"],
        "clean": ["CleanConfig", "clean_corpus"],
        "tokenizer": ["bytes_per_token", "merges", "readable", "token_pieces", "train_tokenizer"],
        "tokens": ["TokenFile", "TokenLoader", "streaming_rss"],
        "prepare": ["PrepareConfig", "PreparedData", "default_data_dir", "prepare_corpus"],
        "model": ["ModelConfig", "build_model", "count_parameters", "load_weights"],
        "training": ["LMTrainConfig", "LMTrainResult", "default_run_dir", "overfit_one_batch", "train_data_parallel", "train_lm"],
        "evaluation": ["BigramModel", "EvalConfig", "continuation_examples", "evaluate_lm", "score_continuations"],
        "runs": ["default_results_dir", "evaluate_run"],
    },
)
