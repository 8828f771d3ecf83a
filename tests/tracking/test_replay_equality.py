"""The tracker against its reference steps (tests/tracking/reference.py) on long crowded scenes: the same
ids, ages and counts on every frame and the same state at the end, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.config.schema import TrackingConfig
from streamd.tracking.appearance import colour_signatures
from streamd.tracking.bytetrack import ByteTracker
from tests.tracking.reference import ReferenceTracker, use_reference

WIDTH, HEIGHT = 960, 540
STATE = ("_mean", "_covariance", "_ids", "_classes", "_lost", "_first_index", "_last_seen", "_votes",
         "_full_size", "_look", "_has_look", "_withheld", "_free_motion")


def scene(seed: int, objects: int, frames: int, appearance: bool) -> list[tuple]:
    """Boxes of ``objects`` coloured objects crossing each other, turning back at the frame's edges, with
    detector-like jitter, misses and low scores, and dropped frames; each frame's colour signatures too."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform([30, 30], [WIDTH - 30, HEIGHT - 30], size=(objects, 2))
    velocity = rng.uniform(-3, 3, size=(objects, 2))
    size = rng.uniform(15, 70, size=(objects, 2))
    classes = rng.integers(0, 3, objects)
    colours = rng.integers(0, 256, size=(objects, 3)).tolist()
    low, high = size / 2, [WIDTH, HEIGHT] - size / 2
    data, index = [], 0
    for _ in range(frames):
        step = 1 if rng.random() > 0.1 else int(rng.integers(2, 5))  # frames dropped before inference
        index += step
        centre = centre + step * velocity
        outside = (centre < low) | (centre > high)
        velocity[outside] *= -1
        centre = np.clip(centre, low, high)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) + rng.normal(0, 1.5, (objects, 4))
        boxes = boxes.clip(0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(np.float32)
        scores = np.where(rng.random(objects) < 0.15, rng.uniform(0.2, 0.5, objects),
                          rng.uniform(0.55, 0.95, objects)).astype(np.float32)
        shown = rng.random(objects) > 0.1
        signatures = None
        if appearance:
            image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
            for object_index in np.argsort(-size.prod(axis=1)):  # the small ones in front
                x1, y1, x2, y2 = (np.concatenate([centre - size / 2, centre + size / 2], axis=1)[object_index]
                                  .astype(int).tolist())
                cv2.rectangle(image, (x1, y1), (x2, y2), colours[object_index], -1)
            signatures = colour_signatures(image, boxes[shown])
        data.append((boxes[shown], scores[shown], classes[shown].astype(np.int32), index,
                     index / 30 + rng.normal(0, 0.002), signatures))
    return data


def replay(tracker: ByteTracker, data: list[tuple]) -> list[tuple]:
    outputs = []
    for boxes, scores, classes, index, capture_time, signatures in data:
        update = tracker.update(boxes, scores, classes, index, capture_time, signatures)
        outputs.append((update.track_ids.tolist(), update.ages_frames.tolist(), update.active, update.started,
                        update.ended, update.withheld))
    return outputs


@pytest.mark.parametrize("appearance", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_tracker_equals_its_reference_steps_frame_for_frame(monkeypatch: pytest.MonkeyPatch, appearance: bool,
                                                                 seed: int) -> None:
    data = scene(seed, 30, 300, appearance)
    current = ByteTracker(TrackingConfig(appearance=appearance))
    outputs = replay(current, data)
    use_reference(monkeypatch)
    reference = ReferenceTracker(TrackingConfig(appearance=appearance))
    expected = replay(reference, data)
    for frame, (got, wanted) in enumerate(zip(outputs, expected)):
        assert got == wanted, f"frame {frame}"
    for field in STATE:
        assert np.array_equal(getattr(current, field), getattr(reference, field)), field
    # The scene exercises what was rewritten: contested boxes (of one class: 36 to 340 a scene) and crowded
    # matching.
    assert sum(output[5] for output in outputs) > 25
    assert max(output[2] for output in outputs) > 20
