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


# A label that would overlap one already placed moves down below it, at most this many times.
MAX_LABEL_MOVES = 4

Rect = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), picture pixels


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(box_left: int, box_top: int, width: int, height: int, image_width: int, image_height: int,
                placed: Sequence[Rect] = ()) -> Rect:
    """Where a ``width`` x ``height`` label of a box whose top-left corner is (``box_left``, ``box_top``) goes:
    above the box's top edge, starting at its left edge, shifted left and down so that it stays inside the
    picture, and moved down below any label in ``placed`` it would cover (a few times at most)."""
    left = max(0, min(box_left, image_width - width))
    top = box_top - height
    if top < 0:
        top = max(0, box_top)  # no room above the box: inside it, under its top edge
    top = min(top, max(0, image_height - height))
    for _ in range(MAX_LABEL_MOVES):
        hit = next((rect for rect in placed if _overlaps((left, top, left + width, top + height), rect)), None)
        if hit is None or hit[3] + height > image_height:
            break
        top = hit[3]
    return left, top, left + width, top + height


def annotate(image: np.ndarray, boxes: Sequence[Box], frame_width: int, frame_height: int) -> np.ndarray:
    """Draw ``boxes`` (in original-frame pixels) on ``image``, a possibly downscaled copy; in place. Labels
    stay inside the picture and, where a few moves down are enough, off each other."""
    scale_x = image.shape[1] / max(1, frame_width)
    scale_y = image.shape[0] / max(1, frame_height)
    thickness = max(2, round(image.shape[1] / 320))
    font_scale = max(0.4, image.shape[1] / 1280)
    for box in boxes:
        top_left = (round(box.x1 * scale_x), round(box.y1 * scale_y))
        bottom_right = (round(box.x2 * scale_x), round(box.y2 * scale_y))
        cv2.rectangle(image, top_left, bottom_right, class_colour(box.class_id), thickness)
    placed: list[Rect] = []
    for box in boxes:  # labels after every box, so no box edge crosses a label
        text = box.caption()
        (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        left, top, right, bottom = place_label(round(box.x1 * scale_x), round(box.y1 * scale_y), text_width + 4,
                                               text_height + baseline + 2, image.shape[1], image.shape[0], placed)
        placed.append((left, top, right, bottom))
        cv2.rectangle(image, (left, top), (right - 1, bottom - 1), class_colour(box.class_id), cv2.FILLED)
        cv2.putText(image, text, (left + 2, top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image


# Zones and lines (streamd.analytics), drawn under the boxes: colours apart from the class palette.
ZONE_COLOUR = (255, 200, 100)
ALARM_COLOUR = (40, 40, 230)
LINE_COLOUR = (255, 255, 255)


def _caption(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], font_scale: float) -> None:
    """``text`` on a filled box of ``colour`` whose top-left corner is near (x, y), kept inside the picture."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    left, top, right, bottom = place_label(x, y + height + baseline + 2, width + 4, height + baseline + 2,
                                           image.shape[1], image.shape[0])
    cv2.rectangle(image, (left, top), (right - 1, bottom - 1), colour, cv2.FILLED)
    cv2.putText(image, text, (left + 2, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                cv2.LINE_AA)


def draw_overlay(image: np.ndarray, overlay: object, frame_width: int, frame_height: int) -> np.ndarray:
    """Draw a source's zones (outline, name and how many are in it; red while its occupancy alarm is on) and
    lines (the line, an arrow towards its inside, its in and out counts) on ``image``, a possibly
    downscaled copy of the frame; in place. ``overlay``: a streamd.analytics Overlay."""
    scale = np.array([image.shape[1] / max(1, frame_width), image.shape[0] / max(1, frame_height)])
    thickness = max(2, round(image.shape[1] / 320))
    font_scale = max(0.4, image.shape[1] / 1280)
    for zone in overlay.zones:  # type: ignore[attr-defined]
        colour = ALARM_COLOUR if zone.alarm else ZONE_COLOUR
        points = np.round(np.asarray(zone.polygon, np.float64) * scale).astype(np.int32)
        cv2.polylines(image, [points], True, colour, thickness, cv2.LINE_AA)
        corner = points[np.lexsort((points[:, 0], points[:, 1]))[0]]  # the topmost corner
        _caption(image, f"{zone.name}: {zone.count}", int(corner[0]), int(corner[1]), colour, font_scale)
    for line in overlay.lines:  # type: ignore[attr-defined]
        start = np.round(np.asarray(line.start) * scale).astype(int)
        end = np.round(np.asarray(line.end) * scale).astype(int)
        cv2.line(image, tuple(start.tolist()), tuple(end.tolist()), LINE_COLOUR, thickness, cv2.LINE_AA)
        for point in (start, end):
            cv2.circle(image, tuple(point.tolist()), thickness + 2, LINE_COLOUR, cv2.FILLED, cv2.LINE_AA)
        direction = (end - start).astype(np.float64)
        length = float(np.hypot(*direction)) or 1.0
        inward = np.array([direction[1], -direction[0]]) / length  # left of start -> end on the picture
        if not line.inside_is_left:
            inward = -inward
        middle = (start + end) / 2
        tip = middle + inward * max(16.0, 0.04 * image.shape[1])
        cv2.arrowedLine(image, tuple(np.round(middle).astype(int).tolist()), tuple(np.round(tip).astype(int).tolist()),
                        LINE_COLOUR, thickness, cv2.LINE_AA, tipLength=0.4)
        _caption(image, f"{line.name} in {line.count_in} out {line.count_out}", int(middle[0]) + thickness,
                 int(middle[1]) + thickness, LINE_COLOUR, font_scale)
    return image
