"""Accuracy of a detector on held-out synthetic scenes, scored against the generator's ground truth.

Two ways to measure:
- :func:`offline_accuracy`: the model straight through ONNX Runtime with the daemon's own
  preprocessing and decoding (used by the training script; no daemon, no ZeroMQ);
- :func:`daemon_accuracy` (in ``streamd.evaluation.daemon_accuracy``): the real thing, a daemon
  process publishing over ZeroMQ to a subscriber, each received message matched by frame index to
  the ground truth the generator gives for that index.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from streamd.evaluation.detection_map import Boxes, mean_average_precision
from streamd.sources.synthetic import GroundTruth, SyntheticScene

# Low enough that the precision/recall curve is traced to high recall; mAP needs the whole curve.
ACCURACY_SCORE_THRESHOLD = 0.05
ACCURACY_NMS_THRESHOLD = 0.45


def truth_boxes(truth: GroundTruth) -> Boxes:
    return Boxes(truth.boxes_xyxy.astype(np.float64), truth.class_ids.astype(np.int64))


def score(predictions: list[Boxes], truths: list[GroundTruth]) -> dict[str, float]:
    """mAP@0.5 and mAP@0.5:0.95 of paired per-frame predictions, plus the frame count."""
    result = mean_average_precision(predictions, [truth_boxes(t) for t in truths])
    return {"map50": result["map50"], "map50_95": result["map50_95"], "frames": len(truths)}


def offline_accuracy(onnx_path: str | Path, seeds: Iterable[int], frames_per_seed: int, width: int = 640,
                     height: int = 480, score_threshold: float = ACCURACY_SCORE_THRESHOLD,
                     nms_threshold: float = ACCURACY_NMS_THRESHOLD) -> dict[str, float]:
    """Score ``onnx_path`` (official YOLOX layout, "yolox" preprocessing) on frames 0.. of ``seeds``."""
    import onnxruntime  # noqa: PLC0415 - only this path needs it

    from streamd.decode.preprocess import YOLOX, Preprocessor  # noqa: PLC0415
    from streamd.decode.yolox import YoloxDecoder  # noqa: PLC0415

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    input_height, input_width = model_input.shape[2], model_input.shape[3]
    num_classes = session.get_outputs()[0].shape[2] - 5
    preprocessor = Preprocessor(YOLOX, input_width, input_height)
    decoder = YoloxDecoder("yolox", input_width, input_height, num_classes, score_threshold, nms_threshold)
    predictions: list[Boxes] = []
    truths: list[GroundTruth] = []
    for seed in seeds:
        scene = SyntheticScene(seed, width, height)
        for index in range(frames_per_seed):
            image, truth = scene.render(index)
            network_input, geometry = preprocessor(image)
            outputs = session.run(None, {model_input.name: network_input})
            detections = decoder.decode(outputs)
            predictions.append(Boxes(geometry.to_frame(detections.boxes_xyxy).astype(np.float64),
                                     detections.class_ids.astype(np.int64), detections.scores.astype(np.float64)))
            truths.append(truth)
    return score(predictions, truths)
