"""Decoder of RT-DETR outputs (Ultralytics exports), vectorised. RT-DETR selects its own detections: no NMS.

Layouts, boxes as centre and size normalised to the network input (0-1), scores already sigmoid-ed:
- ``rtdetr``: [B, K, 6] (cx, cy, w, h, score, class id): the current exporter's head keeps the K best
  (query, class) pairs, best first, so one query may appear with two classes (as in Ultralytics' own results).
- ``rtdetr-queries``: [B, K, 4+C] (cx, cy, w, h, C class scores): earlier exporters, one row per query; a
  detection is the query's best class.

As Ultralytics' ``RTDETRPredictor.postprocess``: scores above the threshold, best first, at most
``max_detections``. Same interface as ``YoloxDecoder``: ``decode(outputs)`` takes one batch item's outputs
and returns detections in network-input pixels (the RT-DETR preprocessing convention stretches the frame
over the input, so ``Letterbox.to_frame`` maps them back per side).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamd.errors import ModelLayoutError
from streamd.yolox.detections import Detections

RTDETR_LAYOUTS = ("rtdetr", "rtdetr-queries")


class RtDetrDecoder:
    """Normalised RT-DETR rows -> the detections above the threshold, best first, in network-input pixels."""

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_detections: int = 300) -> None:
        if layout not in RTDETR_LAYOUTS:
            raise ModelLayoutError(f"unknown layout '{layout}', expected one of {RTDETR_LAYOUTS}")
        self.layout = layout
        self.num_classes = num_classes
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)  # not used: the model selected its detections itself
        self.max_detections = max_detections
        self._size = np.array([input_width, input_height, input_width, input_height], np.float32)

    def decode(self, outputs: Sequence[np.ndarray]) -> Detections:
        rows = outputs[0][0]
        if self.layout == "rtdetr":
            scores = rows[:, 4]
            # A NaN class id fails both comparisons on every platform (its int cast differs: x86, ARM).
            keep = np.flatnonzero((scores > self.score_threshold) & (rows[:, 5] >= 0) & (rows[:, 5] < self.num_classes))
            class_ids = rows[keep, 5].astype(np.int32)
        else:
            class_scores = rows[:, 4:4 + self.num_classes]
            best = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(rows.shape[0]), best]
            keep = np.flatnonzero(scores > self.score_threshold)
            class_ids = best[keep].astype(np.int32)
        if keep.shape[0] == 0:
            return Detections.empty()
        # A class id the configured names do not cover is dropped rather than published without a name.
        named = (class_ids >= 0) & (class_ids < self.num_classes)
        keep, class_ids = keep[named], class_ids[named]
        order = np.argsort(-scores[keep], kind="stable")[:self.max_detections]
        keep, class_ids = keep[order], class_ids[order]
        centers, half_sizes = rows[keep, 0:2], rows[keep, 2:4] / 2
        boxes = np.concatenate((centers - half_sizes, centers + half_sizes), axis=1) * self._size
        return Detections(boxes.astype(np.float32, copy=False), scores[keep].astype(np.float32),
                          class_ids)
