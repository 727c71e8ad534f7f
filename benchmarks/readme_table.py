"""The README's benchmark table, regenerated from results/benchmarks/*.json (never typed by hand).
Rewrites the block between the two ``benchmark-table`` markers in README.md; ``--print`` only shows it.

Run: ``.venv/bin/python benchmarks/readme_table.py [--print]`` (``make bench`` runs it last).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from slmlab.io import atomic_write_text
from slmlab.settings import project_root, results_dir

START, END = "<!-- benchmark-table:start -->", "<!-- benchmark-table:end -->"
HEADERS = ["benchmark", "configuration", "measured", "ratio", "peak RSS (MB)", "agreement", "goal"]
Row = list[str]


def _num(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _goal(goal: dict | None, measured: float | None = None, of: str | None = None) -> str:
    """'met: 2.43× (goal ≥ 1.5× llama.cpp single stream)' from a benchmark's goal record."""
    if not goal:
        return ""
    target = goal.get("factor", goal.get("goal", goal.get("ratio")))
    got = f": {measured:.2f}×" if measured is not None else ""
    return f"{'met' if goal.get('met') else 'not met'}{got} (goal ≥ {target}×{' ' + of if of else ''})"


def _same(match: dict | None) -> str:
    return f"{match['identical']}/{match['total']} identical" if match else ""


def generation_rows(data: dict) -> Iterator[Row]:
    goals = {g["best_config"]: g for g in data.get("goals", []) if g.get("best_config")}
    default_one = next((r for r in data["results"] if r["variant"] == "default" and r["batch_size"] == 1), None)
    for row in data["results"]:
        name = f"{row['variant']} @ batch {row['batch_size']}"
        if row["status"] != "ok":
            yield ["generation", name, f"failed: {row['reason'][:50]}", "", _num(row.get("rss_peak_mb"), 0), "", ""]
            continue
        ratio = row["tokens_per_s"] / default_one["tokens_per_s"] if default_one else None
        agreement = _same(row.get("matches_static_same_batch")) and "vs static: " + _same(row["matches_static_same_batch"])
        agreement = agreement or ("vs fp32 b1: " + _same(row.get("matches_fp32_batch1_greedy")))
        yield [
            "generation",
            name,
            f"{row['tokens_per_s']:.1f} tok/s",
            f"{_num(ratio, 2)}× fp32 b1",
            _num(row["rss_peak_mb"], 0),
            agreement,
            _generation_goal(goals.get(name)),
        ]


def _generation_goal(goal: dict | None) -> str:
    return _goal(goal, goal.get("ratio"), goal.get("of")) if goal else ""


def mcts_rows(data: dict) -> Iterator[Row]:
    configurations = data.get("configurations") or {"reuse": data["reuse"], "recompute": data["recompute"]}
    goals = data.get("goals") or {}
    for name, row in configurations.items():
        same = row.get("agreement_with_reuse")
        agreement = f"{same['same_trees']}/{same['prompts']} trees = reuse" if same else ""
        yield [
            "mcts",
            name,
            f"{row['sims_per_s']:.2f} sims/s, {row['tokens_per_s']:.1f} tok/s",
            f"{_num(row.get('ratio_to_recompute'), 2)}× recompute",
            _num(row.get("peak_rss_mb"), 0),
            agreement,
            "; ".join(
                _goal(goal, goal["measured"], label)
                for key, label in MCTS_GOALS.items()
                if (goal := goals.get(key)) and goal.get("best") == name
            ),
        ]


MCTS_GOALS = {"sims_ratio_to_recompute": "recompute sims/s", "self_play_tokens_ratio_to_reuse": "reuse tokens/s"}


def lora_rows(data: dict) -> Iterator[Row]:
    yield [
        "lora",
        "slmlab vs TRL SFTTrainer",
        f"{data['slmlab']['tokens_per_s']:.0f} vs {data['trl_sfttrainer_peft']['tokens_per_s']:.0f} tok/s",
        f"{data['ratio']:.2f}×",
        "",
        _plain_step(data),
        _goal({**data["goal"], "factor": data["goal"]["ratio"]}),
    ]


def _plain_step(data: dict) -> str:
    """The same loop without its fast step, when the run measured it."""
    plain = data.get("slmlab_plain_step")
    if not plain:
        return ""
    return (
        f"plain step {plain['tokens_per_s']:.0f} tok/s ({data['plain_step_ratio']:.2f}×); final loss "
        f"{data['slmlab']['final_loss']:.5f} vs {plain['final_loss']:.5f}"
    )


def lm_rows(data: dict) -> Iterator[Row]:
    throughput, quality = data["throughput"], data["quality"]["default_recipe"]
    yield [
        "lm",
        "slmlab loop vs HF Trainer (fp32)",
        f"{throughput['fp32']['slmlab']['tokens_per_s']:.0f} tok/s",
        f"{throughput['ratio']:.2f}×",
        _num(data.get("peak_rss_mb"), 0),
        f"{quality['held_out_bits_per_byte']:.3f} bits/byte",
        _goal({**throughput["goal"], "factor": throughput["goal"]["ratio"]}),
    ]


def rl_rows(data: dict) -> Iterator[Row]:
    yield [
        "rl",
        "slmlab vs TRL GRPO",
        f"{data['slmlab']['completions_per_s']:.3f} completions/s",
        f"{data['ratio_completions_per_s']:.2f}×",
        _num(data.get("peak_rss_mb"), 0),
        f"held-out {100 * data['slmlab']['heldout_pass_at_1']:.1f} %",
        "",
    ]


def scoring_rows(data: dict) -> Iterator[Row]:
    for name, row in data["results"].items():
        if not isinstance(row, dict):
            continue
        yield [
            "scoring",
            f"HumanEval, {row['programs']} {name} programs: checker apart vs one process",
            f"{row['scorer']['programs_per_s']:.1f} vs {row['one_process']['programs_per_s']:.1f} programs/s",
            f"{row['ratio']:.2f}×",
            _num(data.get("peak_rss_mb"), 0),
            f"{row['same_verdicts']}/{row['programs']} same verdicts",
            "",
        ]


def mcts_code_rows(data: dict) -> Iterator[Row]:
    rows, ratios, tasks = data["configurations"], data["ratios"], len(data["tasks"])
    against = {
        "no_kv_forks": f"{_num(ratios['seconds_no_kv_forks_over_cached'], 2)}× cached's seconds",
        "no_score_cache": f"{_num(ratios['sandbox_runs_no_cache_over_cached'], 2)}× cached's sandbox runs",
        "filtering": "same tokens as cached",
    }
    for name, row in rows.items():
        yield [
            "mcts_code",
            f"{name}, {tasks} held-out tasks greedy fails",
            f"{row['seconds']:.1f} s, {row['tokens']:,} tokens, {row['sandbox_runs']} sandbox runs",
            against.get(name, ""),
            "",
            f"hidden tests: {row['hidden_passed']}/{tasks} solved",
            "",
        ]


def agreement_rows(data: dict) -> Iterator[Row]:
    for name, row in data["models"].items():
        same = row["agreement"]
        yield [
            "agreement",
            f"llama.cpp vs torch, {name}, chapter 04 test set",
            f"normalized {row['llamacpp']['normalized']:.1f} vs {row['torch']['normalized']:.1f} %",
            "",
            _num(data.get("peak_rss_mb"), 0),
            f"{same['identical']}/{same['total']} identical, common prefix {same['mean_common_prefix_share']:.2f}",
            "",
        ]


SOURCES: dict[str, Callable[[dict], Iterator[Row]]] = {
    "generation": generation_rows,
    "mcts": mcts_rows,
    "mcts_code": mcts_code_rows,
    "agreement": agreement_rows,
    "lora": lora_rows,
    "lm": lm_rows,
    "rl": rl_rows,
    "scoring": scoring_rows,
}
SCRIPTS = {"agreement": "backend_agreement"}


def table(folder: Path) -> str:
    """The Markdown table of every benchmark JSON in ``folder``, and one line per file saying when and how."""
    rows, made = [], []
    for name, to_rows in SOURCES.items():
        path = folder / f"{name}.json"
        if not path.is_file():
            made.append(f"- `{name}`: not run (`python benchmarks/{SCRIPTS.get(name, name)}.py`)")
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        rows.extend(to_rows(data))
        quick = " (quick: checks the script, not the speed)" if data.get("quick") else ""
        made.append(f"- `{name}`: `{data.get('command', '')}`, {data.get('created', '?')}{quick}")
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines + ["", *made])


def replace_block(text: str, block: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    return head + START + "\n" + block + "\n" + END + rest.split(END, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table instead of writing README.md")
    args = parser.parse_args()
    block = table(results_dir("benchmarks"))
    if args.print:
        print(block)
        return
    readme = project_root() / "README.md"
    atomic_write_text(readme, replace_block(readme.read_text(encoding="utf-8"), block))
    print(f"rewrote the benchmark table in {readme}")


if __name__ == "__main__":
    main()
