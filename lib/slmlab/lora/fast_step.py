"""Chapter 03's fast LoRA step: the frozen layers below the adapter and the prompt prefix every row shares run once.

:class:`FrozenPrefixCache` holds, per row, the hidden states entering the first layer that carries LoRA (the layers
below have no trainable weight, so those states never change during training), and the chat template's system
turn, which every row starts with. Each step then runs only the LoRA layers: the shared prefix once per batch,
its key/value cache copied to every row, then the rest of the rows. Loss and gradients are those of the full
rows (tested against :func:`~slmlab.lora.training.completion_loss`). Written by hand: neither PEFT nor TRL caches
frozen layers or shares a prompt prefix across the rows of a training batch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from slmlab.backends.continuous import cache_keyword
from slmlab.trainloop import IGNORE_INDEX

Encoded = Sequence[tuple[list[int], list[int]]]  # (token ids, labels) per row


def shared_prefix(encoded: Encoded) -> list[int]:
    """The prompt tokens every row starts with, cut before any label; at least one token of every row stays out."""
    if not encoded:
        return []
    first_ids = encoded[0][0]
    length = min(len(ids) for ids, _ in encoded) - 1
    for ids, labels in encoded:
        answer_start = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
        length = min(length, answer_start - 1)
        while length > 0 and ids[:length] != first_ids[:length]:
            length -= 1
    return list(first_ids[: max(length, 0)])


def decoder_of(model):
    """The transformer stack (embeddings, layers, final norm) under a PEFT or plain causal LM."""
    network = model.get_base_model() if hasattr(model, "get_base_model") else model
    return network, network.get_decoder()


def first_trainable_layer(model) -> int:
    """Index of the lowest decoder layer with a trainable weight (the layer count when there is none)."""
    _, decoder = decoder_of(model)
    for index, layer in enumerate(decoder.layers):
        if any(p.requires_grad for p in layer.parameters()):
            return index
    return len(decoder.layers)


def supports_layer_slicing(model) -> bool:
    """Whether the decoder has the layout :func:`layer_slice` needs (``layers``, ``norm``, attention ``layer_idx``)."""
    _, decoder = decoder_of(model)
    layers = getattr(decoder, "layers", None)
    return (
        isinstance(layers, torch.nn.ModuleList)
        and isinstance(getattr(decoder, "norm", None), torch.nn.Module)
        and all(hasattr(getattr(layer, "self_attn", None), "layer_idx") for layer in layers)
    )


@contextmanager
def layer_slice(decoder, start: int, stop: int, final_norm: bool) -> Iterator[None]:
    """Run ``decoder`` as if it had only layers ``start:stop`` (renumbered from 0 for the cache), with or without
    its final norm; everything is put back on exit."""
    layers, norm, config_layers = decoder.layers, decoder.norm, decoder.config.num_hidden_layers
    kept = list(layers)[start:stop]
    numbers = [layer.self_attn.layer_idx for layer in kept]
    try:
        decoder.layers = torch.nn.ModuleList(kept)
        decoder.config.num_hidden_layers = len(kept)
        if not final_norm:
            decoder.norm = torch.nn.Identity()
        for new_index, layer in enumerate(kept):
            layer.self_attn.layer_idx = new_index
        yield
    finally:
        for layer, number in zip(kept, numbers):
            layer.self_attn.layer_idx = number
        decoder.layers, decoder.norm = layers, norm
        decoder.config.num_hidden_layers = config_layers


def _right_pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (length, width) tensors right-padded with zeros, and their attention mask."""
    width = max(len(row) for row in rows)
    stacked = rows[0].new_zeros((len(rows), width, *rows[0].shape[1:]))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        stacked[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return stacked, mask


class FrozenPrefixCache:
    """Rows of one split, each row's hidden states at the first LoRA layer computed the first time it is trained on.

    The shared prefix runs through the frozen layers once, at construction; a new row runs through them once (in
    the step that first uses it, so its cost is in the step's time), after the prefix's cached keys and values.
    """

    def __init__(self, model, encoded: Encoded) -> None:
        self.encoded = list(encoded)
        self.prefix = shared_prefix(self.encoded)
        self.boundary = first_trainable_layer(model)  # layers below it are frozen: their output never changes
        cut = len(self.prefix)
        self.row_labels = [labels[cut:] for _, labels in self.encoded]
        self.row_tokens = [len(ids) for ids, _ in self.encoded]
        self._hidden: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            self.prefix_hidden, self._bottom_cache = self._run_prefix(model)

    def _run_prefix(self, model):
        _, decoder = decoder_of(model)
        ids = torch.tensor([self.prefix], dtype=torch.long)
        if not self.prefix or self.boundary == 0:
            return decoder.get_input_embeddings()(ids)[0], None
        with layer_slice(decoder, 0, self.boundary, final_norm=False):
            out = decoder(input_ids=ids, use_cache=True)
        return out.last_hidden_state[0], _output_cache(out)

    def _fill(self, model, indices: Sequence[int]) -> None:
        """Run the frozen layers over the rows among ``indices`` not seen yet (no gradients)."""
        missing = [i for i in dict.fromkeys(indices) if i not in self._hidden]
        if not missing:
            return
        _, decoder = decoder_of(model)
        rest = [torch.tensor(self.encoded[i][0][len(self.prefix) :]) for i in missing]
        ids, mask = _right_pad(rest)
        with torch.no_grad():
            if self.boundary == 0:
                hidden = decoder.get_input_embeddings()(ids)
            else:
                with layer_slice(decoder, 0, self.boundary, final_norm=False):
                    cache = copy.deepcopy(self._bottom_cache)  # the stored one stays the prefix's alone
                    hidden = decoder(input_ids=ids, **_after_prefix(decoder, cache, mask)).last_hidden_state
        for row, index in enumerate(missing):
            self._hidden[index] = hidden[row, : len(rest[row])].clone()

    def batch_tokens(self, indices: Sequence[int]) -> int:
        """Real tokens of these full rows, shared prefix included (what a plain step would run)."""
        return sum(self.row_tokens[i] for i in indices)

    def answer_tokens(self, indices: Sequence[int]) -> int:
        """Tokens the loss averages over."""
        return sum(label != IGNORE_INDEX for i in indices for label in self.row_labels[i][1:])

    def loss(self, model, indices: Sequence[int]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens of rows ``indices``, running only the LoRA layers."""
        self._fill(model, indices)
        network, decoder = decoder_of(model)
        hidden, mask = _right_pad([self._hidden[i] for i in indices])
        labels = torch.full(mask.shape, IGNORE_INDEX, dtype=torch.long)
        for row, index in enumerate(indices):
            labels[row, : len(self.row_labels[index])] = torch.tensor(self.row_labels[index])
        with layer_slice(decoder, self.boundary, len(decoder.layers), final_norm=True):
            prefix_cache = None
            if len(self.prefix_hidden):  # the prefix through the LoRA layers, once, with gradients
                prefix_cache = _output_cache(decoder(inputs_embeds=self.prefix_hidden[None], use_cache=True))
            out = decoder(inputs_embeds=hidden, **_after_prefix(decoder, prefix_cache, mask))
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = network.get_output_embeddings()(out.last_hidden_state[:, :-1][keep])
        return F.cross_entropy(logits.float(), targets[keep])


def _output_cache(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def _after_prefix(decoder, prefix_cache, mask: torch.Tensor) -> dict:
    """Keyword arguments that run a batch after a one-row prefix: its cache (changed in place) repeated per row,
    the mask widened to cover it."""
    if prefix_cache is None:
        return {"attention_mask": mask}
    cache = prefix_cache
    cache.batch_repeat_interleave(mask.shape[0])
    width = cache.get_seq_length()
    mask = torch.cat([torch.ones(mask.shape[0], width, dtype=mask.dtype), mask], 1)
    return {"attention_mask": mask, cache_keyword(type(decoder)): cache, "use_cache": True}
