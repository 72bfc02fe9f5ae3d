"""Peak memory of a measurement: process peak RSS on Linux, CUDA peak allocation on a GPU.

On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the process's high-water mark
(``VmHWM`` in ``/proc/self/status``), so the peak can be read per measurement instead of per
process lifetime. Where that reset is refused, the peak reported is the process-lifetime one and
the result says so (``peak_reset: false``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MiB = 1024 * 1024


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss() -> int | None:
    """Resident set size of this process in bytes (None where /proc is unavailable)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss() -> int | None:
    """High-water mark of the resident set size in bytes, since start or since the last :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    except (ImportError, OSError):
        return None


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS; False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@dataclass
class MemoryStats:
    """Peak memory while a callable ran: host RSS (process) and, on CUDA, the peak allocated bytes."""

    peak_rss_bytes: int | None  # process high-water mark during the measurement
    rss_before_bytes: int | None  # RSS just before it (weights, runtimes, other models already loaded)
    peak_reset: bool  # False: peak_rss_bytes is the process-lifetime peak
    cuda_peak_bytes: int | None = None

    @property
    def peak_rss_delta_bytes(self) -> int | None:
        """What the measurement itself added on top of what was resident before it (activations, workspaces)."""
        if self.peak_rss_bytes is None or self.rss_before_bytes is None:
            return None
        return max(0, self.peak_rss_bytes - self.rss_before_bytes)

    def to_dict(self) -> dict[str, Any]:
        def mib(v: int | None) -> float | None:
            return None if v is None else round(v / MiB, 2)

        return {
            "peak_rss_mib": mib(self.peak_rss_bytes),
            "rss_before_mib": mib(self.rss_before_bytes),
            "peak_rss_delta_mib": mib(self.peak_rss_delta_bytes),
            "peak_reset": self.peak_reset,
            "cuda_peak_mib": mib(self.cuda_peak_bytes),
        }


def measure_memory(fn: Callable[[], Any], calls: int = 3, cuda: bool = False) -> MemoryStats:
    """Run ``fn`` ``calls`` times and report the peak memory it reached."""
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = current_rss()
    reset = reset_peak_rss()
    for _ in range(max(1, calls)):
        fn()
    return MemoryStats(peak_rss(), before, reset, _cuda_peak() if cuda else None)


def _cuda_peak() -> int:
    import torch

    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())
