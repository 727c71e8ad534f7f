"""Greedy replies of the llama.cpp backend (packaged Q4_1 GGUF) against the torch backend (the same weights in
float32) on chapter 04's held-out test set, for the base model and the trained adapter; writes
results/benchmarks/agreement.json.

Run: ``.venv/bin/python benchmarks/backend_agreement.py [--limit N]`` after ``slmlab data`` and ``slmlab train``
(without an adapter only the base model is compared). Needs ``slmlab[llamacpp]``.

Both backends go through chapter 04's own evaluation (``slmlab.lora.evaluation.evaluate``: chat template, greedy,
48 new tokens); llama.cpp gets the PEFT adapter converted to a GGUF LoRA file. Per model the script reports how
many replies are identical, the mean share of each reply that is a common prefix, and each backend's exact and
normalized match. llama.cpp runs first, before torch has run in the process (they share one OpenMP runtime).
"""

from __future__ import annotations

import argparse
import time

import slmlab
from slmlab.backends import llamacpp_available
from slmlab.environment import environment_report, peak_rss_mb
from slmlab.io import atomic_write_json, created_now
from slmlab.lora.datagen import load_split
from slmlab.lora.evaluation import evaluate
from slmlab.metrics import reply_agreement
from slmlab.settings import adapters_dir, data_dir, results_dir

ADAPTER = "patterns-lora"


def scores(frame) -> dict:
    return {name: round(100 * float(frame[name].mean()), 1) for name in ("exact", "normalized")}


def run(backend: str, adapter: str | None, rows: list[dict]) -> tuple[object, float]:
    start = time.perf_counter()
    model = slmlab.load_model(slmlab.DEFAULT_MODEL, backend=backend, **({"adapter": adapter} if adapter else {}))
    frame = evaluate(model, rows, progress=False)
    return frame, round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N test rows (default: all)")
    args = parser.parse_args()
    if not llamacpp_available():
        raise SystemExit("llama-cpp-python is not installed: pip install -e '.[llamacpp]' (builds llama.cpp, ~7 min)")
    if not (data_dir() / "test.jsonl").is_file():
        raise SystemExit(f"{data_dir() / 'test.jsonl'} is missing: run `slmlab data` first")
    rows = load_split(data_dir(), "test")[: args.limit]
    adapter = adapters_dir(ADAPTER)
    models = {"base": None, **({"adapter": str(adapter)} if (adapter / "adapter_config.json").is_file() else {})}
    frames = {(name, backend): run(backend, path, rows) for backend in ("llamacpp", "torch") for name, path in models.items()}
    report = {
        "benchmark": "backend_agreement",
        "created": created_now(),
        "command": "python benchmarks/backend_agreement.py" + (f" --limit {args.limit}" if args.limit else ""),
        "model": slmlab.DEFAULT_MODEL,
        "test_rows": len(rows),
        "environment": environment_report(),
        "models": {
            name: {
                "agreement": reply_agreement(
                    list(frames[name, "llamacpp"][0]["prediction"]), list(frames[name, "torch"][0]["prediction"])
                ),
                "llamacpp": {**scores(frames[name, "llamacpp"][0]), "seconds": frames[name, "llamacpp"][1]},
                "torch": {**scores(frames[name, "torch"][0]), "seconds": frames[name, "torch"][1]},
            }
            for name in models
        },
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "why": "llama.cpp runs the Q4_1 weights as shipped and quantizes activations for its matrix products; torch "
        "runs the same weights dequantized to float32, so near-tied greedy choices can go either way.",
    }
    path = atomic_write_json(results_dir("benchmarks") / "agreement.json", report)
    for name, row in report["models"].items():
        same = row["agreement"]
        print(
            f"{name}: {same['identical']}/{same['total']} identical (common prefix {same['mean_common_prefix_share']}); "
            f"llama.cpp {row['llamacpp']}, torch {row['torch']}"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
