"""HostDetector.submit_batch on ONNX Runtime: one session.run for the batch, the same detections as
frame by frame, for frames of different sizes, with and without preprocessing folded into the graph."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from streamd.config.schema import ModelConfig
from streamd.errors import BackendError
from streamd.frame import Frame
from streamd.inference.factory import build_detector
from streamd.inference.host_detector import HostDetector
from tests.support import COCO_CLASSES, DOG, VTEST, YOLOX_NANO, require_shared


def coco() -> tuple[str, ...]:
    return tuple(line.strip() for line in COCO_CLASSES.read_text().splitlines() if line.strip())


def frames() -> list[Frame]:
    dog = cv2.imread(str(DOG))
    capture = cv2.VideoCapture(str(VTEST))
    ok, street = capture.read()
    capture.release()
    assert ok and dog is not None
    images = [street, dog, cv2.resize(dog, (500, 300)), dog[::-1].copy()]
    now = time.monotonic()
    return [Frame(f"s{i}", i, time.time(), now, image) for i, image in enumerate(images)]


@pytest.mark.parametrize("fold", [True, False])
def test_batch_equals_frame_by_frame(fold: bool) -> None:
    require_shared(YOLOX_NANO, COCO_CLASSES, VTEST, DOG)
    detector = build_detector(ModelConfig(str(YOLOX_NANO), coco(), max_batch=4, fold_preprocessing=fold))
    assert isinstance(detector, HostDetector) and detector.max_batch == 4
    calls = []
    infer = detector.backend.infer
    detector.backend.infer = lambda feeds: calls.append(next(iter(feeds.values())).shape[0]) or infer(feeds)
    try:
        batch = frames()
        batched = detector.submit_batch(batch)
        assert calls == [4]  # one backend call for the whole batch
        singles = [detector.submit(frame)[0] for frame in batch]
        assert [r.frame for r in batched] == batch
        for got, expected in zip(batched, singles):
            assert len(got.detections.scores) == len(expected.detections.scores) > 0
            np.testing.assert_allclose(got.detections.boxes_xyxy, expected.detections.boxes_xyxy, atol=1.0)
            np.testing.assert_array_equal(got.detections.class_ids, expected.detections.class_ids)
            np.testing.assert_allclose(got.detections.scores, expected.detections.scores, atol=1e-3)
        assert detector.submit_batch(batch[:1])[0].frame is batch[0]  # a batch of one: the frame path
    finally:
        detector.close()


def test_max_batch_1_model_keeps_its_fixed_batch() -> None:
    require_shared(YOLOX_NANO, COCO_CLASSES)
    detector = build_detector(ModelConfig(str(YOLOX_NANO), coco()))
    try:
        assert detector.max_batch == 1
        assert detector.backend.inputs[0].shape[0] == 1
    finally:
        detector.close()


def test_a_model_whose_batch_cannot_be_made_dynamic_is_refused_by_name() -> None:
    """The built-in detector computes shapes in its graph (Shape nodes): no silent fallback."""
    from streamd.models import builtin_model  # noqa: PLC0415

    model = builtin_model("synthetic-shapes")
    with pytest.raises(BackendError, match="cannot make the batch dynamic"):
        build_detector(ModelConfig(str(model.onnx_path), model.classes, max_batch=2))
