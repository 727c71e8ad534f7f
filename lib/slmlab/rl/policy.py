"""Chapter 08's policies: the model that writes programs and everything the learner asks of it — prompt tokens, reply
text, the trainable weights, a frozen reference for the KL term, saving and loading, and a model to evaluate.

:class:`LoraPolicy` is the default: the offline SmolLM2-135M-Instruct with a PEFT LoRA adapter (the base model with the
adapter switched off is the reference). :class:`TinyPolicy` is the "emergent" setting: a chapter-07-sized Llama built
from scratch, its initialization checked (and repaired) by :mod:`slmlab.rl.initialization`, with a code tokenizer whose
INDENT/DEDENT tokens carry the block structure; its reference is a frozen copy of the initial weights.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmlab.adapters import quiet_peft_deprecation
from slmlab.execution.tasks import CodeTask
from slmlab.generation import render_prompt
from slmlab.models import DEFAULT_MODEL, resolve_model
from slmlab.rl.config import RLConfig, peft_lora_config
from slmlab.rl.initialization import InitReport, ensure_good_initialization, initialize

if TYPE_CHECKING:
    import torch

    from slmlab.backends.torch_backend import TorchModel

ADAPTER_FILE = "adapter_model.safetensors"
TINY_WEIGHTS = "model.safetensors"


def load_base(folder: Path):
    """``(model, tokenizer)`` of a local transformers folder as the policies train it: float32 weights, a tokenizer
    that pads (and truncates) on the left and falls back to EOS for padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", truncation_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), tokenizer


class Policy:
    """What the learner asks of a policy: ``model``, ``tokenizer``, ``pad_id``/``eos_id``, ``prompt_ids(text)``,
    ``reply_text(ids)``, ``reference()`` (a context in which ``model`` is the frozen reference), ``save(folder)`` and
    ``load(folder)``; the trainable weights are those of ``model`` that require gradients."""

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(name, param) for name, param in self.model.named_parameters() if param.requires_grad]


class LoraPolicy(Policy):
    """SmolLM2 (or any local transformers causal LM) with a trainable LoRA adapter; prompts use the chat template."""

    kind = "lora"

    def __init__(self, config: RLConfig, model: str | None = None) -> None:
        from peft import get_peft_model

        self.name = model or DEFAULT_MODEL
        self.base_dir = resolve_model(self.name)
        base, self.tokenizer = load_base(self.base_dir)
        with quiet_peft_deprecation():
            self.model = get_peft_model(base, peft_lora_config(config))
        self.pad_id, self.eos_id = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id

    def prompt_ids(self, text: str) -> list[int]:
        return self.tokenizer(render_prompt(self.tokenizer, text), add_special_tokens=False)["input_ids"]

    def reply_text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def reference(self) -> contextlib.AbstractContextManager:
        """The base model: the adapter switched off for the duration."""
        return self.model.disable_adapter()

    def save(self, folder: Path) -> None:
        """The stock PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``)."""
        self.model.save_pretrained(folder)

    def load(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(folder / ADAPTER_FILE))

    def language_model(self) -> TorchModel:
        """The policy as an slmlab model (shares the weights), for :func:`slmlab.rl.evaluate.pass_at_1`."""
        # lazy: the torch backend loads torch and transformers; importing this module stays free of them
        from slmlab.backends.torch_backend import TorchModel

        return TorchModel(
            name=f"{self.name}+lora",
            path=self.base_dir,
            backend="torch",
            device="cpu",
            model=self.model,
            tokenizer=self.tokenizer,
            load_seconds=0.0,
        )


@dataclass(frozen=True)
class TinyPolicyConfig:
    """The from-scratch policy: a Llama of chapter 07's shape, a code tokenizer and the init scheme tried first."""

    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    context: int = 512
    vocab_size: int = 512
    init_scheme: str = "normal"
    init_std: float = 0.02
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


TASK_HEADER, CODE_HEADER = "# task: ", "\n# code:\n"


class TinyPolicy(Policy):
    """A small Llama trained from scratch; every weight is trainable and the initial weights are the reference.

    Its prompt is the task text as comment lines followed by a code header (it has no chat template); its reply is
    decoded from the code tokenizer, so INDENT/DEDENT tokens become indentation again.
    """

    kind = "tiny"

    def __init__(self, tasks: Sequence[CodeTask], config: TinyPolicyConfig = TinyPolicyConfig()) -> None:
        # lazy: the code tokenizer loads transformers; only the from-scratch policy needs it
        from slmlab.rl.codetext import train_code_tokenizer

        self.config = config
        self.name = "tiny-from-scratch"
        texts = [task.reference for task in tasks if task.reference] + [task.prompt for task in tasks]
        self.tokenizer = train_code_tokenizer(texts, vocab_size=config.vocab_size)
        self.tokenizer.padding_side = "left"
        self.model = self._build()
        initialize(self.model, config.init_scheme, std=config.init_std, seed=config.seed)
        probe = [self.prompt_ids(task.prompt) for task in tasks[:4]]
        shortest = min(len(ids) for ids in probe)
        self.init_report: InitReport = ensure_good_initialization(self.model, [ids[:shortest] for ids in probe], seed=config.seed)
        self.reference_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.pad_id, self.eos_id = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id

    def _build(self):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        config = self.config
        torch.manual_seed(config.seed)
        llama = LlamaConfig(
            vocab_size=len(self.tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            num_key_value_heads=config.heads,
            max_position_embeddings=config.context,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            tie_word_embeddings=True,
            **config.extra,
        )
        return LlamaForCausalLM(llama).float()

    def prompt_ids(self, text: str) -> list[int]:
        comment = "\n".join(TASK_HEADER + line for line in text.strip().splitlines())
        ids = self.tokenizer(comment + CODE_HEADER, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.bos_token_id, *ids]

    def reply_text(self, ids: Sequence[int]) -> str:
        # lazy: the code tokenizer's module loads transformers (see __init__)
        from slmlab.rl.codetext import decode_code

        return decode_code(self.tokenizer, ids)

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Forward passes inside go through the frozen initial weights."""
        live, self.model = self.model, self.reference_model
        try:
            yield
        finally:
            self.model = live

    def save(self, folder: Path) -> None:
        """A stock transformers folder (config, weights, tokenizer), loadable by ``slmlab.load_model``."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "policy.json").write_text(json.dumps({"kind": self.kind}), encoding="utf-8")

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(folder / TINY_WEIGHTS), strict=False)


def build_policy(config: RLConfig, tasks: Sequence[CodeTask], model: str | None = None):
    """``model`` "tiny" builds the from-scratch policy on ``tasks``; anything else is a LoRA policy on that model."""
    if model == "tiny":
        return TinyPolicy(tasks, TinyPolicyConfig(seed=config.seed))
    return LoraPolicy(config, model)
