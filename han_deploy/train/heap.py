"""Keep freed tensor memory in the process for reuse while training on a CPU (glibc's malloc only).

glibc serves every allocation above its mmap threshold (which never grows past 32 MiB on 64-bit) with a
fresh ``mmap`` and gives it back with ``munmap`` on free. A CPU training step at batch 32 allocates
activations larger than that (HAN-small's first level: 32 x 128 x 80 x 32 float32 = 40 MiB), so every
step faults those pages in again and the kernel zeroes them. With mmap off for the heap and a high trim
threshold, freed blocks stay in the process and the next step reuses them (docs/training.md, "Speed").
The numerics are unchanged; the resident memory stays at least at its peak (fragmentation can add to
it). The settings are process-wide and act on the main thread's arena, where CPU autograd allocates;
other threads' arenas still map requests above 64 MiB and release whole heaps.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_MAX = -4
KEEP_UP_TO = 2**31 - 1  # trim threshold: return the heap's top to the kernel only past 2 GiB free (mallopt takes an int)


def _glibc_malloc() -> ctypes.CDLL | None:
    """glibc, when it is the libc and its malloc is the one the process uses (not jemalloc/tcmalloc preloaded)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        process, libc = ctypes.CDLL(None), ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # musl and others
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    used = ctypes.cast(process.malloc, ctypes.c_void_p).value
    return libc if used == ctypes.cast(libc.malloc, ctypes.c_void_p).value else None


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of unmapping it; False where it is not in charge."""
    libc = _glibc_malloc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO) == 1
    if not applied:
        log.warning("mallopt refused a heap setting: freed tensor memory may still go back to the kernel")
    return applied
