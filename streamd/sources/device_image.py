"""A decoded picture that stays in GPU memory (NVDEC): what a Frame carries instead of a host array.

Nothing here touches CUDA: the reader that made the surface owns its memory and gives it back
through ``release`` (idempotent), which the capture wires into ``Frame.release`` exactly like a
pooled host buffer. ``shape`` is the picture's logical ``(height, width, 3)`` BGR shape, so code
that only asks a frame its size (``Frame.width``/``height``, metrics, messages) works unchanged;
code that needs pixels checks ``isinstance(image, DeviceNV12)`` and reads the planes on the GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

NV12 = "nv12"


class DeviceNV12:
    """An NV12 picture in device memory: luma plane then interleaved UV plane (U first), each with a pitch."""

    format = NV12
    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, luma_ptr: int, chroma_ptr: int, width: int, height: int, pitch: int, chroma_pitch: int,
                 device: int = 0, release: Callable[[], None] | None = None) -> None:
        self.luma_ptr = int(luma_ptr)
        self.chroma_ptr = int(chroma_ptr)
        self.width = int(width)
        self.height = int(height)
        self.pitch = int(pitch)
        self.chroma_pitch = int(chroma_pitch)
        self.device = device
        self._release = release
        self._lock = threading.Lock()
        self.released = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def nbytes(self) -> int:
        """Device bytes of the two planes."""
        return self.pitch * self.height + self.chroma_pitch * ((self.height + 1) // 2)

    def release(self) -> None:
        """Give the surface back to its reader's pool; safe to call twice and from any thread."""
        with self._lock:
            if self.released:
                return
            self.released = True
        if self._release is not None:
            self._release()

    def __repr__(self) -> str:
        return f"DeviceNV12({self.width}x{self.height}, luma={self.luma_ptr:#x}, device={self.device})"


def discard_undelivered(image: object) -> None:
    """An image read but never put in a frame (the source stopped in between): a device surface goes
    back to its pool now, or its reader's pool would free it never (one 1080p NV12 surface, 3 MB, per
    stopped source; seen as the GPU soak's creep); host arrays need nothing."""
    if isinstance(image, DeviceNV12):
        image.release()
