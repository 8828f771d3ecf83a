"""A captured frame and where it came from."""

from __future__ import annotations

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

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])
