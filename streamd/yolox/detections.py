"""The result type of decoding: boxes, scores and class ids of one frame, as parallel arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    boxes_xyxy: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int32
    # Filled by the tracker (streamd.tracking) before publishing, None without tracking: (K,) int64
    # track ids (-1: the detection belongs to no confirmed track) and source frames since each
    # track's first detection.
    track_ids: np.ndarray | None = None
    track_ages_frames: np.ndarray | None = None

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                          np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])
