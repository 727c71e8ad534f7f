"""The torch backend on CUDA, MPS or CPU: continuous batching for greedy and sampled replies, transformers
``generate`` with left-padded batches for beam search (or when ``DecodingConfig.continuous`` is off)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.adapters import quiet_peft_deprecation, require_adapter_for
from slmlab.backends.base import LanguageModel
from slmlab.generation import DecodingConfig

_DTYPES = {"cpu": "float32", "cuda": "bfloat16", "mps": "float16"}


@dataclass(repr=False)
class TorchModel(LanguageModel):
    """A transformers causal LM and its tokenizer."""

    @classmethod
    def load(
        cls, path: Path, label: str | None = None, device: str = "cpu", dtype: str | None = None, adapter: str | None = None
    ) -> TorchModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        torch_dtype = getattr(torch, dtype or _DTYPES.get(device.split(":")[0], "float32"))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        if adapter:
            model = merge_peft_adapter(model, Path(adapter), path)
        model = model.to(device).eval()
        return cls(
            name=label or Path(path).name,
            path=Path(path),
            backend="torch",
            device=device,
            model=model,
            tokenizer=tokenizer,
            load_seconds=time.perf_counter() - start,
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _seed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    def context_length(self) -> int:
        return getattr(self.model.config, "max_position_embeddings", None) or super().context_length()

    def _generate_all(self, texts: list[str], config: DecodingConfig, progress: bool) -> list[list[int]]:
        """Continuous batching for greedy and sample when ``config.continuous``; padded batches otherwise."""
        if not config.continuous or config.strategy not in ("greedy", "sample"):
            return super()._generate_all(texts, config, progress)
        from slmlab.backends.continuous import ContinuousBatcher  # lazy: loads torch; the module itself does not

        prompts = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        batcher = ContinuousBatcher(self.model, config, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        with tqdm(total=len(texts), desc=f"generate ({config.describe()})", disable=not progress, unit="prompt") as bar:
            replies = batcher.run(prompts, on_reply=lambda: bar.update(1))
        self.last_generation_stats["token_slots"] = batcher.token_slots
        return replies

    def generation_kwargs(self, config: DecodingConfig) -> dict:
        """The keyword arguments of ``model.generate`` for a decoding config."""
        kwargs = {
            "max_new_tokens": config.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "do_sample": config.strategy == "sample",
            "num_beams": config.num_beams if config.strategy == "beam" else 1,
        }
        if config.strategy == "sample":
            kwargs.update(temperature=config.temperature, top_k=config.top_k or None, top_p=config.top_p)
        if config.strategy == "beam":
            kwargs["early_stopping"] = True
        return kwargs

    def _generate_ids(self, texts: list[str], config: DecodingConfig) -> list[list[int]]:
        import torch
        from transformers import GenerationConfig

        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        generation_config = GenerationConfig(**self.generation_kwargs(config))
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=generation_config)
        new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
        return [_until_eos(row, self.tokenizer.eos_token_id) for row in new_tokens]


def merge_peft_adapter(model, adapter: Path, base_dir: Path):
    """Apply a PEFT LoRA adapter and merge it into the weights (generation then costs nothing extra)."""
    from peft import PeftModel

    require_adapter_for(adapter, "peft", base_dir)
    with quiet_peft_deprecation():
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def _until_eos(ids: list[int], eos: int) -> list[int]:
    """Cut a generated row at its first end-of-sequence token (what follows is padding)."""
    return ids[: ids.index(eos)] if eos in ids else ids
