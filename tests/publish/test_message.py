"""The hand-written message encoder against json.dumps of the whole object, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.publish.message import _encode_reference, decode, encode
from streamd.yolox.detections import Detections

CLASSES = ("person", 'quote"d', "back\\slash", "ünïcode", "tab\there")


def detections(rng: np.random.Generator, count: int, tracked: bool) -> Detections:
    boxes = (rng.random((count, 4)) * 2000 - 10).astype(np.float32)
    boxes[:1] = [0.0, -0.0, 1e-7, 123456.789]
    scores = rng.random(count).astype(np.float32)
    class_ids = rng.integers(0, len(CLASSES) + 3, count).astype(np.int32)  # some beyond the names
    if not tracked:
        return Detections(boxes, scores, class_ids)
    track_ids = rng.integers(-1, 50, count).astype(np.int64)
    ages = rng.integers(0, 10_000, count).astype(np.int64)
    return Detections(boxes, scores, class_ids, track_ids, ages)


@pytest.mark.parametrize("tracked", [False, True])
@pytest.mark.parametrize("count", [0, 1, 9, 60])
def test_encode_equals_json_dumps_of_the_whole_object(tracked: bool, count: int) -> None:
    rng = np.random.default_rng(count)
    for round_index in range(20):
        found = detections(rng, count, tracked) if count else Detections.empty()
        args = ("cam-1 \"é\"", round_index, 7 + round_index, 1764500000.123456 + round_index * 0.1,
                1764500000.25, 768, 576, "yolox_nano", found)
        for names in (CLASSES, list(CLASSES), ()):
            assert encode(*args, names) == _encode_reference(*args, names)
        decode(encode(*args, CLASSES))


def test_non_finite_values_are_spelled_as_json_does() -> None:
    found = Detections(np.array([[np.nan, 1, np.inf, 2]], np.float32), np.array([np.nan], np.float32),
                       np.array([0], np.int32))
    args = ("cam", 1, 1, 0.5, 0.75, 10, 10, "m", found, CLASSES)
    assert encode(*args) == _encode_reference(*args)
    assert b"NaN" in encode(*args)[1]
