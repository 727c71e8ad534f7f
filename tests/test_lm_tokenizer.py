"""The tiny LM's byte-level BPE tokenizer: exact round trips, special tokens, saving, merges and compression.

Trained on small in-test corpora (milliseconds each), independent of the corpus loaders.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from transformers import AutoTokenizer

from slmlab.tinylm.tokenizer import (
    SPECIAL_TOKENS,
    TokenizerConfig,
    bytes_per_token,
    merges,
    min_vocab_size,
    readable,
    token_pieces,
    train_tokenizer,
)


@dataclass(frozen=True)
class Doc:
    source: str
    text: str


CODE = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n\tprint(i)  # tabs too\n",
    'message = "héllo wörld, naïve café"\n',
    "if __name__ == '__main__':\n    main()\n",
] * 20

SAMPLES = [
    "    if x:\n        return {'a': [1, 2, 3]}\n",
    "\tindented with a tab\r\nand a CRLF line\r\n",
    "unicode: ü é ß 中文 日本語 — “quotes”",
    "emoji: 🙂🚀👩‍💻 and trailing spaces   ",
    "",
    "\n\n\n",
    "<EOS> written out in text stays text",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([Doc(f"f{i}.py", text) for i, text in enumerate(CODE)], vocab_size=400)


@pytest.mark.parametrize("text", SAMPLES)
def test_any_text_round_trips_exactly(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids


def test_special_tokens_have_ids_0_to_3_and_are_never_added(tok):
    assert [tok.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    text = "def f():\n    pass\n"
    assert tok(text)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert min_vocab_size() < len(tok) <= 400


def test_save_pretrained_and_auto_tokenizer_give_identical_ids(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in SAMPLES:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.decode(tok(text)["input_ids"]) == text
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.bos_token_id) == (0, 3, 2)
    assert loaded.model_max_length == tok.model_max_length == TokenizerConfig.model_max_length


def test_model_max_length_is_an_argument():
    assert train_tokenizer(["abc abc"], vocab_size=270, model_max_length=128).model_max_length == 128


def test_a_vocabulary_smaller_than_bytes_plus_specials_is_refused():
    with pytest.raises(ValueError, match=r"259.*260"):
        train_tokenizer(["abc"], vocab_size=259)


def test_training_is_deterministic():
    first, second = (train_tokenizer(CODE, vocab_size=350) for _ in range(2))
    assert first.get_vocab() == second.get_vocab()
    assert merges(first) == merges(second)


def test_merges_come_in_learned_order_most_frequent_pair_first():
    tok = train_tokenizer(["xy"] * 10 + ["ab"] * 3, vocab_size=min_vocab_size() + 2)
    assert merges(tok) == [("x", "y"), ("a", "b")]
    assert merges(tok, 1) == [("x", "y")]


def test_readable_maps_byte_symbols_back_to_text():
    assert readable("Ġ") == " "
    assert readable("Ċ") == "\n"
    assert readable("ĠĠdef") == "  def"
    assert readable("ðŁ") == "\\xf0\\x9f"  # the first bytes of an emoji, split from the rest
    assert readable("<EOS>") == "<EOS>"


def test_token_pieces_are_readable_and_join_to_the_text(tok):
    text = "    return a + b\n"
    pieces = token_pieces(tok, text)
    assert "".join(pieces) == text
    assert len(pieces) < len(text)


def test_bytes_per_token_on_a_known_case():
    tok = train_tokenizer(["aaaa"] * 10, vocab_size=min_vocab_size() + 1)  # one merge: a + a
    assert merges(tok) == [("a", "a")]
    assert bytes_per_token(tok, ["aaaa"]) == 2.0  # aa|aa
    assert bytes_per_token(tok, ["aaaa", "ab"]) == 1.5  # 6 bytes in aa|aa|a|b
    assert bytes_per_token(tok, [Doc("x", "é")]) == 1.0  # two bytes, two byte tokens
