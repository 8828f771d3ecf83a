"""Class-aware non-maximum suppression (OpenCV's batched NMS)."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.decode.detections import Detections


def class_aware_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    iou_threshold: float, max_detections: int = 300) -> Detections:
    """Keep the best box of each overlapping group within a class; sorted by score, descending."""
    if scores.shape[0] == 0:
        return Detections.empty()
    boxes_xywh = boxes_xyxy.astype(np.float64, copy=True)
    boxes_xywh[:, 2:] -= boxes_xywh[:, :2]
    # score_threshold=0: candidates were already filtered by the caller.
    keep = cv2.dnn.NMSBoxesBatched(boxes_xywh, scores.astype(np.float64), class_ids.astype(np.int32),
                                   0.0, float(iou_threshold), top_k=max_detections)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    return Detections(boxes_xyxy[keep].astype(np.float32), scores[keep].astype(np.float32),
                      class_ids[keep].astype(np.int32))
