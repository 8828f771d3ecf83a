"""Class-aware non-maximum suppression (OpenCV's batched NMS)."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.yolox.detections import Detections


def class_aware_nms_indices(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                            iou_threshold: float, max_detections: int = 300) -> np.ndarray:
    """Indices of the boxes class-aware NMS keeps, by descending score (at least one candidate)."""
    boxes_xywh = boxes_xyxy.astype(np.float64, copy=True)
    boxes_xywh[:, 2:] -= boxes_xywh[:, :2]
    # score_threshold=0: candidates were already filtered by the caller. Python lists, not arrays: the
    # binding converts a few dozen list items to its vectors faster than it takes the arrays (the values
    # are the same doubles, floats and ints either way).
    # (class ids may come as floats: the GPU path's record columns.) top_k=0: OpenCV's top_k keeps only the
    # top_k best candidates *before* suppression, so a frame with more candidates than max_detections lost
    # boxes that survive it; the kept list is cut to max_detections below instead.
    keep = cv2.dnn.NMSBoxesBatched(boxes_xywh.tolist(), scores.tolist(), class_ids.astype(np.int32).tolist(), 0.0,
                                   float(iou_threshold), top_k=0)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[(-scores[keep]).argsort(kind="stable")][:max_detections]


def class_aware_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    iou_threshold: float, max_detections: int = 300) -> Detections:
    """Keep the best box of each overlapping group within a class; sorted by score, descending."""
    if scores.shape[0] == 0:
        return Detections.empty()
    keep = class_aware_nms_indices(boxes_xyxy, scores, class_ids, iou_threshold, max_detections)
    # keep is an index array: the gathers are fresh arrays already, cast only where the dtype differs.
    return Detections(boxes_xyxy[keep].astype(np.float32, copy=False), scores[keep].astype(np.float32, copy=False),
                      class_ids[keep].astype(np.int32, copy=False))
