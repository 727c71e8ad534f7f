"""MCTS over the language-model environment of chapter 06: KV-cache reuse against re-encoding every step.
Writes results/benchmarks/mcts.json (simulations/s of each, the ratio, self-play tokens/s).

Run: ``.venv/bin/python benchmarks/mcts.py [--sims N] [--prompts N] [--quick]``

Both sides run the same search (``slmlab.mcts.core.MCTS``, same seed and settings) over
``LMEnvironment`` on the offline default model, once with ``reuse_cache=True`` (a child forks its parent's
KV cache and decodes only its own tokens) and once with ``reuse_cache=False`` (every step re-encodes the
whole sequence, then decodes). The evaluator is deliberately free — uniform priors, value 0 — so the
time is the environment's: decoding spans, feeding thought markers, scoring finished episodes (exact match
+ brevity, no model call). Per prompt the two sides run back to back, reuse first; the root's prompt
encoding and one warm-up step are not timed. Tokens generated count the span tokens of every node the
search created; "model tokens" also count what was re-encoded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from dataclasses import asdict, replace

import psutil
import torch
from tabulate import tabulate

import slmlab
from slmlab.environment import environment_report
from slmlab.io import atomic_write_json
from slmlab.mcts.core import MCTS, MCTSConfig, Node, search_tree
from slmlab.mcts.lm_env import EnvConfig, LMEnvironment
from slmlab.mcts.macro import Macro
from slmlab.settings import results_dir

GOAL = 3.0
FINANCE = ("Cedar Foods ($ millions)\nMetric | 2020 | 2021\nRevenue | 1945 | 1985\nOperating expenses | 1621 | 1452\n"
           "Net income | 191 | 235\nTotal assets | 1953 | 2628\n\n"
           "What was the ratio of Net income to Revenue in 2021? Round to 2 decimals.")  # data/tasks/finance_test
PROMPTS: list[tuple[str, str]] = [  # (question, gold answer): two short questions, then one with a table
    ("What is 7 + 5?", "12"),
    ("What is the capital of France?", "Paris"),
    (FINANCE, "0.12"),
    ("Which organ pumps blood around the body?", "The heart"),
    ("How many legs does a spider have?", "8"),
]


def uniform(state: LMEnvironment) -> tuple[dict, float]:
    """Uniform priors over the legal actions and a value of 0: costs nothing, so the environment is timed."""
    actions = state.legal_actions()
    return {action: 1.0 / len(actions) for action in actions}, 0.0


def tree_counts(root: Node) -> dict[str, int]:
    """Nodes the search created, with the tokens their steps generated and fed through the model."""
    counts = {"nodes": 0, "tokens_generated": 0, "model_tokens": 0}
    stack = list(root.children.values())
    while stack:
        node = stack.pop()
        if node.state is None:
            continue
        step = node.state.macro_trace()[-1]
        counts["nodes"] += 1
        counts["tokens_generated"] += step["tokens"]
        counts["model_tokens"] += step["fed"]
        stack.extend(node.children.values())
    return counts


class OtherCpu:
    """CPU cores other processes kept busy during a block (a busy shared machine slows both sides)."""

    def __enter__(self) -> OtherCpu:
        self._wall, self._own, self._busy = time.perf_counter(), time.process_time(), self._total()
        return self

    @staticmethod
    def _total() -> float:
        times = psutil.cpu_times()
        return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        other = self._total() - self._busy - (time.process_time() - self._own)
        self.cores = max(0.0, other) / wall if wall > 0 else 0.0


def search(model, question: str, gold: str, config: EnvConfig, sims: int) -> dict:
    root = LMEnvironment(model, question, config, gold=gold)
    root.step(Macro.CONTINUE)  # warm-up, untimed
    with OtherCpu() as other:
        start = time.perf_counter()
        tree = MCTS(MCTSConfig(num_simulations=sims, seed=config.seed), uniform).run(root)
        seconds = time.perf_counter() - start
    return {"prompt": question, "prompt_tokens": root.prompt_length, "sims": sims, "seconds": seconds,
            "other_busy_cores": round(other.cores, 2), **tree_counts(tree), "tree": search_tree(tree, max_depth=3)}


def summarise(runs: list[dict]) -> dict:
    seconds = sum(r["seconds"] for r in runs)
    sims = sum(r["sims"] for r in runs)
    generated = sum(r["tokens_generated"] for r in runs)
    return {
        "sims": sims, "seconds": round(seconds, 2), "sims_per_s": round(sims / seconds, 3),
        "ms_per_sim": round(1000 * seconds / sims, 1), "tokens_generated": generated,
        "tokens_per_s": round(generated / seconds, 1),
        "model_tokens_per_sim": round(sum(r["model_tokens"] for r in runs) / sims, 1),
        "other_busy_cores": round(sum(r["other_busy_cores"] * r["seconds"] for r in runs) / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=32, help="simulations per search")
    parser.add_argument("--prompts", type=int, default=3, help=f"how many of the {len(PROMPTS)} prompts")
    parser.add_argument("--span-tokens", type=int, default=8)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="1 prompt, 6 simulations: checks the script, not the speed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sims, prompts = (6, PROMPTS[:1]) if args.quick else (args.sims, PROMPTS[: args.prompts])
    model = slmlab.load_model(slmlab.DEFAULT_MODEL, backend="torch")
    config = EnvConfig(span_tokens=args.span_tokens, budget=args.budget, seed=args.seed)
    runs: dict[str, list[dict]] = {"reuse": [], "recompute": []}
    for question, gold in prompts:  # the two sides back to back per prompt, so a load change hits both
        for name, reuse in (("reuse", True), ("recompute", False)):
            runs[name].append(search(model, question, gold, replace(config, reuse_cache=reuse), sims))
            print(f"{name:>9}  {question[:40]!r:<42}  {runs[name][-1]['seconds']:6.1f} s", flush=True)
    reuse, recompute = summarise(runs["reuse"]), summarise(runs["recompute"])
    ratio = reuse["sims_per_s"] / recompute["sims_per_s"]
    same = all(a["tree"] == b["tree"] for a, b in zip(runs["reuse"], runs["recompute"]))
    per_prompt = [{"prompt": a["prompt"][:60], "prompt_tokens": a["prompt_tokens"],
                   "ratio": round(b["seconds"] / a["seconds"], 2)} for a, b in zip(runs["reuse"], runs["recompute"])]
    for side in runs.values():
        for run in side:
            del run["tree"]
    report = {
        "benchmark": "mcts_lm_environment",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/mcts.py" + (" --quick" if args.quick else
                                                  f" --sims {sims} --prompts {len(prompts)}"),
        "model": slmlab.DEFAULT_MODEL,
        "settings": {**{k: v for k, v in asdict(config).items() if k != "reuse_cache"}, "sims": sims,
                     "evaluator": "uniform priors, value 0"},
        "environment": {**environment_report(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "reuse": reuse,
        "recompute": recompute,
        "ratio": round(ratio, 2),
        "goal": {"ratio": GOAL, "met": ratio >= GOAL},
        "self_play_tokens_per_s": reuse["tokens_per_s"],
        "same_trees": same,
        "per_prompt": per_prompt,
        "why": "Decoding one token on CPU is memory-bound (the whole model is read per token), while re-encoding "
               "a 40-130-token prefix costs only a few decoding steps, so recompute adds less than a span's "
               "decoding per step; the gap grows with the prefix (prompt + answer so far) and with cheap steps "
               "(thought markers, STOP), and shrinks with longer spans.",
        "runs": runs,
    }
    path = atomic_write_json(results_dir("benchmarks") / "mcts.json", report)
    columns = {"sims_per_s": "sims/s", "ms_per_sim": "ms/sim", "tokens_per_s": "tokens/s",
               "model_tokens_per_sim": "model tok/sim", "other_busy_cores": "other cores"}
    table = [[name, *(row[key] for key in columns)] for name, row in (("reuse", reuse), ("recompute", recompute))]
    print("\n" + tabulate(table, headers=["", *columns.values()], floatfmt=("", ".2f", ".0f", ".1f", ".1f", ".2f")))
    for row in per_prompt:
        print(f"{row['prompt_tokens']:>4} prompt tokens: {row['ratio']:.2f}x  ({row['prompt'][:40]!r})")
    print(f"reuse / recompute: {ratio:.2f}x (goal {GOAL}x), same trees: {same} -> {path}")


if __name__ == "__main__":
    main()
