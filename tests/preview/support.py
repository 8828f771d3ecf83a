"""Fakes for the preview tests: results shaped like the pipeline's, NV12 planes in host memory."""

from __future__ import annotations

import ctypes
import time
from types import SimpleNamespace

import numpy as np

from streamd.yolox.detections import Detections


def result(source_id: str, image: np.ndarray, boxes: list[tuple[float, float, float, float]] | None = None,
           class_ids: list[int] | None = None, index: int = 0, track_ids: list[int] | None = None,
           release_image: object | None = None) -> SimpleNamespace:
    """A DetectionResult look-alike: ``.frame`` (source_id, index, times, image, size) and ``.detections``."""
    boxes = boxes or []
    detections = Detections(np.asarray(boxes, np.float32).reshape(-1, 4),
                            np.linspace(0.9, 0.5, len(boxes)).astype(np.float32),
                            np.asarray(class_ids if class_ids is not None else [0] * len(boxes), np.int32))
    if track_ids is not None:
        detections = _Tracked(detections, np.asarray(track_ids))
    frame = SimpleNamespace(source_id=source_id, index=index, capture_time=time.time(),
                            capture_monotonic=time.monotonic(), image=image, width=image.shape[1],
                            height=image.shape[0], release_image=release_image)
    return SimpleNamespace(frame=frame, detections=detections)


class _Tracked:
    """Detections with ``track_ids``, as tracking adds them."""

    def __init__(self, detections: Detections, track_ids: np.ndarray) -> None:
        self.boxes_xyxy = detections.boxes_xyxy
        self.scores = detections.scores
        self.class_ids = detections.class_ids
        self.track_ids = track_ids

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def host_copy_2d(dst: np.ndarray, src_ptr: int, src_pitch: int, row_bytes: int, rows: int) -> None:
    """cudaMemcpy2D's contract between host addresses: ``rows`` rows of ``row_bytes``, source rows
    ``src_pitch`` apart, into a contiguous ``dst``."""
    assert dst.flags.c_contiguous and dst.nbytes == rows * row_bytes
    for row in range(rows):
        ctypes.memmove(dst.ctypes.data + row * row_bytes, src_ptr + row * src_pitch, row_bytes)
