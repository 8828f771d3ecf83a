"""COCO-style mAP: greedy matching by score per image and class, 101-point interpolated precision,
averaged over classes that have ground truth, at IoU 0.50 and over 0.50:0.05:0.95."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)


@dataclass(frozen=True)
class Boxes:
    """One image's boxes: (K, 4) xyxy, (K,) class ids and (K,) scores (ground truth: all 1)."""

    boxes_xyxy: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray | None = None


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) IoU matrix of xyxy boxes."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(boxes_a[:, 2:] - boxes_a[:, :2], axis=1)
    area_b = np.prod(boxes_b[:, 2:] - boxes_b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def _average_precision(matched: np.ndarray, scores: np.ndarray, ground_truth_count: int) -> float:
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(matched[order])
    false_positives = np.cumsum(~matched[order])
    recall = true_positives / ground_truth_count
    precision = true_positives / np.maximum(true_positives + false_positives, 1e-12)
    # Precision envelope, then sampled at 101 recall points (COCO's interpolation).
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    recall_points = np.linspace(0, 1, 101)
    indices = np.searchsorted(recall, recall_points, side="left")
    sampled = np.where(indices < precision.shape[0], precision[np.minimum(indices, precision.shape[0] - 1)], 0.0)
    return float(np.mean(sampled))


def mean_average_precision(predictions: Sequence[Boxes], ground_truths: Sequence[Boxes]
                           ) -> dict[str, float]:
    """``{"map50": ..., "map50_95": ..., "classes": n}`` over paired per-image predictions/truths."""
    if len(predictions) != len(ground_truths):
        raise ValueError("predictions and ground truths must pair up image by image")
    classes = sorted({int(c) for gt in ground_truths for c in gt.class_ids})
    per_threshold = np.zeros((len(IOU_THRESHOLDS), max(len(classes), 1)))
    for class_index, class_id in enumerate(classes):
        ground_truth_count = 0
        scores_all: list[np.ndarray] = []
        matched_all: list[np.ndarray] = []  # (T, D) per image
        for prediction, truth in zip(predictions, ground_truths):
            gt_boxes = truth.boxes_xyxy[truth.class_ids == class_id]
            ground_truth_count += gt_boxes.shape[0]
            selected = prediction.class_ids == class_id
            pred_boxes = prediction.boxes_xyxy[selected]
            pred_scores = (prediction.scores[selected] if prediction.scores is not None
                           else np.ones(pred_boxes.shape[0]))
            order = np.argsort(-pred_scores, kind="stable")
            pred_boxes, pred_scores = pred_boxes[order], pred_scores[order]
            matched = np.zeros((len(IOU_THRESHOLDS), pred_boxes.shape[0]), dtype=bool)
            if pred_boxes.shape[0] and gt_boxes.shape[0]:
                ious = box_iou(pred_boxes.astype(np.float64), gt_boxes.astype(np.float64))
                for t, threshold in enumerate(IOU_THRESHOLDS):
                    taken = np.zeros(gt_boxes.shape[0], dtype=bool)
                    for d in range(pred_boxes.shape[0]):
                        candidates = np.where(taken, -1.0, ious[d])
                        best = int(np.argmax(candidates))
                        if candidates[best] >= threshold:
                            taken[best] = True
                            matched[t, d] = True
            scores_all.append(pred_scores)
            matched_all.append(matched)
        if ground_truth_count == 0:
            continue
        scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
        matched = np.concatenate(matched_all, axis=1) if matched_all else np.zeros((len(IOU_THRESHOLDS), 0), bool)
        for t in range(len(IOU_THRESHOLDS)):
            per_threshold[t, class_index] = (_average_precision(matched[t], scores, ground_truth_count)
                                             if scores.shape[0] else 0.0)
    if not classes:
        return {"map50": 0.0, "map50_95": 0.0, "classes": 0}
    per_class = per_threshold[:, : len(classes)]
    return {"map50": float(per_class[0].mean()), "map50_95": float(per_class.mean()), "classes": len(classes)}
