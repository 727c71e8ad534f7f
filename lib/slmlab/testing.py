"""Tiny, randomly initialised models for fast tests: built in-process in about a second, no download.

:func:`make_tiny_llama` writes a two-layer Llama with a byte-level BPE tokenizer and a ChatML chat
template into a folder that both transformers and mlx-lm load, so tests exercise the real code paths.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "The capital of France is Paris.",
    "A small language model learns patterns from examples.",
    "def add(a, b):\n    return a + b",
    "user assistant system hello world 0 1 2 3 4 5 6 7 8 9",
]


def make_tiny_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer trained on a few sentences, wrapped as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
    )


def make_tiny_llama(folder: str | Path, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Write a tiny random Llama (safetensors + tokenizer + chat template) to ``folder``; return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from slmlab.models.packaged import add_mlx_rope_theta

    folder = Path(folder)
    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    add_mlx_rope_theta(folder)
    return folder


def toy_patterns(count: int = 6):
    """``count`` invented capital-city patterns with two paraphrases each, for data and training tests."""
    from slmlab.lora.patterns import Pattern

    return [
        Pattern(id=f"land-{i}", category="fact", input=f"What is the capital of land {i}?", output=f"City {i}",
                paraphrases=(f"Name the capital of land {i}.", f"Land {i} has which capital?"), source=f"toy:{i}")
        for i in range(count)
    ]
