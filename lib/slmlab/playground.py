"""Chapter 00: try the model. A table comparing decoding strategies, and an ipywidgets playground.

Entry points: :func:`compare_strategies` (a DataFrame) and :func:`playground` (a widget).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from slmlab.backends.base import LanguageModel
from slmlab.generation import STRATEGIES, DecodingConfig


def default_strategies(max_new_tokens: int = 48, seed: int = 0) -> dict[str, DecodingConfig]:
    """Five classic ways to decode, each a DecodingConfig."""
    base = DecodingConfig(max_new_tokens=max_new_tokens, seed=seed)
    return {
        "greedy": base,
        "sample T=0.7": base.with_(strategy="sample", temperature=0.7),
        "top-k 20": base.with_(strategy="sample", temperature=0.9, top_k=20),
        "top-p 0.9": base.with_(strategy="sample", temperature=0.9, top_p=0.9),
        "beam x4": base.with_(strategy="beam", num_beams=4),
    }


def compare_strategies(
    model: LanguageModel,
    prompts: Sequence[str],
    strategies: Mapping[str, DecodingConfig] | None = None,
    progress: bool = True,
):
    """Generate every prompt under every strategy; one row per (prompt, strategy).

    Strategies the backend cannot run (beam search on MLX) are left out, with a note in the table.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    strategies = strategies or default_strategies()
    rows = []
    for label, config in tqdm(strategies.items(), desc="strategies", disable=not progress):
        if config.strategy == "beam" and model.backend != "torch":
            rows += [{"prompt": p, "strategy": label, "reply": "(beam search needs the torch backend)",
                      "new tokens": 0, "seconds": 0.0} for p in prompts]
            continue
        start = time.perf_counter()
        replies = model.generate_ids(list(prompts), config)
        seconds = (time.perf_counter() - start) / max(len(prompts), 1)
        rows += [{"prompt": p, "strategy": label, "reply": model.decode(ids), "new tokens": len(ids),
                  "seconds": round(seconds, 2)} for p, ids in zip(prompts, replies)]
    return pd.DataFrame(rows)


def playground(model: LanguageModel, prompt: str = "Explain what a language model is in one sentence."):
    """An ipywidgets form: prompt, strategy, temperature, top-k, top-p, beams, max tokens, seed → reply."""
    import ipywidgets as w

    style = {"description_width": "110px"}
    prompt_box = w.Textarea(value=prompt, description="Prompt", layout=w.Layout(width="95%", height="80px"), style=style)
    strategies = STRATEGIES if model.backend == "torch" else tuple(s for s in STRATEGIES if s != "beam")
    strategy = w.Dropdown(options=strategies, value="greedy", description="Strategy", style=style)
    temperature = w.FloatSlider(value=0.7, min=0.05, max=2.0, step=0.05, description="Temperature", style=style)
    top_k = w.IntSlider(value=0, min=0, max=200, description="Top-k (0=off)", style=style)
    top_p = w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="Top-p", style=style)
    beams = w.IntSlider(value=4, min=2, max=8, description="Beams", style=style)
    max_tokens = w.IntSlider(value=64, min=1, max=512, description="Max new tokens", style=style)
    seed = w.IntText(value=0, description="Seed", style=style)
    button = w.Button(description="Generate", button_style="primary", icon="play")
    output = w.Output(layout=w.Layout(border="1px solid #ccc", padding="6px", width="95%"))

    def sync(_=None) -> None:
        sampling = strategy.value == "sample"
        for slider in (temperature, top_k, top_p):
            slider.disabled = not sampling
        beams.disabled = strategy.value != "beam"

    def reply_text() -> str:
        try:
            config = DecodingConfig(
                strategy=strategy.value, temperature=temperature.value, top_k=top_k.value, top_p=top_p.value,
                num_beams=beams.value, max_new_tokens=max_tokens.value, seed=seed.value,
            )
        except ValueError as problem:
            return str(problem)
        start = time.perf_counter()
        ids = model.generate_ids([prompt_box.value], config)[0]
        seconds = time.perf_counter() - start
        tokens = len(ids)
        rate = tokens / max(seconds, 1e-9)
        return f"{model.decode(ids)}\n\n— {config.describe()} · {tokens} tokens · {seconds:.2f} s · {rate:.1f} tokens/s"

    def run(_=None) -> str:
        output.clear_output()
        text = reply_text()
        with output:
            print(text)
        return text

    strategy.observe(sync, names="value")
    button.on_click(run)
    sync()
    controls = w.VBox([strategy, temperature, top_k, top_p, beams, max_tokens, seed, button])
    form = w.VBox([prompt_box, controls, output])
    form.run = run  # lets a notebook or test press the button programmatically
    return form


def plot_strategies(table):
    """Bar chart of mean reply length and seconds per prompt for each strategy; returns the figure."""
    import matplotlib.pyplot as plt

    summary = table.groupby("strategy", sort=False)[["new tokens", "seconds"]].mean()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    summary["new tokens"].plot.bar(ax=left, color="#4c72b0", title="mean reply length (tokens)")
    summary["seconds"].plot.bar(ax=right, color="#dd8452", title="seconds per prompt")
    for axis in (left, right):
        axis.set_xlabel("")
        axis.tick_params(axis="x", rotation=20)
    figure.tight_layout()
    return figure
