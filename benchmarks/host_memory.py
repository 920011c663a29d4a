"""How the C allocator treats the large blocks a training step frees.

By default glibc serves every request over 32 MiB with a fresh ``mmap`` and unmaps it on
``free``, so a training step whose activations are such blocks (NG-T's ``(B, n, n, 128)``
attention tensors are 64 MiB at batch 128) page-faults through all of them again on every
step: on a 2-core CPU two thirds of NG-T's paper step were kernel time. :func:`keep_freed_memory`
makes glibc take every block from its heap and never shrink it, so a step reuses the last
step's memory. A heap that is never shrunk fragments: blocks of new sizes (validation's, the
next model's) need not fit the holes the last ones left, and one process that benchmarked
every paper profile in turn ran out of 24 GiB. :func:`release_freed_memory` therefore hands
the free pages back to the system (``malloc_trim``) wherever the sizes change: the training
loop calls it after each epoch's steps, before validation, and the runner after each run.
Both do nothing where the C library is not glibc. Neither changes a result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
NEVER = 2**31 - 1  # mallopt takes an int


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library if it is glibc (the one with ``mallopt`` and ``malloc_trim``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    glibc = all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim"))
    return libc if glibc else None


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and keep freed blocks for reuse (no ``mmap`` per
    large block, no trimming). Returns whether the setting applies (glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER))


def release_freed_memory() -> None:
    """Return the heap's free pages to the system, bounding what fragmentation can hold."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def apply_setting(system_default: bool) -> tuple[bool, str]:
    """For a benchmark: the harness's setting (:func:`keep_freed_memory`) unless
    ``system_default``; returns whether it is in effect and what is, in words."""
    if not system_default and keep_freed_memory():
        return True, "freed blocks kept (the harness's setting)"
    return False, "glibc defaults" if _glibc() else "the C library's defaults"
