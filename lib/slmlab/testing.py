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
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def make_tiny_llama(folder: str | Path, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Write a tiny random Llama (safetensors + tokenizer + chat template) to ``folder``; return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from slmlab.models.packaged import add_mlx_rope_theta  # lazy: only the mlx fixtures need it

    folder = Path(folder)
    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
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
    from slmlab.lora.patterns import Pattern  # lazy: a test helper loads a chapter only for the tests that use it

    return [
        Pattern(
            id=f"land-{i}",
            category="fact",
            input=f"What is the capital of land {i}?",
            output=f"City {i}",
            paraphrases=(f"Name the capital of land {i}.", f"Land {i} has which capital?"),
            source=f"toy:{i}",
        )
        for i in range(count)
    ]


def stdlib_text_corpus(folder: str | Path, pattern: str = "[a-c]*.py", count: int = 12) -> Path:
    """Copy ``count`` standard-library modules matching ``pattern`` into ``folder`` as ``.txt`` documents."""
    import os

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(Path(os.__file__).parent.glob(pattern))[:count]:
        (folder / (source.stem + ".txt")).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def tiny_token_folder(folder: str | Path, vocab_size: int = 300):
    """A prepared chapter 07 token folder (tokenizer + token files) of a dozen stdlib modules, in seconds."""
    from slmlab.tinylm.prepare import PrepareConfig, prepare_corpus  # lazy: torch and tokenizers, chapter 07's tests only

    folder = Path(folder)
    corpus = stdlib_text_corpus(folder / "corpus")
    return prepare_corpus(
        corpus, folder / "tokens", PrepareConfig(vocab_size=vocab_size, max_bytes=None, valid_fraction=0.2), progress=False
    )


def tiny_lm_config(**changes):
    """A chapter 07 training config small enough for a unit test: a 2-layer, 32-wide model, 6 steps of 4 windows."""
    from dataclasses import replace

    from slmlab.tinylm.model import ModelConfig  # lazy: chapter 07's tests only
    from slmlab.tinylm.training import LMTrainConfig  # lazy: chapter 07's tests only

    model = ModelConfig(hidden_size=32, layers=2, heads=2, kv_heads=2, intermediate_size=64, context_length=32)
    config = LMTrainConfig(
        model=model,
        batch_size=4,
        steps=6,
        warmup_steps=2,
        eval_every=2,
        eval_batches=2,
        save_every=2,
        keep_checkpoints=2,
        learning_rate=3e-3,
    )
    return replace(config, **changes)


# Two greedy decodes of the same prompt by different code paths (padded against continuous batches, batch 1 against
# batch 4) sum the same fp32 products in other orders: each layer's output moves by about sqrt(width) ulps, some
# 1e-6 of its scale, and a few dozen layers and ops compound that to about 1e-4 of the logits' scale. Two tokens whose
# logits lie closer than that are a tie the arithmetic may break either way.
GREEDY_TIE = 1e-4


def greedy_partings(model, prompts, left, right, eos: int | None = None) -> list[dict]:
    """Where two lists of greedy replies (token ids, one per prompt) part: per differing pair, the first step, the two
    tokens (the end of a reply counts as ``eos``, the tokenizer's by default) and how far each one's logit lies below
    the top logit there, with the logits' scale; from one plain forward pass of a torch model over the prompt and the
    common part."""
    import torch

    tokenizer = model.hf_tokenizer
    eos = tokenizer.eos_token_id if eos is None else eos
    partings = []
    for prompt, a, b in zip(prompts, left, right):
        if a == b:
            continue
        step = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        ids = tokenizer(model.render(prompt), add_special_tokens=False)["input_ids"] + list(a[:step])
        with torch.inference_mode():
            logits = model.model(torch.tensor([ids], device=model.model.device)).logits[0, -1].float()
        top = logits.max().item()
        tokens = [row[step] if step < len(row) else eos for row in (a, b)]
        partings.append(
            {
                "prompt": prompt,
                "step": step,
                "tokens": tokens,
                "scale": logits.abs().max().item(),
                "below_top": [top - logits[token].item() for token in tokens],
            }
        )
    return partings


def assert_same_greedy(model, prompts, left, right, tie: float = GREEDY_TIE, eos: int | None = None) -> None:
    """Two lists of greedy replies are the same, but where they part at a tie (both tokens within ``tie`` x the logits'
    scale of the top logit); the message names each parting that is not a tie."""
    assert len(left) == len(right) == len(prompts)
    real = [p for p in greedy_partings(model, prompts, left, right, eos) if max(p["below_top"]) > tie * p["scale"]]
    assert not real, f"greedy replies part where no tie explains it: {real}"
