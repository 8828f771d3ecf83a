"""Shared by the GPU tests: what a GPU detector's results must equal."""

from __future__ import annotations

import numpy as np

from streamd.yolox.postprocess import YoloxDecoder
from streamd.yolox.preprocess import letterbox_geometry


def assert_equal_to_cpu_decode(results, raw: np.ndarray, width: int, height: int, num_classes: int = 80,
                               score_threshold: float = 0.3, nms_threshold: float = 0.45,
                               max_detections: int = 300) -> None:
    """Every result's detections are the CPU decoder's of the same ``raw`` network output, mapped back
    to its frame ("yolox" preprocessing, top-left letterbox): scores equal, boxes within 0.01 px."""
    network = YoloxDecoder("yolox", width, height, num_classes, score_threshold, nms_threshold,
                           max_detections).decode([raw])
    assert len(network.scores) > 0  # something to compare
    assert results  # and something to compare it with
    for result in results:
        geometry = letterbox_geometry(result.frame.width, result.frame.height, width, height, False)
        np.testing.assert_array_equal(result.detections.scores, network.scores)
        np.testing.assert_allclose(result.detections.boxes_xyxy, geometry.to_frame(network.boxes_xyxy), atol=1e-2)
