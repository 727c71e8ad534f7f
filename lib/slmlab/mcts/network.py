"""The policy-value network of chapter 06: features of a macro state in, move priors and a value out.

:class:`PolicyValueNet` is a small MLP (input LayerNorm, shared body, a policy head over the macro-actions
in :data:`~slmlab.mcts.macro.MACROS` order and a tanh value head in [-1, 1]). :class:`NetworkEvaluator`
plugs it into the search as an :class:`~slmlab.mcts.core.Evaluator`; how a state becomes a feature vector
is injected (``featurize``), so this module knows nothing about language models.

File format (:func:`save_network` / :func:`load_network`): one ``torch.save`` file holding
``{"format", "version", "config", "state_dict"}``; ``config`` holds the constructor arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slmlab.io import atomic_write
from slmlab.mcts.core import Action, Environment, Policy
from slmlab.mcts.macro import MACROS
from slmlab.mcts.spec import HIDDEN

FORMAT = "slmlab.policy_value_net"
VERSION = 1

Featurize = Callable[[Environment], tuple[np.ndarray, Sequence[bool]]]


@dataclass(frozen=True)
class NetworkConfig:
    """The constructor arguments of :class:`PolicyValueNet`, saved with its weights."""

    feature_dim: int
    hidden: int = HIDDEN
    layers: int = 2
    num_actions: int = len(MACROS)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "feature_dim": self.feature_dim >= 1,
            "hidden": self.hidden >= 1,
            "layers": self.layers >= 1,
            "num_actions": self.num_actions >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"PolicyValueNet {name} is out of range: {getattr(self, name)!r}")


class PolicyValueNet(nn.Module):
    """Shared MLP body with a policy head (logits, one per action) and a value head (tanh, in [-1, 1])."""

    def __init__(
        self,
        feature_dim: int,
        hidden: int = NetworkConfig.hidden,
        layers: int = NetworkConfig.layers,
        num_actions: int = NetworkConfig.num_actions,
        dropout: float = NetworkConfig.dropout,
    ) -> None:
        super().__init__()
        self.config = NetworkConfig(int(feature_dim), int(hidden), int(layers), int(num_actions), float(dropout))
        # LayerNorm first: a mean-pooled LM hidden state has a scale far from the scalar features beside it
        body: list[nn.Module] = [nn.LayerNorm(feature_dim)]
        width = feature_dim
        for _ in range(layers):
            body += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*body)
        self.policy_head = nn.Linear(hidden, num_actions)
        self.value_head = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` [B, D] (or [D]) → policy logits [B, A] and values [B] in [-1, 1]."""
        h = self.body(features)
        return self.policy_head(h), torch.tanh(self.value_head(h)).squeeze(-1)


def _mask_tensor(mask: torch.Tensor | Sequence[bool] | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    mask = torch.as_tensor(np.asarray(mask, dtype=bool) if not isinstance(mask, torch.Tensor) else mask)
    mask = mask.to(device=like.device, dtype=torch.bool)
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the logits' {tuple(like.shape)}")
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("every row of the mask needs at least one legal action; got an all-illegal row")
    return mask


def masked_log_policy(logits: torch.Tensor, mask: torch.Tensor | Sequence[bool] | np.ndarray) -> torch.Tensor:
    """Log-probabilities over the legal actions; illegal entries are 0 (not -inf) so that a zero target
    times them stays 0 instead of NaN. Raises ValueError for a row with no legal action."""
    mask = _mask_tensor(mask, logits)
    log_probs = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.where(mask, log_probs, torch.zeros_like(log_probs))


def masked_policy(logits: torch.Tensor, mask: torch.Tensor | Sequence[bool] | np.ndarray) -> torch.Tensor:
    """Softmax over the legal actions only: illegal actions get probability exactly 0, each row sums to 1.
    Works on one row [A] or a batch [B, A]. Raises ValueError for a row with no legal action."""
    mask = _mask_tensor(mask, logits)
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


class NetworkEvaluator:
    """An :class:`~slmlab.mcts.core.Evaluator` backed by a :class:`PolicyValueNet`.

    ``featurize(state)`` returns the feature vector and the legality mask (in ``actions`` order, by default
    :data:`MACROS`); the mask must agree with ``state.legal_actions()`` — a disagreement is a featurizer
    bug and raises ValueError rather than silently searching illegal moves.
    """

    def __init__(
        self, net: PolicyValueNet, featurize: Featurize, device: str | torch.device = "cpu", actions: Sequence[Action] = MACROS
    ) -> None:
        if len(actions) != net.config.num_actions:
            raise ValueError(f"{len(actions)} actions given but the network has {net.config.num_actions} outputs")
        self.net = net.to(device)
        self.featurize = featurize
        self.device = torch.device(device)
        self.actions = tuple(actions)

    def evaluate(self, state: Environment) -> tuple[Policy, float]:
        """Priors over ``state.legal_actions()`` (summing to 1) and the value for the player to move."""
        features, mask = self.featurize(state)
        features = np.asarray(features, dtype=np.float32)
        if features.shape != (self.net.config.feature_dim,):
            raise ValueError(f"featurize returned shape {features.shape}; the network expects ({self.net.config.feature_dim},)")
        legal = list(state.legal_actions())
        masked = [a for a, ok in zip(self.actions, mask) if ok]
        if len(mask) != len(self.actions) or set(masked) != set(legal):
            raise ValueError(f"featurize's mask {tuple(bool(m) for m in mask)} disagrees with the legal actions {legal}")
        x = torch.from_numpy(features).to(self.device).unsqueeze(0)
        was_training = self.net.training
        self.net.eval()  # no dropout while searching; the caller's mode is restored below
        try:
            with torch.inference_mode():
                logits, value = self.net(x)
                probs = masked_policy(logits[0], mask).cpu().numpy()
        finally:
            self.net.train(was_training)
        index = {action: i for i, action in enumerate(self.actions)}
        return {action: float(probs[index[action]]) for action in legal}, float(value[0])


def save_network(net: PolicyValueNet, path: str | Path) -> Path:
    """Write the network's config and weights to ``path`` atomically (temp file + rename)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_network(path: str | Path, device: str | torch.device = "cpu") -> PolicyValueNet:
    """The network saved by :func:`save_network`, rebuilt from its config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved network at {path}")
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors vary by torch version; the message says what to fix
        raise ValueError(f"{path} is not a readable network file ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has format version {payload.get('version')}; this slmlab reads version {VERSION}")
    net = PolicyValueNet(**payload["config"])
    net.load_state_dict(payload["state_dict"])
    return net.to(device)
