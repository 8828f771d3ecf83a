"""The synthetic source: deterministic, ground truth inside the frame and equal to the pixels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.sources.capture import CaptureSource
from streamd.sources.synthetic import (
    CLASSES,
    MIN_BOX_SIDE_PX,
    MIN_VISIBILITY,
    NOISE_LEVEL,
    SyntheticReader,
    SyntheticScene,
    render,
)

SIZES = ((640, 480), (320, 240), (500, 700))


def test_render_is_a_pure_function_of_seed_size_and_index() -> None:
    first_image, first_truth = render(7, 123)
    # A fresh scene, frames rendered out of order in between: the same pixels and truth.
    scene = SyntheticScene(7)
    scene.render(5)
    scene.render(400)
    image, truth = scene.render(123)
    assert np.array_equal(image, first_image)
    assert np.array_equal(truth.boxes_xyxy, first_truth.boxes_xyxy)
    assert np.array_equal(truth.class_ids, first_truth.class_ids)
    assert not np.array_equal(render(8, 123)[0], first_image)
    assert not np.array_equal(render(7, 124)[0], first_image)


def test_frames_are_fresh_arrays_of_the_configured_size() -> None:
    for width, height in SIZES:
        image, _ = render(3, 10, width, height)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        image[...] = 0  # the caller owns it: the next render must be unaffected
        assert render(3, 10, width, height)[0].any()


def test_ground_truth_boxes_are_inside_the_frame_and_well_formed() -> None:
    labelled = 0
    for seed in range(6):
        for width, height in SIZES:
            for index in range(0, 600, 37):
                _, truth = render(seed, index, width, height)
                boxes = truth.boxes_xyxy
                labelled += len(boxes)
                assert boxes.shape == (len(truth.class_ids), 4) and boxes.dtype == np.float32
                assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
                assert np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)
                assert np.all(boxes[:, 2:] - boxes[:, :2] >= MIN_BOX_SIDE_PX)
                assert np.all((truth.class_ids >= 0) & (truth.class_ids < len(CLASSES)))
                assert np.all((truth.visibility >= MIN_VISIBILITY) & (truth.visibility <= 1.0))
    assert labelled > 300


def test_scenes_cover_every_class_edges_and_occlusion() -> None:
    classes, partly_visible = set(), 0
    for seed in range(20):
        for index in range(0, 300, 50):
            _, truth = render(seed, index)
            classes.update(truth.class_ids.tolist())
            partly_visible += int(np.sum(truth.visibility < 0.95))
    assert classes == set(range(len(CLASSES)))
    assert partly_visible > 10  # shapes leave the frame and hide each other


def test_boxes_are_the_bounding_boxes_of_the_object_pixels() -> None:
    checked = 0
    for seed in range(8):
        scene = SyntheticScene(seed)
        for index in range(0, 400, 40):
            layers = scene.layers(index)
            image = layers.image.astype(np.int16)
            # Every pixel the truth says is object k has k's colour (up to the sensor noise).
            for mask, colour in zip(layers.visible_masks, layers.colours):
                assert np.all(np.abs(image[mask] - np.array(colour)) <= NOISE_LEVEL)
            for box, mask, colour in zip(layers.truth.boxes_xyxy.astype(int), layers.visible_masks, layers.colours):
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                assert tuple(box) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
                # Independently of the masks: pixels of this colour near the box span the box
                # exactly (checked where no other shape of a similar colour is near).
                x1, y1, x2, y2 = box
                region = (slice(max(0, y1 - 3), y2 + 3), slice(max(0, x1 - 3), x2 + 3))
                similar = np.all(np.abs(image[region] - np.array(colour)) <= NOISE_LEVEL, axis=2)
                others = layers.any_object[region] & ~mask[region]
                if others.any():
                    continue
                ys, xs = np.nonzero(similar)
                assert (xs.min() + region[1].start, ys.min() + region[0].start,
                        xs.max() + 1 + region[1].start, ys.max() + 1 + region[0].start) == tuple(box)
                checked += 1
    assert checked > 50


def test_invalid_scene_arguments() -> None:
    with pytest.raises(ValueError):
        SyntheticScene(-1)
    with pytest.raises(ValueError):
        SyntheticScene(0, 16, 480)
    with pytest.raises(ValueError):
        SyntheticScene(0).render(-1)


def _config(**overrides: object) -> SourceConfig:
    values: dict[str, object] = {"id": "synthetic", "kind": "synthetic", "width": 160, "height": 120, "seed": 4}
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


def test_reader_delivers_frames_in_order_and_ends_at_max_frames() -> None:
    reader = SyntheticReader(_config(max_frames=3, fps=25.0))
    assert reader.read() is None  # not open yet
    reader.open()
    assert reader.native_fps == 25.0
    delivered = []
    while (item := reader.read()) is not None:
        delivered.append(item)
    assert len(delivered) == 3
    for index, (image, truth) in enumerate(delivered):
        expected_image, expected_truth = render(4, index, 160, 120)
        assert np.array_equal(image, expected_image)
        assert np.array_equal(truth.boxes_xyxy, expected_truth.boxes_xyxy)
    assert reader.rewind()
    assert np.array_equal(reader.read()[0], delivered[0][0])
    reader.close()
    reader.close()  # idempotent
    assert reader.read() is None
    assert SyntheticReader(_config()).native_fps == 10.0


def test_reader_rejects_a_bad_seed_at_open() -> None:
    with pytest.raises(SourceError):
        SyntheticReader(_config(seed=-3)).open()


def test_synthetic_frames_go_through_the_capture_thread_with_ground_truth() -> None:
    source = CaptureSource(_config(pace="fast", max_frames=5))
    source.start()
    frames = []
    deadline = time.monotonic() + 10
    while len(frames) < 5 and time.monotonic() < deadline:
        frame = source.slot.take(0.1)
        if frame is not None:
            frames.append(frame)
    source.stop()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]  # lossless when read flat out
    for frame in frames:
        image, truth = render(4, frame.index, 160, 120)
        assert np.array_equal(frame.image, image)
        assert np.array_equal(frame.ground_truth.boxes_xyxy, truth.boxes_xyxy)
    assert source.finished.wait(5)
