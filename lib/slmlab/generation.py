"""Decoding settings shared by every backend, and prompt normalisation.

:class:`DecodingConfig` is the one description of "how to pick the next token" that the playground, the
evaluation loops and the CLI pass around; each backend translates it into its own sampler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Union

from slmlab.errors import BackendError

Message = dict[str, str]
Prompt = Union[str, list[Message]]

STRATEGIES = ("greedy", "sample", "beam")


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode.

    ``strategy`` is ``greedy`` (argmax), ``sample`` (temperature, then top-k and/or top-p filtering;
    ``top_k=0`` and ``top_p=1.0`` switch a filter off) or ``beam`` (``num_beams`` beams, torch only).
    ``continuous`` lets a backend that can refill batch rows (torch, for greedy and sample) start the next
    waiting prompt as soon as a row ends instead of running fixed batches to their longest reply.
    """

    strategy: str = "greedy"
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    seed: int = 0
    batch_size: int = 16
    continuous: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.strategy == "sample" and self.temperature <= 0:
            problems.append(f"temperature must be > 0 for sampling, got {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.strategy == "beam" and self.num_beams < 2:
            problems.append(f"num_beams must be >= 2 for beam search, got {self.num_beams}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not isinstance(self.continuous, bool):
            problems.append(f"continuous must be True or False, got {self.continuous!r}")
        if problems:
            raise ValueError("Invalid DecodingConfig: " + "; ".join(problems))

    def with_(self, **changes) -> DecodingConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """A short label such as ``sample T=0.7 top-k=20``."""
        if self.strategy == "greedy":
            return "greedy"
        if self.strategy == "beam":
            return f"beam x{self.num_beams}"
        parts = [f"sample T={self.temperature:g}"]
        if self.top_k:
            parts.append(f"top-k={self.top_k}")
        if self.top_p < 1:
            parts.append(f"top-p={self.top_p:g}")
        return " ".join(parts)


def as_messages(prompt: Prompt, system: str | None = None) -> list[Message]:
    """A chat message list for a prompt given as plain text or already as messages."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        messages = list(prompt)
    else:
        raise TypeError(f"A prompt is a string or a list of {{'role', 'content'}} dicts, got {type(prompt).__name__}")
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return messages


def render_prompt(tokenizer, prompt: Prompt, chat: bool = True, system: str | None = None) -> str:
    """The text the model sees: the tokenizer's chat template applied, or the raw text without chat."""
    if not chat or not getattr(tokenizer, "chat_template", None):
        if not isinstance(prompt, str):
            raise BackendError("This tokenizer has no chat template: pass plain-text prompts with chat=False")
        return prompt
    return tokenizer.apply_chat_template(as_messages(prompt, system), add_generation_prompt=True, tokenize=False)
