"""Chapter 08 fingerprints: formatting, comments and docstrings do not change a program's fingerprint; code does."""

from __future__ import annotations

from slmlab.execution.fingerprint import FingerprintSet, fingerprint, normalize_code

BASE = "def add_three(x):\n    return x + 3\n"
VARIANTS = [
    "def add_three(x):\n    return x+3",
    "def add_three( x ):\n\n\n        return (x + 3)   # plus three\n",
    'def add_three(x):\n    """Add three to x."""\n    return x + 3\n',
    "# a helper\ndef add_three(x):\n    '''doc'''\n    # return it\n    return x + 3\n\n",
    "def add_three(value):\n    return value + 3\n",  # canonical local names
]


def test_formatting_comment_docstring_and_name_variants_share_a_fingerprint():
    assert {fingerprint(variant) for variant in VARIANTS} == {fingerprint(BASE)}


def test_real_changes_change_the_fingerprint():
    changed = [
        "def add_three(x):\n    return x + 4\n",
        "def add_four(x):\n    return x + 3\n",
        "def add_three(x):\n    return 3 + x\n",
        "def add_three(x):\n    print(x + 3)\n",
    ]
    assert len({fingerprint(code) for code in [BASE, *changed]}) == 1 + len(changed)


def test_locals_are_renamed_but_globals_and_attributes_kept():
    code = (
        "import math\ndef f(a, *rest, key=1):\n    total = math.floor(a) + len(rest)\n    g = lambda a: a\n    return g(total)\n"
    )
    normal = normalize_code(code)
    assert "math.floor" in normal and "len(" in normal and "def f(" in normal
    assert "total" not in normal and "rest" not in normal and "key" not in normal
    assert normalize_code(code, rename_locals=False).count("total") == 2
    assert fingerprint("def f(a):\n    return a\n") != fingerprint("def f(a):\n    return b\n")


def test_unparsable_code_falls_back_to_whitespace_normalization():
    broken = "def add_three(x:\n    return  x + 3\n"
    assert normalize_code(broken) == "def add_three(x: return x + 3"
    assert fingerprint(broken) == fingerprint("def   add_three(x:\n\treturn x + 3")
    assert fingerprint(broken) != fingerprint("def add_three(x:\n    return x + 4\n")
    assert len(fingerprint(broken)) == 64 and fingerprint("\x00 bad") == fingerprint("\x00   bad\n")


def test_fingerprint_set_counts_duplicates_and_round_trips():
    seen = FingerprintSet()
    assert seen.duplicate_rate == 0.0 and len(seen) == 0
    assert seen.add(BASE) is True
    assert [seen.add(variant) for variant in VARIANTS[:3]] == [False, False, False]
    assert seen.add("def add_three(x):\n    return x * 3\n") is True
    assert len(seen) == 2 and seen.total == 5 and seen.duplicates == 3 and seen.duplicate_rate == 3 / 5
    assert seen.seen(VARIANTS[-1]) and VARIANTS[-1] in seen and seen.count(BASE) == 4 and "x = 1" not in seen
    restored = FingerprintSet()
    restored.load_state_dict(seen.state_dict())
    assert restored == seen and restored.duplicate_rate == seen.duplicate_rate
