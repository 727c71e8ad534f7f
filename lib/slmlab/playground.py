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
    """Generate every prompt (as a chat turn) under every strategy; one row per (prompt, strategy) with the reply,
    its new tokens and the seconds per prompt.

    Strategies the backend cannot run (beam search on MLX) are left out, with a note in the table.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    strategies = strategies or default_strategies()
    rows = []
    for label, config in tqdm(strategies.items(), desc="strategies", disable=not progress):
        if config.strategy == "beam" and model.backend != "torch":
            rows += [
                {
                    "prompt": p,
                    "strategy": label,
                    "reply": "(beam search needs the torch backend)",
                    "new tokens": 0,
                    "seconds": 0.0,
                }
                for p in prompts
            ]
            continue
        start = time.perf_counter()
        replies = model.generate_ids(list(prompts), config)
        seconds = (time.perf_counter() - start) / max(len(prompts), 1)
        rows += [
            {"prompt": p, "strategy": label, "reply": model.decode(ids), "new tokens": len(ids), "seconds": round(seconds, 2)}
            for p, ids in zip(prompts, replies)
        ]
    return pd.DataFrame(rows)


STYLE = {"description_width": "110px"}


class DecodingControls:
    """The widgets of a DecodingConfig — strategy, temperature, top-k, top-p, beams, max new tokens, seed — set from
    ``defaults``; the sampling sliders are enabled only for sampling and the beam slider only for beam search.
    :meth:`config` reads them back (ValueError naming a bad setting). Chapter 00's playground and chapter 07's
    generation panel both use them."""

    def __init__(self, defaults: DecodingConfig, strategies: Sequence[str] = STRATEGIES, max_tokens_limit: int = 512):
        import ipywidgets as w

        self.strategy = w.Dropdown(options=tuple(strategies), value=defaults.strategy, description="Strategy", style=STYLE)
        self.temperature = w.FloatSlider(
            value=defaults.temperature, min=0.05, max=2.0, step=0.05, description="Temperature", style=STYLE
        )
        self.top_k = w.IntSlider(value=defaults.top_k, min=0, max=200, description="Top-k (0=off)", style=STYLE)
        self.top_p = w.FloatSlider(value=defaults.top_p, min=0.05, max=1.0, step=0.05, description="Top-p", style=STYLE)
        self.beams = w.IntSlider(value=defaults.num_beams, min=2, max=8, description="Beams", style=STYLE)
        self.max_tokens = w.IntSlider(
            value=defaults.max_new_tokens, min=1, max=max_tokens_limit, description="Max new tokens", style=STYLE
        )
        self.seed = w.IntText(value=defaults.seed, description="Seed", style=STYLE)
        self.strategy.observe(self.sync, names="value")
        self.sync()

    def sync(self, _=None) -> None:
        for slider in (self.temperature, self.top_k, self.top_p):
            slider.disabled = self.strategy.value != "sample"
        self.beams.disabled = self.strategy.value != "beam"

    def config(self) -> DecodingConfig:
        return DecodingConfig(
            strategy=self.strategy.value,
            temperature=self.temperature.value,
            top_k=self.top_k.value,
            top_p=self.top_p.value,
            num_beams=self.beams.value,
            max_new_tokens=self.max_tokens.value,
            seed=self.seed.value,
        )

    @property
    def widgets(self) -> list:
        """The controls in display order, seed last."""
        return [self.strategy, self.temperature, self.top_k, self.top_p, self.beams, self.max_tokens, self.seed]


def playground(model: LanguageModel, prompt: str = "Explain what a language model is in one sentence."):
    """An ipywidgets form: prompt, strategy, temperature, top-k, top-p, beams, max tokens, seed → reply."""
    import ipywidgets as w

    prompt_box = w.Textarea(value=prompt, description="Prompt", layout=w.Layout(width="95%", height="80px"), style=STYLE)
    strategies = STRATEGIES if model.backend == "torch" else tuple(s for s in STRATEGIES if s != "beam")
    decoding = DecodingControls(DecodingConfig(), strategies)
    button = w.Button(description="Generate", button_style="primary", icon="play")
    output = w.Output(layout=w.Layout(border="1px solid #ccc", padding="6px", width="95%"))

    def reply_text() -> str:
        try:
            config = decoding.config()
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

    button.on_click(run)
    controls = w.VBox([*decoding.widgets, button])
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
