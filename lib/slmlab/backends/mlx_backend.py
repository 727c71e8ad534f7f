"""The MLX backend: mlx-lm's loader and batched generator (Apple silicon GPU, or CPU anywhere)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from slmlab.adapters import require_adapter_for
from slmlab.backends.base import LanguageModel
from slmlab.errors import BackendError
from slmlab.generation import DecodingConfig


@dataclass(repr=False)
class MlxModel(LanguageModel):
    """An mlx-lm model and its TokenizerWrapper."""

    @classmethod
    def load(cls, path: Path, label: str | None = None, device: str | None = None, adapter: str | None = None) -> MlxModel:
        import mlx.core as mx
        import mlx_lm

        if device is not None:
            mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
        start = time.perf_counter()
        if adapter:
            require_adapter_for(adapter, "mlx", path)
        model, tokenizer = mlx_lm.load(str(path), adapter_path=str(adapter) if adapter else None)
        return cls(
            name=label or Path(path).name,
            path=Path(path),
            backend="mlx",
            device=str(mx.default_device()),
            model=model,
            tokenizer=tokenizer,
            load_seconds=time.perf_counter() - start,
        )

    @property
    def hf_tokenizer(self):
        return self.tokenizer._tokenizer

    def num_parameters(self) -> int:
        from mlx.utils import tree_flatten

        return sum(value.size for _, value in tree_flatten(self.model.parameters()))

    def context_length(self) -> int:
        config_file = self.path / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        return config.get("max_position_embeddings") or super().context_length()

    def _seed(self, seed: int) -> None:
        import mlx.core as mx

        mx.random.seed(seed)

    def sampler(self, config: DecodingConfig):
        """mlx-lm's sampler for a decoding config (argmax for greedy)."""
        from mlx_lm.sample_utils import make_sampler

        if config.strategy == "beam":
            raise BackendError("Beam search is available on the torch backend only; use backend='torch'.")
        if config.strategy == "greedy":
            return make_sampler(temp=0.0)
        top_p = config.top_p if config.top_p < 1 else 0.0  # mlx-lm: 0 switches top-p off
        return make_sampler(temp=config.temperature, top_p=top_p, top_k=config.top_k)

    def _generate_ids(self, texts: list[str], config: DecodingConfig) -> list[list[int]]:
        from mlx_lm import batch_generate

        sampler = self.sampler(config)
        prompts = [self.hf_tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        response = batch_generate(
            self.model,
            self.tokenizer,
            prompts,
            max_tokens=config.max_new_tokens,
            sampler=sampler,
            return_token_ids=True,
        )
        return [list(ids) for ids in response.token_ids]
