"""Boxes, labels, scores and track ids drawn onto a preview picture (never onto the frame itself)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# BGR, saturated and far apart, so a box stands out on video and a test can find its colour in a
# JPEG. Class ``c`` gets ``PALETTE[c % len(PALETTE)]``.
PALETTE = ((0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0), (0, 0, 255), (255, 255, 0),
           (128, 0, 255), (0, 128, 255))


def class_colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


@dataclass(frozen=True)
class Box:
    """One detection as drawn and listed: original-frame pixels, its label and score, and a track id
    when the detections carry one (tracking)."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    label: str
    score: float
    track_id: int | None = None

    def caption(self) -> str:
        track = f"#{self.track_id} " if self.track_id is not None else ""
        return f"{track}{self.label} {self.score:.2f}"


def track_ids_of(detections: object) -> Sequence[int] | None:
    """The detections' track ids, one per box, or None before tracking. Read by name, so the preview
    needs no change when the tracker fills ``track_ids`` (an array beside ``scores``)."""
    ids = getattr(detections, "track_ids", None)
    if ids is None:
        return None
    ids = np.asarray(ids).reshape(-1)
    return ids.tolist() if ids.shape[0] == len(detections) else None  # type: ignore[arg-type]


def boxes_of(detections: object, class_names: Sequence[str]) -> list[Box]:
    """``Detections`` (parallel arrays) as a list of Box, highest score first as decoded."""
    boxes = np.asarray(detections.boxes_xyxy, np.float64).reshape(-1, 4)  # type: ignore[attr-defined]
    scores = np.asarray(detections.scores, np.float64).reshape(-1)  # type: ignore[attr-defined]
    class_ids = np.asarray(detections.class_ids).reshape(-1)  # type: ignore[attr-defined]
    track_ids = track_ids_of(detections)
    result = []
    for i in range(scores.shape[0]):
        class_id = int(class_ids[i])
        label = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        track = None if track_ids is None or track_ids[i] is None or track_ids[i] < 0 else int(track_ids[i])
        result.append(Box(*(float(v) for v in boxes[i]), class_id, label, float(scores[i]), track))
    return result


def annotate(image: np.ndarray, boxes: Sequence[Box], frame_width: int, frame_height: int) -> np.ndarray:
    """Draw ``boxes`` (in original-frame pixels) on ``image``, a possibly downscaled copy; in place."""
    scale_x = image.shape[1] / max(1, frame_width)
    scale_y = image.shape[0] / max(1, frame_height)
    thickness = max(2, round(image.shape[1] / 320))
    font_scale = max(0.4, image.shape[1] / 1280)
    for box in boxes:
        colour = class_colour(box.class_id)
        top_left = (round(box.x1 * scale_x), round(box.y1 * scale_y))
        bottom_right = (round(box.x2 * scale_x), round(box.y2 * scale_y))
        cv2.rectangle(image, top_left, bottom_right, colour, thickness)
        text = box.caption()
        (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        text_top = max(0, top_left[1] - text_height - baseline - 2)
        cv2.rectangle(image, (top_left[0], text_top), (top_left[0] + text_width + 4, text_top + text_height
                                                        + baseline + 2), colour, cv2.FILLED)
        cv2.putText(image, text, (top_left[0] + 2, text_top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image
