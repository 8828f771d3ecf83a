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


@pytest.mark.parametrize("tracked", [False, True])
def test_boxes_inside_the_frame_take_the_table_of_tenths_and_equal_json_dumps(tracked: bool) -> None:
    # Corners a detector clips to the frame: 0, halves of a tenth (rounded half to even), a 4K frame's far
    # edge, float32 noise; the table grows as larger corners come. Then corners it has no entry for.
    rng = np.random.default_rng(7)
    edges = np.array([0.0, 0.05, 0.15, 0.25, 1919.95, 3839.99, 3840.0, 12345.65], np.float32)
    for width in (640, 1920, 3840, 16000):
        for _ in range(20):
            found = detections(rng, 40, tracked)
            boxes = rng.random((40, 4)).astype(np.float32) * width
            boxes[:2] = rng.choice(edges, (2, 4))
            found = Detections(boxes, *[getattr(found, name) for name in ("scores", "class_ids", "track_ids",
                                                                           "track_ages_frames")])
            args = ("cam", 3, 4, 1764500000.5, 1764500000.75, width, width // 2, "m", found, CLASSES)
            assert encode(*args) == _encode_reference(*args)
    for corner in (-0.0, -0.04, -3.0, 1e6, 1e20, np.inf):
        found = Detections(np.array([[1.0, 2.0, 3.0, corner]], np.float32), np.array([0.5], np.float32),
                           np.array([0], np.int32))
        args = ("cam", 3, 4, 1764500000.5, 1764500000.75, 10, 10, "m", found, CLASSES)
        assert encode(*args) == _encode_reference(*args)


def test_times_and_counts_of_other_types_are_written_as_json_dumps_writes_them() -> None:
    found = detections(np.random.default_rng(8), 3, True)
    for frame_index, sequence, capture_time, width in ((np.int64(5), 6, 1.5, 10), (True, 6, 1.5, 10),
                                                        (5, 6, np.float64(1.5), 10), (5, 6, 2, 10),
                                                        (5, 6, 1.5, 10.0), (5, 6, float("nan"), 10)):
        args = ("cam", frame_index, sequence, capture_time, 2.5, width, 10, "m", found, CLASSES)
        try:
            expected = _encode_reference(*args)
        except TypeError:  # numpy's int64 is no JSON type: encode refuses it alike
            with pytest.raises(TypeError):
                encode(*args)
            continue
        assert encode(*args) == expected


def test_the_same_source_and_class_texts_serve_later_messages_of_another_size_or_model() -> None:
    found = detections(np.random.default_rng(9), 5, False)
    found.class_ids[:2] = [-1, 9]  # the names from the end, as class_names[c]; none: the number
    for width, model, names in ((640, "a", CLASSES), (1280, "a", CLASSES), (640, "b", CLASSES[:2]),
                                (640, "a", CLASSES)):
        args = ("cam", 1, 2, 0.5, 0.75, width, 480, model, found, names)
        assert encode(*args) == _encode_reference(*args)
