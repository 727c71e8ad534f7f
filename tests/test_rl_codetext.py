"""Tests of chapter 08's code text: source normalization, the INDENT/DEDENT structure form and the code tokenizer.
The round trips run over a sample of the standard library's own files.
"""

from __future__ import annotations

import io
import os
import tokenize
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from slmlab.rl.codetext import (
    DEDENT_TOKEN,
    INDENT_TOKEN,
    RAWLINE_TOKEN,
    SPECIAL_TOKENS,
    STRUCTURE_TOKENS,
    decode_code,
    decode_structure,
    encode_code,
    encode_structure,
    min_vocab_size,
    normalize_source,
    train_code_tokenizer,
)

STDLIB = Path(os.__file__).parent
SAMPLE_FILES = 200

SNIPPETS = [
    "def add(a, b):\n  return a + b\n",
    "class Stack:\n\tdef __init__(self):\n\t\tself.items = []\n\n\tdef push(self, x):\n\t\tself.items.append(x)\n",
    "for i in range(3):\r\n    if i % 2:\r\n        print(i)   \r\n    else:\r\n        pass\r\n",
    'def doc():\n    """Summary.\n\n      indented inner line   \nflush left\n    """\n    return 1\n',
    "total = compute(first,\n                second,\n    third)\nvalue = 1 + \\\n    2\n",
    "def f():\n    x = 1\n# a comment at column 0\n    return x\n\n\n# helpers\ndef g():\n  # about g\n  pass\n",
    "async def main():\n    async with lock:\n        match command:\n            case [x, *rest]:\n"
    "                await go(x)\n",
    'name = "ünïcødé ✓"\nprint(f"{name!r:>{10}} {{literal}}")\n',
    'text = \'<INDENT> is a marker\'\nnotes = """\n<DEDENT> at the start of a string line\n<RAWLINE> too\n"""\n',
    "def broken(:\n  return  \n",
    's = """never closed\n  x\n',
    "",
    "\n\n   \n",
]


def _stdlib_sample() -> list[str]:
    """Sources of about SAMPLE_FILES standard-library files (sorted, evenly spaced) that tokenize."""
    files = sorted(path for path in STDLIB.rglob("*.py") if "site-packages" not in path.relative_to(STDLIB).parts)
    sources = []
    for path in files[:: max(1, len(files) // SAMPLE_FILES)][:SAMPLE_FILES]:
        try:
            with tokenize.open(path) as handle:
                source = handle.read()
            _meaning(source)
        except (SyntaxError, tokenize.TokenError, UnicodeDecodeError):
            continue
        sources.append(source)
    return sources


def _meaning(code: str) -> list[tuple[int, str]]:
    """The tokens that make a program what it is: layout tokens by kind only, comments without trailing spaces."""
    layout = (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)
    return [
        (token.type, token.string.rstrip() if token.type == tokenize.COMMENT else "" if token.type in layout else token.string)
        for token in tokenize.generate_tokens(io.StringIO(code).readline)
        if token.type != tokenize.NL
    ]


@pytest.fixture(scope="module")
def stdlib_sources() -> list[str]:
    sources = _stdlib_sample()
    assert len(sources) > SAMPLE_FILES * 0.9
    return sources


@pytest.fixture(scope="module")
def tokenizer(stdlib_sources: list[str]) -> PreTrainedTokenizerFast:
    return train_code_tokenizer(stdlib_sources[:40], vocab_size=1024)


def test_normalize_reindents_blocks_to_four_spaces() -> None:
    assert normalize_source("if x:\n  y = 1\n  if z:\n    w()\nv()\n") == "if x:\n    y = 1\n    if z:\n        w()\nv()\n"
    assert normalize_source("if x:\n\ty = 1\n\tif z:\n\t\tw()\n") == "if x:\n    y = 1\n    if z:\n        w()\n"


def test_normalize_line_endings_trailing_spaces_and_final_newline() -> None:
    assert normalize_source("a = 1   \r\n\r\n  \t\r\nb = 2\rc = 3\t\n\n\n") == "a = 1\n\n\nb = 2\nc = 3\n"
    assert normalize_source("x = 1") == "x = 1\n"
    assert normalize_source("") == normalize_source(" \n\t\n") == ""


def test_normalize_leaves_string_literals_alone() -> None:
    source = 'def f():\n  s = """first   \n      inner\n\tTabbed \nflush"""\n  return s\n'
    assert normalize_source(source) == 'def f():\n    s = """first   \n      inner\n\tTabbed \nflush"""\n    return s\n'


def test_normalize_moves_continuations_with_their_statement_and_places_comments() -> None:
    source = "def f(a,\n      b):\n  # inside\n  return g(a,\n           b)\n# outside\nx = 1\n"
    expected = "def f(a,\n      b):\n    # inside\n    return g(a,\n             b)\n# outside\nx = 1\n"
    assert normalize_source(source) == expected
    assert normalize_source("if x:\n  # before the block\n  y()\n") == "if x:\n    # before the block\n    y()\n"


def test_normalize_applies_only_textual_steps_when_the_program_does_not_tokenize() -> None:
    assert normalize_source("def f(:\r\n  x  \r\n\r\n") == "def f(:\n  x\n"
    assert normalize_source('s = """open\n  x  \n') == 's = """open\n  x\n'
    assert normalize_source("if x:\n        y\n    z\n") == "if x:\n        y\n    z\n"  # inconsistent dedent


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_normalize_is_idempotent_and_keeps_the_program(snippet: str) -> None:
    normalized = normalize_source(snippet)
    assert normalize_source(normalized) == normalized
    try:
        before = _meaning(snippet)
    except (SyntaxError, tokenize.TokenError):
        return
    assert _meaning(normalized) == before


def test_encode_structure_form() -> None:
    source = "class A:\n    def f(self):\n        return 1\n\n# helpers\nx = [1,\n     2]\n"
    expected = (
        f"class A:\n{INDENT_TOKEN}def f(self):\n{INDENT_TOKEN}return 1\n\n{DEDENT_TOKEN}{DEDENT_TOKEN}# helpers\n"
        "x = [1,\n     2]\n"
    )
    assert encode_structure(source) == expected
    assert decode_structure(expected) == source
    inner = 'def f():\n    s = """\nflush\n"""\n'
    assert encode_structure(inner) == f'def f():\n{INDENT_TOKEN}s = """\n{RAWLINE_TOKEN}flush\n{RAWLINE_TOKEN}"""\n'


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_structure_round_trip_on_snippets(snippet: str) -> None:
    normalized = normalize_source(snippet)
    assert decode_structure(encode_structure(normalized)) == normalized
    assert decode_structure(encode_structure(snippet)) == snippet  # exact on any text, normalized or not


def test_decode_structure_accepts_any_text() -> None:
    assert decode_structure(f"{DEDENT_TOKEN}{DEDENT_TOKEN}x\n{INDENT_TOKEN}{INDENT_TOKEN}y\n{INDENT_TOKEN}") == "x\n        y\n"
    assert decode_structure(f"a {INDENT_TOKEN} b") == f"a {INDENT_TOKEN} b"  # markers count only at a line start


def test_stdlib_sample_round_trips(stdlib_sources: list[str]) -> None:
    for source in stdlib_sources:
        normalized = normalize_source(source)
        assert normalize_source(normalized) == normalized
        assert _meaning(normalized) == _meaning(source)
        encoded = encode_structure(normalized)
        assert decode_structure(encoded) == normalized
        assert decode_structure(encode_structure(source)) == source


def test_structure_tokens_are_single_ids(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = [tokenizer.convert_tokens_to_ids(token) for token in (*SPECIAL_TOKENS, *STRUCTURE_TOKENS)]
    assert ids == list(range(len(SPECIAL_TOKENS) + len(STRUCTURE_TOKENS)))
    for token in STRUCTURE_TOKENS:
        assert tokenizer(f"x{token}y", add_special_tokens=False)["input_ids"][1] == tokenizer.convert_tokens_to_ids(token)
    ids = encode_code(tokenizer, "if x:\n    y()\nz()\n")
    assert ids.count(tokenizer.convert_tokens_to_ids(INDENT_TOKEN)) == 1
    assert ids.count(tokenizer.convert_tokens_to_ids(DEDENT_TOKEN)) == 1


def test_training_learns_no_pieces_of_the_markers() -> None:
    nested = "def f(a):\n  for x in a:\n    if x:\n      yield x\n  return\n"
    vocabulary = train_code_tokenizer([nested] * 50, vocab_size=min_vocab_size() + 40).get_vocab()
    assert not [token for token in vocabulary if "DENT" in token and token not in STRUCTURE_TOKENS]


def test_code_round_trip_through_the_tokenizer(tokenizer: PreTrainedTokenizerFast, stdlib_sources: list[str]) -> None:
    for source in [*stdlib_sources[-30:], *SNIPPETS]:
        assert decode_code(tokenizer, encode_code(tokenizer, source)) == normalize_source(source)


def test_bos_eos_framing(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = encode_code(tokenizer, "def f():\n  return 1\n", add_bos_eos=True)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert decode_code(tokenizer, [*ids, tokenizer.pad_token_id]) == "def f():\n    return 1\n"


def test_tokenizer_saves_and_loads(tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    source = SNIPPETS[1]
    assert encode_code(loaded, source) == encode_code(tokenizer, source)
    assert decode_code(loaded, encode_code(loaded, source)) == normalize_source(source)


def test_training_is_deterministic_and_checks_the_vocabulary_size() -> None:
    first, second = (train_code_tokenizer(SNIPPETS * 5, vocab_size=min_vocab_size() + 30) for _ in range(2))
    assert first.get_vocab() == second.get_vocab()
    with pytest.raises(ValueError, match="vocab_size"):
        train_code_tokenizer(SNIPPETS, vocab_size=min_vocab_size() - 1)
