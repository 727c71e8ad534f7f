"""What this machine is: versions, device, memory. Chapter 00 shows it; bug reports should include it."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from slmlab.backends import available_backends, select_backend, torch_device
from slmlab.io import atomic_write_json, created_now

_PACKAGES = (
    "slmlab",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "gguf",
    "mlx",
    "mlx-lm",
    "papermill",
    "nbval",
    "jupyterlab",
    "ipywidgets",
    "pandas",
    "matplotlib",
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


def tree_rss_mb() -> float:
    """Resident set size of this process and all its descendants (a notebook's kernel, say), in MiB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that ended between the listing and the reading
            total += child.memory_info().rss
    return total / 2**20


class RssSampler:
    """A ``with`` block's peak RSS: a background thread samples ``measure`` (this process by default, or
    :func:`tree_rss_mb`) every ``interval`` seconds (``ru_maxrss`` only knows the peak of the whole process, so it
    cannot tell one measurement from another). The same sampler may be entered again: ``peak`` is then the
    highest over all its blocks."""

    def __init__(self, interval: float = 0.05, measure: Callable[[], float] = rss_mb) -> None:
        self.interval, self.measure = interval, measure
        self.start_mb = self.peak = measure()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.measure())

    def __enter__(self) -> RssSampler:
        self.peak = max(self.peak, self.measure())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())


RAPL_DIR = Path("/sys/class/powercap/intel-rapl:0")  # the CPU package's energy counter on Linux, when readable


class EnergyMeter:
    """A ``with`` block's energy in joules: the CPU package's RAPL counter where it is readable (wrap-around
    handled), else codecarbon's offline tracker's estimate (the machine's CPU load × its power, plus RAM), else
    ``None``; ``source`` says which, or why neither (VMs, macOS without RAPL, no permission, codecarbon missing)."""

    def __init__(self, folder: Path = RAPL_DIR, estimate: bool = True) -> None:
        self.folder, self.estimate = folder, estimate
        self.joules: float | None = None
        self.source = "unavailable"
        self._tracker = None

    def _read(self, name: str) -> int | None:
        try:
            return int((self.folder / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def __enter__(self) -> EnergyMeter:
        self._start = self._read("energy_uj")
        self._tracker = start_energy_estimate() if self._start is None and self.estimate else None
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read("energy_uj")
        if self._start is not None and end is not None:
            span = end - self._start
            if span < 0:  # the counter wrapped around
                span += self._read("max_energy_range_uj") or 0
            self.joules, self.source = span / 1e6, f"RAPL {self.folder.name}"
            return
        unreadable = f"{self.folder / 'energy_uj'} is not readable here"
        self.joules, self.source = stop_energy_estimate(self._tracker) if self._tracker is not None else (None, "")
        self.source = f"{self.source} ({unreadable})" if self.joules is not None else f"unavailable: {unreadable}"


def start_energy_estimate():
    """codecarbon's offline tracker, started for the whole machine (the notebook's kernel is another process);
    None when codecarbon is not installed or cannot start here."""
    import logging

    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError:
        return None
    logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it logs its set-up at INFO on every start
    try:
        tracker = OfflineEmissionsTracker(
            country_iso_code=ENERGY_COUNTRY,
            tracking_mode="machine",
            save_to_file=False,
            measure_power_secs=ENERGY_INTERVAL_S,
            log_level="error",
        )
        tracker.start()
    except Exception:  # an estimate is optional: any failure of the tracker means "no estimate"
        return None
    return tracker


def stop_energy_estimate(tracker) -> tuple[float | None, str]:
    """The tracker's energy in joules and a line naming the method, or (None, why)."""
    try:
        tracker.stop()
        data = tracker.final_emissions_data
        joules = float(data.energy_consumed) * 3.6e6  # kWh → J
    except Exception as error:  # the same: a failed estimate is reported, never raised
        return None, f"codecarbon failed: {error}"
    return joules, (
        f"codecarbon estimate: CPU {float(data.cpu_energy) * 3.6e6:.0f} J (load × its power model) + RAM "
        f"{float(data.ram_energy) * 3.6e6:.0f} J"
    )


ENERGY_COUNTRY = "USA"  # codecarbon needs a grid for its CO2 figure; only the energy is kept, which does not depend on it
ENERGY_INTERVAL_S = 5


def environment_report() -> dict[str, object]:
    """A flat dict of facts about the machine, for a table."""
    import torch

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


def save_environment(path: str | Path, model_summary: dict | None = None) -> Path:
    """Write :func:`environment_report` and the loaded model's summary to ``path`` (JSON), for the report."""
    created = created_now()
    return atomic_write_json(path, {"created": created, "environment": environment_report(), "model": model_summary or {}})
