"""Decoders of Ultralytics YOLO outputs, vectorised: no Python loop over candidates.

Layouts:
- ``ultralytics``: YOLOv5u / YOLOv8 / YOLO11 anchor-free head, one [B, 4+C, N] tensor: cx, cy, w, h in
  network-input pixels, then C class scores already sigmoid-ed; no objectness. A detection is the best
  class of a candidate above the threshold, then class-aware NMS (as Ultralytics' own
  ``non_max_suppression`` with one label per box).
- ``ultralytics-transposed``: the same values as [B, N, 4+C].
- ``end2end``: an NMS-free export (YOLOv10, YOLO26 ``end2end``, any ``nms=True`` export), [B, K, 6]: x1, y1,
  x2, y2 in network-input pixels, score, class id, already selected by the model: only the score
  threshold applies.

Same interface as ``YoloxDecoder``: ``decode(outputs)`` takes one batch item's outputs and returns
detections in network-input pixels, sorted by score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamd.errors import ModelLayoutError
from streamd.yolox.detections import Detections
from streamd.yolox.nms import class_aware_nms

ULTRALYTICS_LAYOUTS = ("ultralytics", "ultralytics-transposed")
END2END_LAYOUTS = ("end2end",)


class UltralyticsDecoder:
    """Anchor-free [4+C, N] (or [N, 4+C]) rows -> NMS-ed detections in network-input pixels."""

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_detections: int = 300) -> None:
        if layout not in ULTRALYTICS_LAYOUTS:
            raise ModelLayoutError(f"unknown layout '{layout}', expected one of {ULTRALYTICS_LAYOUTS}")
        self.layout = layout
        self.num_classes = num_classes
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = max_detections

    def decode(self, outputs: Sequence[np.ndarray]) -> Detections:
        output = outputs[0][0]
        if self.layout == "ultralytics":
            # [4+C, N]: the best class of every anchor is a reduction over contiguous rows (3x faster
            # than over the transposed view); only the candidates' columns are gathered after.
            scores = output[4:4 + self.num_classes].max(axis=0)
            candidate = np.flatnonzero(scores > self.score_threshold)
            if candidate.shape[0] == 0:
                return Detections.empty()
            rows = output[:, candidate].T
        else:
            scores = output[:, 4:4 + self.num_classes].max(axis=1)
            candidate = np.flatnonzero(scores > self.score_threshold)
            if candidate.shape[0] == 0:
                return Detections.empty()
            rows = output[candidate]
        class_ids = rows[:, 4:4 + self.num_classes].argmax(axis=1)
        scores = scores[candidate]
        centers, half_sizes = rows[:, 0:2], rows[:, 2:4] / 2
        boxes_xyxy = np.concatenate((centers - half_sizes, centers + half_sizes), axis=1).astype(np.float32)
        return class_aware_nms(boxes_xyxy, scores.astype(np.float32, copy=False), class_ids, self.nms_threshold,
                               self.max_detections)


class EndToEndDecoder:
    """[K, 6] rows (x1, y1, x2, y2, score, class) -> those above the threshold, by descending score."""

    layout = "end2end"

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_detections: int = 300) -> None:
        if layout not in END2END_LAYOUTS:
            raise ModelLayoutError(f"unknown layout '{layout}', expected one of {END2END_LAYOUTS}")
        self.num_classes = num_classes
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)  # not used: the model selected its boxes itself
        self.max_detections = max_detections

    def decode(self, outputs: Sequence[np.ndarray]) -> Detections:
        rows = outputs[0][0]
        keep = np.flatnonzero(rows[:, 4] > self.score_threshold)
        if keep.shape[0] == 0:
            return Detections.empty()
        rows = rows[keep]
        # A class id the configured names do not cover is dropped rather than published without a name;
        # compared as a float, so a NaN id is dropped on every platform (its int cast differs: x86, ARM).
        rows = rows[(rows[:, 5] >= 0) & (rows[:, 5] < self.num_classes)]
        order = np.argsort(-rows[:, 4], kind="stable")[:self.max_detections]
        rows = rows[order]
        return Detections(rows[:, 0:4].astype(np.float32), rows[:, 4].astype(np.float32),
                          rows[:, 5].astype(np.int32))
