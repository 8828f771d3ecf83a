"""The preview draws zones (red while their alarm is on), lines with an arrow to their inside, and the
live counts, under the boxes and scaled to a downscaled picture."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.analytics.source import LineView, Overlay, ZoneView
from streamd.preview.draw import ALARM_COLOUR, LINE_COLOUR, ZONE_COLOUR, draw_overlay
from streamd.preview.hub import PreviewHub

SQUARE = np.array([[100, 100], [300, 100], [300, 300], [100, 300]], np.float64)


def overlay(alarm: bool = False) -> Overlay:
    return Overlay(640, 480, (ZoneView("queue", SQUARE, 3, alarm),),
                   (LineView("door", (50.0, 400.0), (600.0, 400.0), True, 7, 2),))


def near(image: np.ndarray, x: int, y: int, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    """Whether a pixel within 2 px of (x, y) has ``colour``."""
    patch = image[max(0, y - 2):y + 3, max(0, x - 2):x + 3].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.array(colour)).max(axis=1) <= tolerance).any())


def test_zones_and_lines_are_drawn_where_they_are() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    draw_overlay(image, overlay(), 640, 480)
    assert near(image, 200, 100, ZONE_COLOUR) and near(image, 300, 200, ZONE_COLOUR)  # on the zone's edges
    assert not near(image, 200, 200, ZONE_COLOUR, 0)  # not filled
    assert near(image, 80, 400, LINE_COLOUR) and near(image, 580, 400, LINE_COLOUR)
    assert near(image, 325, 380, LINE_COLOUR)  # the arrow points up from the middle: the inside


def test_an_alarm_turns_the_zone_red() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    draw_overlay(image, overlay(alarm=True), 640, 480)
    assert near(image, 300, 200, ALARM_COLOUR) and not near(image, 300, 200, ZONE_COLOUR, 10)


def test_a_downscaled_picture_gets_scaled_shapes() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    draw_overlay(image, overlay(), 640, 480)
    assert near(image, 150, 50, ZONE_COLOUR) and near(image, 100, 200, LINE_COLOUR)


def test_the_counts_are_written() -> None:
    """The captions' boxes are filled with the shape's colour: more of it than the outline alone."""
    with_counts = np.zeros((480, 640, 3), np.uint8)
    draw_overlay(with_counts, overlay(), 640, 480)
    filled = np.count_nonzero(np.abs(with_counts.astype(int) - LINE_COLOUR).max(axis=2) == 0)
    assert filled > 550 * 2 + 400  # the line (2 px) and a caption box


def test_the_hub_draws_the_overlay_of_the_source_it_encodes() -> None:
    asked = []

    def overlay_of(source_id: str) -> Overlay:
        asked.append(source_id)
        return overlay(alarm=True)

    hub = PreviewHub(lambda: {"cam": "streaming"}, lambda: ("person",), 5.0, 640, 90, 4, overlay_of)

    class _Latest:
        frame_width, frame_height = 640, 480
        detections = type("D", (), {"boxes_xyxy": np.zeros((0, 4)), "scores": np.zeros(0),
                                    "class_ids": np.zeros(0, int)})()

    class _Item:
        image = np.zeros((480, 640, 3), np.uint8)
        latest = _Latest()

    jpeg = hub.encode(_Item(), "cam")  # type: ignore[arg-type]
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert asked == ["cam"]
    assert near(picture, 300, 200, ALARM_COLOUR, 60)
