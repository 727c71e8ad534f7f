"""The backend-neutral part of a loaded model: batching, ordering, progress and the public API."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.generation import DecodingConfig, Prompt, render_prompt


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
        texts = [self.render(p, chat=chat, system=system) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: self.count_tokens(texts[i]))
        replies: list[list[int]] = [[] for _ in texts]
        self._seed(config.seed)
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        for batch in tqdm(batches, desc=f"generate ({config.describe()})", disable=not progress, unit="batch"):
            for index, ids in zip(batch, self._generate_ids([texts[i] for i in batch], config)):
                replies[index] = list(ids)
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
        grouped by length into batches of ``config.batch_size`` so padding stays small.
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
