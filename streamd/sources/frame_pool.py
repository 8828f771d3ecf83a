"""Reusable frame buffers for one source, for detectors that want frames in special memory.

The GPU detector uploads from page-locked (pinned) host memory without an extra host copy; a
capture thread that copies each decoded image into a pooled pinned buffer takes that copy off the
pipeline's path (it runs beside inference, on the capture thread). A buffer goes back to the pool
when its frame is released: superseded in the slot, dropped as too old, or published (the GPU
detector has finished uploading a frame before it returns its result). If every buffer is out, the
frame simply stays in ordinary memory: never an overwrite, never a wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from streamd.frame import Allocator

log = logging.getLogger(__name__)

# Slot + frames in flight in the detector + one being filled, with room to spare.
DEFAULT_MAX_BUFFERS = 8


class FramePool:
    def __init__(self, allocate: Allocator, max_buffers: int = DEFAULT_MAX_BUFFERS) -> None:
        self._allocate = allocate
        self._max_buffers = max_buffers
        self._lock = threading.Lock()
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._owned: list[Callable[[], None]] = []
        self._closed = False
        self._warned = False
        self.leased = 0  # buffers currently out

    def lease_copy(self, image: np.ndarray) -> tuple[np.ndarray, Callable[[], None] | None]:
        """``image`` copied into a pooled buffer, and the callable that returns the buffer.

        (image, None) when the pool is exhausted or closed: the frame keeps its own memory.
        """
        key = (image.shape, image.dtype.str)
        with self._lock:
            if self._closed:
                return image, None
            free = self._free.setdefault(key, [])
            if free:
                buffer = free.pop()
            elif len(self._owned) < self._max_buffers:
                buffer, release_memory = self._allocate(image.shape, image.dtype)
                self._owned.append(release_memory)
            else:
                if not self._warned:
                    log.warning("frame pool exhausted (%d buffers out): frames stay in ordinary memory",
                                self.leased)
                    self._warned = True
                return image, None
            self.leased += 1
        np.copyto(buffer, image)
        returned = threading.Event()

        def release() -> None:
            with self._lock:
                if returned.is_set():
                    return
                returned.set()
                self.leased -= 1
                if not self._closed:
                    self._free[key].append(buffer)

        return buffer, release

    def close(self) -> None:
        """Free every buffer. Call once nothing can read frames any more (detector closed)."""
        with self._lock:
            self._closed = True
            owned, self._owned = self._owned, []
            self._free.clear()
        for release_memory in owned:
            release_memory()
