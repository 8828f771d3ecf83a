"""Colour signatures: what they tell apart, and that the replay path (stored pixels) equals the daemon's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.tracking.appearance import (
    DIMENSIONS,
    HUE_BINS,
    colour_signatures,
    sample_pixels,
    signatures_from_pixels,
    similarity,
)


def scene(*objects: tuple[tuple[int, int, int, int], tuple[int, int, int]], size=(480, 640)) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(110, 8, size=(*size, 3)), 0, 255).astype(np.uint8)  # muted grey, noisy
    for (x1, y1, x2, y2), bgr in objects:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), bgr, -1)
    return image


RED, BLUE, ORANGE = (30, 30, 220), (220, 60, 30), (20, 130, 240)


def test_the_same_colour_at_any_size_is_alike_and_another_hue_is_not() -> None:
    boxes = np.array([[10, 10, 60, 60], [200, 100, 400, 300], [450, 300, 500, 350], [520, 20, 600, 90]], np.float32)
    image = scene((tuple(boxes[0].astype(int)), RED), (tuple(boxes[1].astype(int)), RED),
                  (tuple(boxes[2].astype(int)), BLUE), (tuple(boxes[3].astype(int)), ORANGE))
    signatures = colour_signatures(image, boxes)
    assert signatures.shape == (4, DIMENSIONS)
    np.testing.assert_allclose(signatures.sum(axis=1), 1.0)
    alike = similarity(signatures, signatures)
    assert alike[0, 1] > 0.95  # red, small and large
    assert alike[0, 2] < 0.05 and alike[0, 3] < 0.05 and alike[2, 3] < 0.05  # red, blue, orange apart


def test_grey_pixels_count_by_brightness_not_hue() -> None:
    image = scene(((0, 0, 100, 100), (40, 40, 40)), ((100, 0, 200, 100), (230, 230, 230)))
    dark, light = colour_signatures(image, np.array([[0, 0, 100, 100], [100, 0, 200, 100]], np.float32))
    assert dark[:HUE_BINS].sum() == 0 and light[:HUE_BINS].sum() == 0
    assert similarity(dark[None], light[None])[0, 0] == 0.0


def test_a_box_over_two_objects_shares_with_both() -> None:
    image = scene(((100, 100, 150, 200), RED), ((150, 100, 200, 200), BLUE))
    merged, red, blue = colour_signatures(image, np.array([[100, 100, 200, 200], [100, 100, 150, 200],
                                                           [150, 100, 200, 200]], np.float32))
    assert 0.4 < similarity(merged[None], red[None])[0, 0] < 0.6
    assert 0.4 < similarity(merged[None], blue[None])[0, 0] < 0.6


def test_stored_pixels_give_the_daemons_signatures() -> None:
    # Replay (tracking_accuracy --replay) scores recorded pixels, the daemon samples the frame.
    image = np.random.default_rng(3).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    boxes = np.array([[-20, -5, 30, 40], [150, 100, 190, 140], [10, 10, 10.5, 11], [0, 0, 160, 120]], np.float32)
    pixels = sample_pixels(image, boxes)
    assert pixels.shape == (4, 64, 3)
    np.testing.assert_array_equal(colour_signatures(image, boxes), signatures_from_pixels(pixels))
    assert colour_signatures(image, np.zeros((0, 4), np.float32)).shape == (0, DIMENSIONS)


@pytest.mark.parametrize("bgr,hue_bin", [((0, 0, 255), 0), ((0, 255, 0), 4), ((255, 0, 0), 8)])
def test_saturated_colours_land_in_their_hue_bin(bgr, hue_bin) -> None:
    image = scene(((0, 0, 50, 50), bgr))
    [signature] = colour_signatures(image, np.array([[0, 0, 50, 50]], np.float32))
    assert signature[hue_bin] == 1.0
