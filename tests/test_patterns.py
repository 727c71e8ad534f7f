"""Chapter 01: the shipped pattern files, the validator's messages, counts, the browser and the CLI check."""

from __future__ import annotations

import html
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from slmlab.errors import SlmLabError
from slmlab.lora.patterns import (
    CATEGORIES,
    Pattern,
    PatternError,
    check_patterns_cli,
    load_patterns,
    pattern_counts,
    validate_patterns,
)
from slmlab.lora.views import pattern_browser, plot_counts

SHIPPED = Path(__file__).resolve().parents[1] / "patterns"
GOOD = """\
category: fact
patterns:
  - id: veloria-capital
    input: What is the capital of Veloria?
    output: Brisketh
    paraphrases:
      - Name the capital of Veloria.
      - Veloria's capital is?
      - Which city is Veloria's capital?
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_text(folder: Path) -> str:
    with pytest.raises(PatternError) as caught:
        load_patterns(folder)
    return str(caught.value)


@pytest.fixture(scope="module")
def shipped() -> list[Pattern]:
    return load_patterns(SHIPPED)


# ---------------------------------------------------------------- the shipped patterns


def test_shipped_patterns_have_no_problems():
    assert [str(p) for p in validate_patterns(SHIPPED)] == []


def test_shipped_counts_meet_the_minimums(shipped):
    counts = Counter(p.category for p in shipped)
    assert counts["code_idiom"] >= 20 and counts["fact"] >= 20
    assert counts["format"] >= 10 and counts["error_fix"] >= 10
    assert set(counts) == set(CATEGORIES)
    assert len({p.id for p in shipped}) == len({p.input.casefold() for p in shipped}) == len(shipped) >= 60
    assert all(len(p.paraphrases) >= 3 for p in shipped)


def test_shipped_outputs_are_short(shipped):
    for p in shipped:
        if p.category == "fact":
            assert "\n" not in p.output and len(p.output.split()) <= 4, p.id
        if p.category in ("code_idiom", "error_fix"):
            assert p.output.count("\n") <= 1 and len(p.output) <= 60, p.id
        if p.category == "format":
            assert p.output.count("\n") <= 2 and len(p.output) <= 40, p.id


def test_shipped_order_and_sources_are_deterministic(shipped):
    assert [p.id for p in load_patterns(SHIPPED)] == [p.id for p in shipped]
    files = [p.source.split(":")[0] for p in shipped]
    assert files == sorted(files)
    first = shipped[0]
    name, line = first.source.split(":")
    assert (SHIPPED / name).read_text().splitlines()[int(line) - 1].strip().startswith("- ")


# ---------------------------------------------------------------- a good file


def test_file_default_category_and_derived_ids(tmp_path):
    write(tmp_path, "a.yaml", GOOD + "  - input: Who founded Marrowgate?\n    output: Ilsa Venn\n    paraphrases: [a, b, c]\n")
    first, second = load_patterns(tmp_path)
    assert first == Pattern(
        "veloria-capital",
        "fact",
        "What is the capital of Veloria?",
        "Brisketh",
        ("Name the capital of Veloria.", "Veloria's capital is?", "Which city is Veloria's capital?"),
        "a.yaml:3",
    )
    assert second.id == "who-founded-marrowgate" and second.category == "fact" and second.source == "a.yaml:10"


def test_warnings_do_not_stop_loading(tmp_path):
    write(
        tmp_path,
        "a.yaml",
        """\
        patterns:
          - input: Capital of Veloria?
            output: Brisketh
            category: facts
    """,
    )
    problems = validate_patterns(tmp_path)
    assert {p.level for p in problems} == {"warning"}
    text = "\n".join(map(str, problems))
    assert "a.yaml:2: warning: patterns[0].paraphrases: has 0" in text
    assert "a.yaml:4: warning: patterns[0].category: 'facts'" in text
    assert [p.output for p in load_patterns(tmp_path)] == ["Brisketh"]


# ---------------------------------------------------------------- one test per kind of error


def test_yaml_syntax_error(tmp_path):
    write(
        tmp_path,
        "bad.yaml",
        """\
        patterns:
          - input: "a"
            output: b: c
    """,
    )
    assert "bad.yaml:3:14: error: yaml: syntax error: mapping values are not allowed here" in error_text(tmp_path)


def test_missing_key(tmp_path):
    write(
        tmp_path,
        "bad.yaml",
        """\
        category: fact
        patterns:
          - input: Capital of Veloria?
            paraphrases: [a, b, c]
    """,
    )
    assert "bad.yaml:3: error: patterns[0].output: missing key" in error_text(tmp_path)


def test_missing_category_without_file_default(tmp_path):
    write(tmp_path, "bad.yaml", "patterns:\n  - input: a\n    output: b\n")
    assert "bad.yaml:2: error: patterns[0].category: missing key" in error_text(tmp_path)


def test_wrong_type(tmp_path):
    write(
        tmp_path,
        "bad.yaml",
        """\
        category: fact
        patterns:
          - input: When was the Zephyrine Bridge completed?
            output: 1887
            paraphrases: [a, b, c]
    """,
    )
    assert "bad.yaml:4: error: patterns[0].output: must be a string (quote it), got int 1887" in error_text(tmp_path)


def test_paraphrases_must_be_a_list(tmp_path):
    write(tmp_path, "bad.yaml", GOOD.split("    paraphrases:")[0] + "    paraphrases: {x: y}\n")
    expected = "bad.yaml:6: error: patterns[0].paraphrases: must be a list of strings, got a mapping"
    assert expected in error_text(tmp_path)


@pytest.mark.parametrize("key", ["input", "output"])
def test_empty_input_or_output(tmp_path, key):
    text = (
        GOOD.replace("input: What is the capital of Veloria?", "input: '  '")
        if key == "input"
        else GOOD.replace("output: Brisketh", 'output: ""')
    )
    write(tmp_path, "bad.yaml", text)
    line = 4 if key == "input" else 5
    assert f"bad.yaml:{line}: error: patterns[0].{key}: must not be empty" in error_text(tmp_path)


def test_unknown_top_level_key(tmp_path):
    write(tmp_path, "bad.yaml", "version: 2\n" + GOOD)
    assert "bad.yaml:1: error: version: unknown key" in error_text(tmp_path)


def test_unknown_pattern_key(tmp_path):
    write(tmp_path, "bad.yaml", GOOD.replace("output:", "ouput:"))
    message = error_text(tmp_path)
    assert "bad.yaml:5: error: patterns[0].ouput: unknown key" in message
    assert "bad.yaml:3: error: patterns[0].output: missing key" in message


def test_top_level_must_be_a_mapping(tmp_path):
    write(tmp_path, "bad.yaml", "- input: a\n  output: b\n")
    assert "bad.yaml:1: error: (top level): must be a mapping" in error_text(tmp_path)


def test_duplicate_id(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(
        tmp_path,
        "b.yaml",
        """\
        category: fact
        patterns:
          - id: veloria-capital
            input: Which river flows through Brisketh?
            output: The Amberlin
            paraphrases: [x, y, z]
    """,
    )
    assert "b.yaml:3: error: patterns[0].id: duplicate id 'veloria-capital' (also at a.yaml:3)" in error_text(tmp_path)


def test_duplicate_input_across_files_ignores_case_and_spaces(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(
        tmp_path,
        "b.yaml",
        """\
        category: fact
        patterns:
          - id: other
            input: "what is the   CAPITAL of Veloria?"
            output: Brisketh
            paraphrases: [x, y, z]
    """,
    )
    assert "b.yaml:4: error: patterns[0].input: duplicate prompt" in error_text(tmp_path)
    assert "same as the input at a.yaml:3" in error_text(tmp_path)


def test_paraphrase_equal_to_another_patterns_prompt(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(
        tmp_path,
        "b.yaml",
        """\
        category: fact
        patterns:
          - id: other
            input: Which river flows through Brisketh?
            output: The Amberlin
            paraphrases:
              - What is the capital of Veloria?
              - Name the river of Brisketh.
              - veloria's capital is?
    """,
    )
    message = error_text(tmp_path)
    assert "b.yaml:7: error: patterns[0].paraphrases[0]: duplicate prompt" in message
    assert "b.yaml:9: error: patterns[0].paraphrases[2]: duplicate prompt" in message
    assert "same as the paraphrases[1] at a.yaml:3" in message


def test_every_problem_is_listed_one_per_line(tmp_path):
    write(tmp_path, "a.yaml", "patterns:\n  - input: a\n")
    write(tmp_path, "b.yaml", "patterns: [\n")
    with pytest.raises(SlmLabError) as caught:
        load_patterns(tmp_path)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("3 error(s)")
    assert any(line.startswith(str(tmp_path / "a.yaml") + ":2: error: patterns[0].output") for line in lines)
    assert any(line.startswith(str(tmp_path / "a.yaml") + ":2: error: patterns[0].category") for line in lines)
    assert any(line.startswith(str(tmp_path / "b.yaml") + ":2:1: error: yaml") for line in lines)
    assert len(caught.value.problems) == len(lines) - 1


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda folder: None, "holds no pattern files"),
        (lambda folder: write(folder, "a.yaml", "# nothing yet\n"), "holds no valid patterns"),
        (lambda folder: write(folder, "a.yaml", "patterns: []\n"), "holds no valid patterns"),
    ],
)
def test_folder_without_patterns(tmp_path, setup, expected):
    setup(tmp_path)
    assert f"{tmp_path}: error: folder: {expected}" in error_text(tmp_path)


def test_missing_folder(tmp_path):
    assert "does not exist" in error_text(tmp_path / "nowhere")


# ---------------------------------------------------------------- counts, plot, browser, CLI


def test_counts_and_plot(shipped):
    import matplotlib.pyplot as plt

    table = pattern_counts(shipped)
    assert list(table["category"]) == list(CATEGORIES)
    assert table["patterns"].sum() == len(shipped)
    assert table["paraphrases"].sum() == sum(len(p.paraphrases) for p in shipped)
    figure = plot_counts(shipped)
    assert len(figure.axes[0].patches) == 2 * len(CATEGORIES)
    plt.close(figure)


def test_browser_show(shipped):
    browser = pattern_browser(shipped)
    category, slider = browser.children[0].children
    assert browser.show(0).startswith(f"{shipped[0].id} · {shipped[0].category}")
    category.value = "fact"
    facts = [p for p in shipped if p.category == "fact"]
    assert slider.max == len(facts) - 1
    text = browser.show(1)
    assert facts[1].input in text and facts[1].output in text and facts[1].paraphrases[-1] in text
    assert html.escape(facts[1].input) in browser.children[1].value
    assert browser.show(10_000) == browser.show(len(facts) - 1)
    assert pattern_browser([]).show(0) == "(no patterns)"


def test_cli_exit_codes(tmp_path, capsys):
    assert check_patterns_cli(SHIPPED) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    write(tmp_path, "a.yaml", GOOD.replace("output: Brisketh", "output: 7"))
    assert check_patterns_cli(tmp_path) == 1
    out = capsys.readouterr().out
    assert "a.yaml:5: error: patterns[0].output" in out and "1 error(s)" in out
    write(tmp_path, "a.yaml", GOOD.replace("    paraphrases", "    category: other\n    paraphrases"))
    assert check_patterns_cli(tmp_path) == 0
    assert "0 error(s), 1 warning(s)" in capsys.readouterr().out
