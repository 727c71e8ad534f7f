"""Chapter 08's training settings as PEFT needs them; the settings themselves (:class:`RLConfig`, shared by the
REINFORCE learner, its CLI and the TRL comparison) live in the chapter's spec, :mod:`slmlab.rl.spec`.
"""

from __future__ import annotations

from slmlab.rl.spec import RLConfig as RLConfig  # their home is the spec; these imports keep working
from slmlab.rl.spec import RLConfigError as RLConfigError


def peft_lora_config(config: RLConfig):
    """PEFT's LoraConfig for the policy's adapter (every layer, ``config.target_modules``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
