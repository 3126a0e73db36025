"""The C allocator's settings for a training process (glibc only).

A fit allocates and frees the same large arrays over and over (each user block's expert scores, the EASE
solves of an L2 search, each round's validation scores). glibc serves every block above its mmap threshold
(128 KB, moving up to 32 MB as blocks are freed) with a fresh ``mmap`` and gives it back on ``free``, so each
new array is paid for again in page faults; a virtual machine whose host reclaims freed pages pays far more.
Keeping arrays up to 32 MB on the heap, and freed heap memory in the process, took the fusion fit of a
fresh ``python -m recsys train`` on movielens-small-mm from 9.3-11.6 s (median 10.2 over eight runs) to
8.1-10.0 s (median 8.9 over ten), for ~7 % more peak memory (2.16 GB -> 2.30-2.36 GB). Setting any
``MALLOC_*`` variable turns off glibc's moving threshold altogether (that fit then took 14-16 s), so a
user's own setting is left alone rather than added to. Only the training command sets this: it is a process that ends, where a
long-lived one (the app, ``serve``) would keep its high-water mark.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["reuse_freed_memory"]

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (its dynamic threshold's ceiling on 64-bit)
TRIM_THRESHOLD = 2**31 - 1  # free heap memory kept before any is given back (mallopt takes an int)
TOP_PAD = 256 * 1024 * 1024  # the heap grows in steps this large

# the user's own glibc tuning wins
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def reuse_freed_memory() -> bool:
    """Keep large freed blocks in the process for the next array (see the module docstring). Returns whether
    the settings were applied: False off Linux, off glibc (musl has no such options), or when the environment
    sets any of ``USER_SETTINGS``."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: raises AttributeError elsewhere)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(option, value) == 1 for option, value in settings)
