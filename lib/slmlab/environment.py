"""What this machine is: versions, device, memory. Chapter 00 shows it; bug reports should include it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import threading

_PACKAGES = (
    "slmlab", "torch", "transformers", "tokenizers", "peft", "accelerate", "gguf", "mlx", "mlx-lm",
    "papermill", "nbval", "jupyterlab", "ipywidgets", "pandas", "matplotlib",
)


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed version of each distribution, or 'not installed'."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def memory_gib() -> tuple[float, float]:
    """Total and available RAM in GiB."""
    import psutil

    memory = psutil.virtual_memory()
    return memory.total / 2**30, memory.available / 2**30


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def rss_mb() -> float:
    """Current resident set size of this process, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class RssSampler:
    """A ``with`` block's peak RSS: a background thread samples this process every ``interval`` seconds
    (``ru_maxrss`` only knows the peak of the whole process, so it cannot tell one measurement from another).
    The same sampler may be entered again: ``peak`` is then the highest over all its blocks."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.start_mb = self.peak = rss_mb()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> RssSampler:
        self.peak = max(self.peak, rss_mb())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def environment_report() -> dict[str, object]:
    """A flat dict of facts about the machine, for a table."""
    import torch

    from slmlab.backends import available_backends, select_backend, torch_device

    total, available = memory_gib()
    report: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "RAM total (GiB)": round(total, 1),
        "RAM available (GiB)": round(available, 1),
        "CUDA": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no",
        "MPS": "yes" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "no",
        "backends available": ", ".join(available_backends()),
        "default backend": select_backend("auto"),
        "torch device": torch_device(),
    }
    report.update({f"{name} version": version for name, version in package_versions().items()})
    return report
