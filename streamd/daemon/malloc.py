"""glibc's allocator, tuned for a long-running daemon whose threads come and go (sources added and
removed, RTSP readers abandoned and replaced, ONNX Runtime sessions swapped on a reload).

With glibc's default arenas (up to 8 per core) such churn lets RSS creep for the best part of an hour;
with two it levels off within minutes (``tools/soak.py``, docs/results.md). A no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def limit_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Before the daemon starts its threads; MALLOC_ARENA_MAX in the environment wins."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is not None and not mallopt(_M_ARENA_MAX, arenas):
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)


def return_freed_memory() -> None:
    """Give what glibc holds free back to the system (after a reload closed a session and sources), so
    RSS after many reloads stays near where it started rather than keeping the peak."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)
