"""The detection output error on the real yolox_nano in ONNX Runtime: dense candidates that agree with
the decoder, zero against itself, and growing with the size of a perturbation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.quantize.fidelity import (
    DetectionModelSpec,
    FidelityMeter,
    ModelRunner,
    dense_predictions,
    detection_output_error,
)
from streamd.yolox.decoders import make_decoder
from streamd.yolox.preprocess import CONVENTIONS, Preprocessor
from tests.support import DOG, YOLOX_NANO, require_shared

SPEC = DetectionModelSpec("yolox", 80, 416, 416)


@pytest.fixture(scope="module")
def nano_outputs() -> list[np.ndarray]:
    require_shared(YOLOX_NANO, DOG)
    network_input, _ = Preprocessor(CONVENTIONS["yolox"], 416, 416)(cv2.imread(str(DOG)))
    return ModelRunner(YOLOX_NANO).run(network_input.copy())


def test_dense_boxes_are_the_decoders_boxes(nano_outputs: list[np.ndarray]) -> None:
    scores, boxes = dense_predictions(SPEC, nano_outputs)
    assert scores.shape == (1, 3549, 80) and boxes.shape == (1, 3549, 4)
    detections = make_decoder("yolox", 416, 416, 80, 0.3, 0.45).decode(nano_outputs)
    assert detections.scores.shape[0] >= 3  # the dog, the bicycle, the truck
    for box, score, class_id in zip(detections.boxes_xyxy, detections.scores, detections.class_ids):
        anchor = int(np.argmin(np.abs(scores[0, :, class_id] - score)))
        centre_size = np.concatenate(((box[:2] + box[2:]) / 2, box[2:] - box[:2]))
        np.testing.assert_allclose(boxes[0, anchor], centre_size, rtol=1e-4, atol=1e-3)


def test_output_error_is_zero_for_the_float_model_and_grows_with_the_error(nano_outputs: list[np.ndarray]) -> None:
    assert detection_output_error(SPEC, nano_outputs, nano_outputs).tolist() == [0.0]
    errors = []
    for size in (0.01, 0.05, 0.2):
        moved = nano_outputs[0].copy()
        moved[..., :4] += size  # box terms: centre in cells, log size
        moved[..., 4] *= 1 - size  # objectness
        errors.append(float(detection_output_error(SPEC, [moved], nano_outputs)[0]))
    assert 0 < errors[0] < errors[1] < errors[2]
    meter = FidelityMeter(SPEC, nano_outputs)
    assert meter.output_error(nano_outputs) == 0.0


def test_layouts_without_a_fixed_candidate_order_fall_back_to_the_raw_error() -> None:
    rows = np.random.default_rng(0).random((1, 300, 6)).astype(np.float32)
    spec = DetectionModelSpec("end2end", 80, 640, 640)
    assert dense_predictions(spec, [rows]) is None and detection_output_error(spec, [rows], [rows]) is None
