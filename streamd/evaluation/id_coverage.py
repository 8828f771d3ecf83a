"""How many sure detections carry a track id, and whether ids hold frame to frame, from published messages
alone: for real footage, which has no ground truth.

Each detection is linked to one of the previous published frame's detections of its class (the pairs of
IoU above ``link_iou`` that maximise the total, as the tracker's own assignment solver finds them). A
chain of linked detections stands for one object; its first ``young_frames`` detections are a new
object's (no tracker can name an object before it has seen it again), so they are not counted.

- ``id_share``: of the detections scoring at least ``score_threshold`` past their chain's first
  ``young_frames``, the share published with a ``track_id``.
- ``continuity``: of the links whose both ends carry an id, the share with the same id.
- ``chain_id_changes``: along each chain, how often the id differs from the last id seen on it (an id
  withheld between two frames and then published as another is counted too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from streamd.tracking.assignment import iou_matrix, match

LINK_IOU = 0.5
SCORE_THRESHOLD = 0.6
YOUNG_FRAMES = 3


def id_coverage(messages: Iterable[Mapping[str, Any]], score_threshold: float = SCORE_THRESHOLD,
                young_frames: int = YOUNG_FRAMES, link_iou: float = LINK_IOU) -> dict[str, Any]:
    """The figures above over detection messages (``streamd.publish`` schema: ``source``, ``frame_index``,
    ``detections`` with ``box``, ``score``, ``class_id``, ``track_id``), per source in frame order."""
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for message in messages:
        if "detections" in message:
            by_source.setdefault(message["source"], []).append(message)
    sure = counted = with_id = links = same = changes = 0
    ids: set[tuple[str, int]] = set()
    for source, frames in by_source.items():
        previous = None  # boxes, classes, ids, chain positions, last id seen on each chain
        for message in sorted(frames, key=lambda m: m["frame_index"]):
            found = message["detections"]
            boxes = np.array([d["box"] for d in found], np.float64).reshape(-1, 4)
            classes = np.array([d["class_id"] for d in found], np.int64)
            scores = np.array([d["score"] for d in found], np.float64)
            track_ids = np.array([d["track_id"] or 0 for d in found], np.int64)
            position = np.ones(len(found), np.int64)
            last_id = track_ids.copy()
            if previous is not None and len(found) and len(previous[0]):
                old_boxes, old_classes, old_ids, old_position, old_last = previous
                overlap = iou_matrix(old_boxes, boxes) * (old_classes[:, None] == classes[None, :])
                rows, cols = match(overlap, link_iou)
                position[cols] = old_position[rows] + 1
                both = (old_ids[rows] > 0) & (track_ids[cols] > 0)
                links += int(np.count_nonzero(both))
                same += int(np.count_nonzero(old_ids[rows][both] == track_ids[cols][both]))
                carried = old_last[rows]
                changes += int(np.count_nonzero((carried > 0) & (track_ids[cols] > 0) & (carried != track_ids[cols])))
                last_id[cols] = np.where(track_ids[cols] > 0, track_ids[cols], carried)
            is_sure = scores >= score_threshold
            old_enough = is_sure & (position > young_frames)
            sure += int(np.count_nonzero(is_sure))
            counted += int(np.count_nonzero(old_enough))
            with_id += int(np.count_nonzero(old_enough & (track_ids > 0)))
            ids.update((source, int(value)) for value in track_ids[track_ids > 0].tolist())
            previous = (boxes, classes, track_ids, position, last_id)
    return {"score_threshold": score_threshold, "young_frames": young_frames, "link_iou": link_iou,
            "sure_detections": sure, "sure_detections_counted": counted, "sure_detections_with_id": with_id,
            "id_share": with_id / counted if counted else None, "links_with_ids": links, "links_same_id": same,
            "continuity": same / links if links else None, "chain_id_changes": changes, "track_ids": len(ids)}
