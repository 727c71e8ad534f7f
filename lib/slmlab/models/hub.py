"""Fetch Hugging Face hub models, or fail in one sentence when the hub cannot be reached.

huggingface_hub retries a dead network for a long time; a short reachability probe first turns "no hub
here" into an immediate, clear error instead.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from slmlab.errors import ModelUnavailableError
from slmlab.models.registry import DEFAULT_MODEL

_PROBE_SECONDS = 3.0
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """True when a TCP connection to the hub endpoint opens within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)

    def connect() -> bool:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True

    # getaddrinfo has no timeout of its own, so the whole probe runs in a thread we stop waiting for.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def cached_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache copy of ``repo_id``, or None."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None
    return path if (path / "config.json").is_file() else None


def hub_model_dir(repo_id: str, name: str | None = None) -> Path:
    """A local folder for a hub model: from the cache, else downloaded; never a hang without a hub."""
    cached = cached_snapshot(repo_id)
    if cached is not None:
        return cached
    label = f"'{name}' ({repo_id})" if name and name != repo_id else f"'{repo_id}'"
    if not hub_reachable():
        raise ModelUnavailableError(
            f"Model {label} is not in the local Hugging Face cache and the hub at {hub_endpoint()} cannot be "
            f"reached; use the offline default '{DEFAULT_MODEL}' or pass a local model folder."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_WEIGHT_PATTERNS))
    except Exception as exc:  # gated, missing or misspelt repositories all land here
        raise ModelUnavailableError(f"Could not download model {label} from the hub: {exc}") from exc
