"""The backend-neutral part of a loaded model: batching, ordering, progress and the public API."""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.errors import BackendError
from slmlab.generation import DecodingConfig, Prompt, render_prompt

BACKEND_STRATEGIES = {"torch": ("greedy", "sample", "beam"), "mlx": ("greedy", "sample"), "llamacpp": ("greedy", "sample")}
UNKNOWN_CONTEXT_LENGTH = 1 << 30  # a backend that cannot tell its context window truncates nothing
_STRATEGY_NAMES = {"greedy": "Greedy decoding", "sample": "Sampling", "beam": "Beam search"}


def check_strategy(backend: str, strategy: str) -> None:
    """Raise BackendError when ``backend`` cannot decode with ``strategy``, naming the backends that can."""
    if strategy in BACKEND_STRATEGIES.get(backend, (strategy,)):
        return
    able = [name for name, strategies in BACKEND_STRATEGIES.items() if strategy in strategies]
    where = (
        f"it is on the {able[0]} backend only: use backend='{able[0]}'"
        if len(able) == 1
        else (f"backends that have it: {', '.join(able)}")
    )
    raise BackendError(f"{_STRATEGY_NAMES.get(strategy, strategy)} is not available on the {backend} backend; {where}.")


@dataclass
class LanguageModel(ABC):
    """A tokenizer and model loaded on one backend, with batched generation."""

    name: str
    path: Path
    backend: str
    device: str
    model: object = field(repr=False)
    tokenizer: object = field(repr=False)
    load_seconds: float = 0.0
    resolve_seconds: float = 0.0  # finding, downloading or converting the folder before loading
    # after each generate call: prompts, new_tokens (no EOS/padding), token_slots (rows x positions computed), seconds
    last_generation_stats: dict = field(default_factory=dict, repr=False)

    # --- what each backend provides -------------------------------------------------------------
    @abstractmethod
    def _generate_ids(self, texts: list[str], config: DecodingConfig) -> list[list[int]]:
        """New token ids (no padding, no end-of-sequence) for one batch of rendered prompt strings."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Number of parameters of the model."""

    @abstractmethod
    def _seed(self, seed: int) -> None:
        """Seed the backend's random generator."""

    def context_length(self) -> int:
        """The model's context window in tokens (prompt plus reply); a large number when unknown."""
        return UNKNOWN_CONTEXT_LENGTH

    def _generate_all(self, texts: list[str], config: DecodingConfig, progress: bool) -> list[list[int]]:
        """New token ids of every rendered prompt, in order: length-sorted batches of ``config.batch_size``
        through :meth:`_generate_ids`. Records ``token_slots`` as rows x positions of each padded batch, unless
        ``_generate_ids`` counted them itself in ``last_generation_stats``."""
        order = sorted(range(len(texts)), key=lambda i: self.count_tokens(texts[i]))
        replies: list[list[int]] = [[] for _ in texts]
        slots = 0
        with tqdm(total=len(texts), desc=f"generate ({config.describe()})", disable=not progress, unit="prompt") as bar:
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                ids = [list(row) for row in self._generate_ids([texts[i] for i in batch], config)]
                for index, row in zip(batch, ids):
                    replies[index] = row
                # a padded batch runs until its longest row ends: its EOS position, or max_new_tokens
                slots += len(batch) * max(min(len(row) + 1, config.max_new_tokens) for row in ids)
                bar.update(len(batch))
        self.last_generation_stats.setdefault("token_slots", slots)
        return replies

    def _truncate(self, texts: list[str], config: DecodingConfig) -> list[str]:
        """Prompts cut from the left to fit the context window with ``max_new_tokens`` to spare (warns once)."""
        limit = max(1, self.context_length() - config.max_new_tokens)
        long = [i for i, text in enumerate(texts) if self.count_tokens(text) > limit]
        for i in long:
            texts[i] = self._keep_last_tokens(texts[i], limit)
        if long:
            warnings.warn(
                f"{len(long)} of {len(texts)} prompts were longer than {limit} tokens and were truncated from the left",
                stacklevel=3,
            )
        return texts

    def _keep_last_tokens(self, text: str, limit: int) -> str:
        """The end of ``text`` that encodes to at most ``limit`` tokens (decoding then encoding may merge differently,
        so it is re-counted)."""
        ids = self.hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = limit
        tail = self.hf_tokenizer.decode(ids[-keep:])
        while keep > 1 and (excess := self.count_tokens(tail) - limit) > 0:
            keep = max(1, keep - excess)
            tail = self.hf_tokenizer.decode(ids[-keep:])
        return tail

    @property
    def hf_tokenizer(self):
        """The underlying transformers tokenizer (mlx-lm wraps it)."""
        return self.tokenizer

    # --- the public API -------------------------------------------------------------------------
    def render(self, prompt: Prompt, chat: bool = True, system: str | None = None) -> str:
        """The exact text the model sees for ``prompt``."""
        return render_prompt(self.hf_tokenizer, prompt, chat=chat, system=system)

    def count_tokens(self, text: str) -> int:
        return len(self.hf_tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate_ids(
        self,
        prompts: Sequence[Prompt],
        config: DecodingConfig | None = None,
        chat: bool = True,
        system: str | None = None,
        progress: bool = False,
    ) -> list[list[int]]:
        """The new token ids of one reply per prompt, in prompt order (see :meth:`generate`)."""
        config = config or DecodingConfig()
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], dict)):
            raise TypeError("generate() takes a list of prompts; use chat() for a single prompt")
        check_strategy(self.backend, config.strategy)
        start = time.perf_counter()
        texts = self._truncate([self.render(p, chat=chat, system=system) for p in prompts], config)
        self.last_generation_stats = {}
        self._seed(config.seed)
        replies = self._generate_all(texts, config, progress) if texts else []
        self.last_generation_stats.update(
            prompts=len(texts),
            new_tokens=sum(len(reply) for reply in replies),
            seconds=time.perf_counter() - start,
        )
        self.last_generation_stats.setdefault("token_slots", 0)
        return replies

    def generate(
        self,
        prompts: Sequence[Prompt],
        config: DecodingConfig | None = None,
        chat: bool = True,
        system: str | None = None,
        progress: bool = False,
    ) -> list[str]:
        """Generate one reply per prompt, in prompt order.

        Prompts are plain strings (wrapped as a user message when ``chat``) or message lists. They are
        grouped by length into batches of ``config.batch_size`` so padding stays small (or, on a backend with
        continuous batching, decoded ``batch_size`` at a time with each ended row refilled at once). Prompts
        longer than the context window allows are cut from the left, with a warning.
        """
        ids = self.generate_ids(prompts, config, chat=chat, system=system, progress=progress)
        return [self.decode(reply) for reply in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Generated token ids → visible text (special tokens dropped, surrounding space stripped)."""
        return self.hf_tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def chat(self, prompt: Prompt, config: DecodingConfig | None = None, system: str | None = None) -> str:
        """Generate the reply to a single prompt."""
        return self.generate([prompt], config, system=system)[0]

    def summary(self) -> dict:
        """Name, backend, device, parameter count and load time, for reports."""
        return {
            "model": self.name,
            "path": str(self.path),
            "backend": self.backend,
            "device": self.device,
            "parameters": self.num_parameters(),
            "resolve_seconds": round(self.resolve_seconds, 2),
            "load_seconds": round(self.load_seconds, 2),
        }
