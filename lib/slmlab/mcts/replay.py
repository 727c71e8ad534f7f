"""A replay buffer of self-play positions that lives on disk and survives restarts.

A buffer is a folder of four ``.npy`` arrays, memory-mapped, used as one ring:

- ``features.npy`` float32 [capacity, D], ``mask.npy`` bool [capacity, A],
- ``policy.npy`` float32 [capacity, A] (visit-count targets, 0 on illegal actions, rows sum to 1),
- ``value.npy`` float32 [capacity] (targets in [-1, 1]),

and ``header.json`` (format, version, capacity, feature_dim, num_actions, position, size, added). Rows are
written first and flushed, the header is rewritten atomically after every add, so a reopened buffer
continues exactly where the header says it stopped; a crash mid-add never makes the header count a row
that was not written. Once full, each new row overwrites the oldest. The arrays are plain ``.npy`` files,
so a notebook can also read them with ``np.load(..., mmap_mode="r")``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_json
from slmlab.mcts.macro import MACROS
from slmlab.mcts.spec import REPLAY_HEADER_FILE as HEADER

FORMAT = "slmlab.replay"
VERSION = 1
_ARRAYS = {  # name → (dtype, per-row shape given (D, A))
    "features": (np.float32, lambda d, a: (d,)),
    "mask": (np.bool_, lambda d, a: (a,)),
    "policy": (np.float32, lambda d, a: (a,)),
    "value": (np.float32, lambda d, a: ()),
}

PolicyLike = Mapping[Any, float] | Sequence[float] | np.ndarray
Step = tuple[Any, Sequence[bool], PolicyLike]  # (features, mask, policy target)


class ReplayBufferError(SlmLabError, ValueError):
    """A replay folder whose header or arrays are corrupt or do not match the buffer asked for."""


class ReplayBuffer:
    """A fixed-capacity ring of (features, mask, policy target, value target) rows on disk.

    ``ReplayBuffer(path, capacity, feature_dim)`` creates the folder, or reopens it when it holds a
    buffer with the same capacity, feature_dim and num_actions (anything else raises
    :class:`ReplayBufferError` naming the file and field). :meth:`open` reopens without knowing them.
    """

    def __init__(self, path: str | Path, capacity: int, feature_dim: int, num_actions: int = len(MACROS)) -> None:
        if capacity < 1 or feature_dim < 1 or num_actions < 1:
            raise ValueError(f"capacity, feature_dim and num_actions must be >= 1, got {capacity}, {feature_dim}, {num_actions}")
        self.path = Path(path)
        self.capacity, self.feature_dim, self.num_actions = int(capacity), int(feature_dim), int(num_actions)
        self.position = self.size = self.added = 0
        if (self.path / HEADER).exists():
            self._reopen()
        else:
            self._create()

    @classmethod
    def open(cls, path: str | Path) -> ReplayBuffer:
        """Reopen an existing buffer with the sizes its header records."""
        header = _read_header(Path(path) / HEADER)
        return cls(path, header["capacity"], header["feature_dim"], header["num_actions"])

    # --- files ----------------------------------------------------------------------------------
    def _shape(self, name: str) -> tuple[int, ...]:
        return (self.capacity, *_ARRAYS[name][1](self.feature_dim, self.num_actions))

    def _create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._arrays = {
            name: np.lib.format.open_memmap(self.path / f"{name}.npy", mode="w+", dtype=dtype, shape=self._shape(name))
            for name, (dtype, _) in _ARRAYS.items()
        }
        self._write_header()

    def _reopen(self) -> None:
        header_path = self.path / HEADER
        header = _read_header(header_path)
        for field in ("capacity", "feature_dim", "num_actions"):
            if header[field] != getattr(self, field):
                raise ReplayBufferError(
                    f"{header_path}: {field} is {header[field]} on disk but {getattr(self, field)} "
                    f"was asked for; pass {field}={header[field]} or use another folder"
                )
        if not (0 <= header["size"] <= self.capacity and 0 <= header["position"] < self.capacity):
            raise ReplayBufferError(
                f"{header_path}: position {header['position']} / size {header['size']} do not fit capacity {self.capacity}"
            )
        self.position, self.size, self.added = header["position"], header["size"], header["added"]
        self._arrays = {}
        for name, (dtype, _) in _ARRAYS.items():
            file = self.path / f"{name}.npy"
            try:
                array = np.lib.format.open_memmap(file, mode="r+")
            except (OSError, ValueError) as error:
                raise ReplayBufferError(f"{file}: cannot be opened as a .npy array ({error})") from error
            if array.shape != self._shape(name) or array.dtype != np.dtype(dtype):
                raise ReplayBufferError(
                    f"{file}: shape {array.shape} {array.dtype}, expected {self._shape(name)} {np.dtype(dtype)} (from {HEADER})"
                )
            self._arrays[name] = array

    def _write_header(self) -> None:
        for array in self._arrays.values():  # rows reach the disk before the header counts them
            array.flush()
        atomic_write_json(
            self.path / HEADER,
            {
                "format": FORMAT,
                "version": VERSION,
                "capacity": self.capacity,
                "feature_dim": self.feature_dim,
                "num_actions": self.num_actions,
                "position": self.position,
                "size": self.size,
                "added": self.added,
            },
        )

    # --- writing --------------------------------------------------------------------------------
    def add(self, features: Any, mask: Sequence[bool], policy_target: PolicyLike, value_target: float) -> None:
        """Append one position (overwriting the oldest when full). ``policy_target`` is a vector in action
        order or a dict keyed by :data:`MACROS` members; it is renormalised to sum to 1 and must put no
        mass on illegal actions."""
        self._put(*self._check(features, mask, policy_target, value_target))
        self._write_header()

    def add_episode(self, steps: Iterable[Step], value: float) -> int:
        """Append every (features, mask, policy) step of an episode with the episode's ``value`` as each
        step's value target (single-player: the player to move never changes). Returns the count added."""
        steps = list(steps)
        return self.add_batch([f for f, _, _ in steps], [m for _, m, _ in steps], [p for _, _, p in steps], [value] * len(steps))

    def add_batch(
        self,
        features: Sequence[Any],
        masks: Sequence[Sequence[bool]],
        policy_targets: Sequence[PolicyLike],
        value_targets: Sequence[float],
    ) -> int:
        """Append many rows with one header write; every row is checked before any is written."""
        if not len(features) == len(masks) == len(policy_targets) == len(value_targets):
            raise ValueError("add_batch needs as many masks, policy targets and value targets as feature rows")
        rows = [self._check(*row) for row in zip(features, masks, policy_targets, value_targets)]
        for row in rows:
            self._put(*row)
        self._write_header()
        return len(rows)

    def _check(self, features: Any, mask: Sequence[bool], policy: PolicyLike, value: float):
        features = np.asarray(features, dtype=np.float32)
        if features.shape != (self.feature_dim,):
            raise ValueError(f"features have shape {features.shape}, expected ({self.feature_dim},)")
        if not np.isfinite(features).all():
            raise ValueError("features contain NaN or infinity")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_actions,) or not mask.any():
            raise ValueError(f"mask must be {self.num_actions} flags with at least one legal action, got {mask.tolist()}")
        target = policy_vector(policy, self.num_actions)
        if (target < 0).any() or not np.isfinite(target).all() or target.sum() <= 0:
            raise ValueError(f"policy target must be non-negative with a positive sum, got {target.tolist()}")
        target = target / target.sum()
        if target[~mask].sum() > 1e-6:
            raise ValueError(f"policy target puts mass on illegal actions: {target.tolist()} with mask {mask.tolist()}")
        target[~mask] = 0.0
        if not -1.0 <= float(value) <= 1.0:
            raise ValueError(f"value target must lie in [-1, 1], got {value}")
        return features, mask, target, float(value)

    def _put(self, features: np.ndarray, mask: np.ndarray, policy: np.ndarray, value: float) -> None:
        i = self.position
        self._arrays["features"][i] = features
        self._arrays["mask"][i] = mask
        self._arrays["policy"][i] = policy
        self._arrays["value"][i] = value
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    # --- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    def indices(self) -> np.ndarray:
        """Row indices of the stored positions, oldest first."""
        start = self.position if self.size == self.capacity else 0
        return (start + np.arange(self.size)) % self.capacity

    def rows(self, index: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """Copies of the given rows as numpy arrays (keys: features, mask, policy, value)."""
        index = np.asarray(index, dtype=np.int64)
        return {name: np.array(array[index]) for name, array in self._arrays.items()}

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A uniform batch drawn with replacement: features [B, D] float32, mask [B, A] bool,
        policy [B, A] float32, value [B] float32."""
        if self.size == 0:
            raise ValueError(f"the replay buffer at {self.path} is empty; add self-play positions first")
        # rows 0..size-1 hold data whether or not the ring has wrapped, so any of them is a fair pick
        picked = rng.integers(0, self.size, size=batch_size)
        return {name: torch.from_numpy(array) for name, array in self.rows(picked).items()}

    def __repr__(self) -> str:
        return f"ReplayBuffer({str(self.path)!r}, size={self.size}/{self.capacity}, feature_dim={self.feature_dim})"


def policy_vector(policy: PolicyLike, num_actions: int = len(MACROS)) -> np.ndarray:
    """A policy as a float32 vector in action order; a dict is read by :data:`MACROS` (missing = 0)."""
    if isinstance(policy, Mapping):
        if num_actions != len(MACROS):
            raise ValueError("a dict policy needs the MACROS action space; pass a vector instead")
        unknown = set(policy) - set(MACROS)
        if unknown:
            raise ValueError(f"policy has keys that are not macro-actions: {sorted(map(str, unknown))}")
        return np.array([policy.get(action, 0.0) for action in MACROS], dtype=np.float32)
    vector = np.asarray(policy, dtype=np.float32).copy()
    if vector.shape != (num_actions,):
        raise ValueError(f"policy target has shape {vector.shape}, expected ({num_actions},)")
    return vector


def _read_header(path: Path) -> dict[str, Any]:
    """The header as a dict, or ReplayBufferError naming the file and what is wrong."""
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayBufferError(f"{path}: no replay buffer header here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReplayBufferError(f"{path}: corrupt replay buffer header ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ReplayBufferError(f"{path}: not a {FORMAT} header")
    if header.get("version") != VERSION:
        raise ReplayBufferError(f"{path}: version is {header.get('version')}, this slmlab reads version {VERSION}")
    for field in ("capacity", "feature_dim", "num_actions", "position", "size", "added"):
        if not isinstance(header.get(field), int) or isinstance(header.get(field), bool):
            raise ReplayBufferError(f"{path}: field {field!r} is missing or not an integer")
    return header
