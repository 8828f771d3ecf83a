"""Standard multi-object-tracking scores of tracks against ground truth with identities.

IDF1, MOTA, ID switches and the rest come from ``motmetrics`` (py-motmetrics, the test extra);
HOTA from ``trackeval`` (the HOTA authors' TrackEval) where it is installed. Neither is a daemon
dependency. ``trackeval``'s declared requirements include the GUI build of OpenCV, which replaces
``opencv-python-headless``; its HOTA needs only numpy and SciPy, so install it with
``pip install --no-deps trackeval`` (docs/tracking.md).

Matching is MOTChallenge's: a track box and a ground-truth box can match at IoU >= 0.5.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MATCH_IOU = 0.5


@dataclass(frozen=True)
class FrameTracks:
    """One frame: ground-truth identities and boxes, and the tracker's (xyxy pixels)."""

    truth_ids: np.ndarray  # (G,) int
    truth_boxes: np.ndarray  # (G, 4)
    track_ids: np.ndarray  # (T,) int
    track_boxes: np.ndarray  # (T, 4)


def _iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    from streamd.evaluation.detection_map import box_iou  # noqa: PLC0415

    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    return box_iou(a, b) if a.shape[0] and b.shape[0] else np.zeros((a.shape[0], b.shape[0]))


def accumulate(frames: Sequence[FrameTracks], frame_ids: Sequence[int] | None = None) -> Any:
    """A ``motmetrics.MOTAccumulator`` of one sequence, its frames numbered by ``frame_ids`` (default:
    their positions)."""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    for position, frame in enumerate(frames):
        # motmetrics.distances.iou_matrix, written out: 1.4 calls np.asfarray, gone in numpy 2.
        distances = 1.0 - _iou(frame.truth_boxes, frame.track_boxes)
        distances[distances > 1 - MATCH_IOU] = np.nan
        accumulator.update(np.asarray(frame.truth_ids).tolist(), np.asarray(frame.track_ids).tolist(), distances,
                           frameid=frame_ids[position] if frame_ids is not None else position)
    return accumulator


def clear_and_identity(sequences: Mapping[str, Sequence[FrameTracks]]) -> dict[str, float]:
    """motmetrics over all sequences together: IDF1, MOTA, MOTP, ID switches, counts."""
    import motmetrics

    names = list(sequences)
    accumulators = [accumulate(sequences[name]) for name in names]
    host = motmetrics.metrics.create()
    wanted = ["idf1", "idp", "idr", "mota", "motp", "num_switches", "num_unique_objects", "num_false_positives",
              "num_misses", "num_objects", "mostly_tracked", "num_fragmentations"]
    summary = host.compute_many(accumulators, metrics=wanted, names=names, generate_overall=True)
    overall = summary.loc["OVERALL"]
    return {key: float(overall[key]) for key in wanted}


def hota(sequences: Mapping[str, Sequence[FrameTracks]]) -> dict[str, float] | None:
    """HOTA, DetA and AssA (averaged over IoU 0.05..0.95, as published) with trackeval; None without it."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints about optional datasets on import
            from trackeval.metrics import HOTA
    except ImportError:
        return None
    metric = HOTA()
    per_sequence = {name: metric.eval_sequence(_trackeval_data(frames)) for name, frames in sequences.items()}
    combined = metric.combine_sequences(per_sequence)
    return {key: float(np.mean(combined[key])) for key in ("HOTA", "DetA", "AssA")}


def _trackeval_data(frames: Sequence[FrameTracks]) -> dict[str, Any]:
    """trackeval's per-sequence input: ids renumbered 0.. per sequence, IoU per frame."""
    truth_index: dict[int, int] = {}
    track_index: dict[int, int] = {}
    gt_ids, tracker_ids, similarity = [], [], []
    for frame in frames:
        gt_ids.append(np.array([truth_index.setdefault(int(i), len(truth_index)) for i in frame.truth_ids], int))
        tracker_ids.append(np.array([track_index.setdefault(int(i), len(track_index)) for i in frame.track_ids],
                                    int))
        similarity.append(_iou(frame.truth_boxes, frame.track_boxes))
    return {"num_gt_ids": len(truth_index), "num_tracker_ids": len(track_index),
            "num_gt_dets": sum(len(ids) for ids in gt_ids), "num_tracker_dets": sum(len(ids) for ids in tracker_ids),
            "gt_ids": gt_ids, "tracker_ids": tracker_ids, "similarity_scores": similarity,
            "num_timesteps": len(frames)}


def score_tracks(sequences: Mapping[str, Sequence[FrameTracks]]) -> dict[str, float | None]:
    """Every score at once; ``hota`` and friends are None when trackeval is not installed."""
    result: dict[str, float | None] = dict(clear_and_identity(sequences))
    result["idsw_per_100_tracks"] = 100.0 * result["num_switches"] / max(result["num_unique_objects"], 1.0)
    hota_scores = hota(sequences)
    result.update({"hota": None, "deta": None, "assa": None} if hota_scores is None else
                  {"hota": hota_scores["HOTA"], "deta": hota_scores["DetA"], "assa": hota_scores["AssA"]})
    return result
