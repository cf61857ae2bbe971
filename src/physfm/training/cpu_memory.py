"""Keeping freed CPU memory in the process, so that a training step does not page-fault its activations in again.

PyTorch's CPU allocator hands every tensor to ``malloc``. glibc's ``malloc`` serves a block above its mmap
threshold with a fresh ``mmap`` and unmaps it on ``free``, and it returns the top of its heap to the OS whenever
more than its trim threshold lies free there. A training step allocates and frees the same activations step
after step, so by default the kernel maps and zeroes their pages again every step: on the 2-core development
machine, 11-18 thousand page faults and 25-45 ms of system time in a 450 ms tokeniser step
(``scripts/benchmark_tokeniser.py`` measures it with ``--malloc system``). Raising both thresholds keeps freed
blocks for reuse instead. GPU memory is unaffected: PyTorch caches it itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# glibc's ceiling for the mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2): blocks above it are still mapped.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (absent from musl and other C libraries, whose mallopt differs)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Makes glibc reuse freed blocks up to 32 MiB and keep up to 1 GiB free at the top of its heap.

    Process-wide and lasting: a process that trains does the same step many times, so its memory stays at
    the peak of one step. Returns ``False`` (and changes nothing) where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


__all__ = ["keep_freed_memory"]
