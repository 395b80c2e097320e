"""Giving memory back to the system once big work is done.

A long-lived process (the web app) that scores a long text, reads a large upload or trains
keeps what it freed: glibc's malloc holds freed pages in its pools (one pool per thread that
allocated, and a growing threshold under which big blocks come from the pools rather than
from mmap), and Python's cyclic garbage waits for a collection. tune_malloc, called once
at start, caps the pools and fixes the threshold, so big temporary buffers go straight back
to the system when freed; release_memory, called after a big job, collects the garbage and
trims the pools. Elsewhere than on glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys

import torch

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers in glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS = 2  # pools for all threads together: each generation and view runs in a thread of its own
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks this large or larger are mapped on their own and unmapped when freed
TRIM_THRESHOLD_BYTES = 8 << 20  # free memory at the top of a pool beyond this goes back at once


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD_BYTES,
                trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Cap glibc's pools and fix its mmap and trim thresholds, before the threads that work start;
    whether it could (False where there is no glibc)."""
    libc = _libc()
    if libc is None:
        return False
    settings = ((M_ARENA_MAX, arenas), (M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)


def release_memory() -> None:
    """After a big job: collect Python's garbage, empty torch's GPU cache, and hand the pools' free pages back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def resident_mb() -> float:
    """This process's resident memory (VmRSS) in MB, or NaN where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1000
    except OSError:
        pass
    return float("nan")
