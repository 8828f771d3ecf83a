"""Labels drawn on the preview picture: inside the picture at its edges, and off each other where boxes share a
corner (the picture's pixels, drawn by OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.preview.draw import Box, annotate, class_colour, place_label

WIDTH, HEIGHT = 320, 240


def _label_size(box: Box, image_width: int) -> tuple[int, int]:
    """The label rectangle annotate() draws for ``box`` (same font arithmetic)."""
    font_scale = max(0.4, image_width / 1280)
    (text_width, text_height), baseline = cv2.getTextSize(box.caption(), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    return text_width + 4, text_height + baseline + 2


def _painted(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (image == np.array(colour, np.uint8)).all(axis=2)


def test_place_label_stays_inside_the_picture() -> None:
    assert place_label(10, 50, 80, 14, WIDTH, HEIGHT) == (10, 36, 90, 50)  # above the box, at its left edge
    assert place_label(300, 50, 80, 14, WIDTH, HEIGHT) == (240, 36, 320, 50)  # shifted left at the right edge
    assert place_label(10, 5, 80, 14, WIDTH, HEIGHT) == (10, 5, 90, 19)  # no room above: under the top edge
    assert place_label(10, 239, 80, 14, WIDTH, HEIGHT) == (10, 225, 90, 239)
    assert place_label(-20, -20, 400, 14, WIDTH, HEIGHT)[0] == 0  # wider than the picture: from its left edge


def test_place_label_moves_down_off_labels_already_placed() -> None:
    first = place_label(100, 50, 80, 14, WIDTH, HEIGHT)
    second = place_label(110, 50, 80, 14, WIDTH, HEIGHT, [first])
    third = place_label(105, 50, 80, 14, WIDTH, HEIGHT, [first, second])
    assert second == (110, 50, 190, 64) and third == (105, 64, 185, 78)
    rects = [first, second, third]
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(rects) for b in rects[i + 1:])
    # No room below: it stays (overlapping) rather than leave the picture.
    low = place_label(100, 239, 80, 14, WIDTH, HEIGHT)
    assert place_label(100, 239, 80, 14, WIDTH, HEIGHT, [low])[3] <= HEIGHT


def test_a_label_at_the_right_edge_is_drawn_whole() -> None:
    box = Box(300, 100, 318, 150, 2, "a-long-class-name", 0.87, track_id=1234)
    image = annotate(np.zeros((HEIGHT, WIDTH, 3), np.uint8), [box], WIDTH, HEIGHT)
    label_width, label_height = _label_size(box, WIDTH)
    assert label_width > WIDTH - box.x1  # it would not fit from the box's left edge
    painted = _painted(image[:100], class_colour(2))  # above the box: the label's background only
    columns = np.flatnonzero(painted.any(axis=0))
    assert columns.size >= label_width - 2 and columns.max() <= WIDTH - 1
    assert np.flatnonzero(painted.any(axis=1)).size >= label_height - 2


def test_labels_of_boxes_sharing_a_corner_do_not_cover_each_other() -> None:
    boxes = [Box(40, 60, 200, 200, 0, "person", 0.9), Box(40, 60, 180, 190, 1, "person", 0.8)]
    image = annotate(np.zeros((HEIGHT, WIDTH, 3), np.uint8), boxes, WIDTH, HEIGHT)
    for box in boxes:
        label_width, label_height = _label_size(box, WIDTH)
        painted = _painted(image, class_colour(box.class_id))
        # Each label's background is there in full height (its margin left of the text), not under the other's.
        rows = np.flatnonzero(painted[:100, 41])  # the labels' rows (the boxes' bottom edges are further down)
        assert rows.size >= label_height, (box, rows)
