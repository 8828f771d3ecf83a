"""A captured frame and where it came from, and the allocator type of frame buffers.

Neutral ground: capture (``streamd.sources``) makes frames, detectors (``streamd.inference``,
``streamd.gpu``) read them and say in which memory they want them, the daemon passes them along;
none of them imports another's stage for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    source_id: str
    index: int  # per source, counts every frame the source delivered, dropped ones included
    capture_time: float  # time.time() at capture, for messages
    capture_monotonic: float  # time.monotonic() at capture, for ages and latencies
    image: np.ndarray  # HxWx3 uint8 BGR, owned by this frame (the capture thread never reuses it)
    ground_truth: object | None = None  # synthetic sources attach their true boxes here
    # Gives a pooled image buffer back (streamd.sources.frame_pool); idempotent. None: nothing to do.
    release_image: Callable[[], None] | None = None

    def release(self) -> None:
        """Call when nothing will read ``image`` again (dropped, or its result published)."""
        if self.release_image is not None:
            self.release_image()

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


# (shape, dtype) -> (array, free): a detector's buffers for frames (pinned host memory for the GPU
# detector); ``free`` gives the memory back for good. streamd.sources.frame_pool leases them per frame.
Allocator = Callable[[tuple[int, ...], np.dtype], tuple[np.ndarray, Callable[[], None]]]
