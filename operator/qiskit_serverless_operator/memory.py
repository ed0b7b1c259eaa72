"""Keep the operator's resident memory close to what it uses (glibc only; no-ops elsewhere).

A burst of thousands of new jobs makes kopf hold thousands of parsed bodies for a moment;
once they are processed, CPython frees them, but glibc keeps the freed heap pages mapped,
so the RSS stays at the peak. Returning them (malloc_trim) every half minute, and fewer
malloc arenas for the few threads kopf uses, bring it back down. What stays is CPython's
own small-object heap: its 1 MiB arenas are returned only when empty, and the records that
live on (kopf's per-object memory, the queue's records) are scattered among the freed bodies
(measured in benchmarks/queue_burst.py; PYTHONMALLOC=malloc was tried and was no better).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def limit_arenas(count: int = 2) -> None:
    """Call before threads start: each thread's arena is another heap that never shrinks."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, count)


def release() -> None:
    """Give freed heap pages back to the operating system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
