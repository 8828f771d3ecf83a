"""A trained Ultralytics YOLOv8 export through streamd's CPU detector, against Ultralytics' own boxes.

The model is not part of the repository: STREAMD_TRAINED_ULTRALYTICS_ONNX names its file, and the test skips
without it. ``data/trained_export_reference.npz`` holds its sha256 and, for a few COCO images in
``../shared/calib/coco_val2017_100``, the boxes Ultralytics' ``YOLO(path).predict`` made of them
(benchmarks/trained_model_map.py wrote it and scores all 100 images; docs/install.md names the package
the model comes from).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.config.schema import ModelConfig
from streamd.frame import Frame
from streamd.inference.factory import build_detector
from streamd.yolox.metadata import read_metadata
from tests.support import SHARED, require_shared

REFERENCE = Path(__file__).parent / "data" / "trained_export_reference.npz"
MODEL_VARIABLE = "STREAMD_TRAINED_ULTRALYTICS_ONNX"
IMAGES = SHARED / "calib" / "coco_val2017_100"
IOU_MATCH = 0.999
SCORE_TOLERANCE = 1e-5


def _model() -> Path:
    path = Path(os.environ.get(MODEL_VARIABLE, ""))
    if not path.name or not path.is_file():
        pytest.skip(f"needs the trained export: set {MODEL_VARIABLE} to its file (docs/install.md says where it "
                    "comes from)")
    return path


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
    inter = ((np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
             * (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def test_streamd_gives_ultralytics_boxes_on_coco_images() -> None:
    model = _model()
    require_shared(IMAGES)
    with np.load(REFERENCE) as data:
        reference = {key: data[key] for key in data.files}
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert digest == str(reference["model_sha256"]), (
        f"{MODEL_VARIABLE}={model} is not the export the reference was made with (sha256 {digest})")
    names = read_metadata(model).names
    detector = build_detector(ModelConfig(path=str(model), classes=names,
                                          score_threshold=float(reference["score_threshold"]),
                                          nms_threshold=float(reference["nms_threshold"]),
                                          max_detections=int(reference["max_detections"])))
    try:
        assert names == ("Normal", "Fall")
        assert detector.convention.name == "ultralytics" and detector.input_size == (640, 640)
        for index, name in enumerate(str(n) for n in reference["images"]):
            image = cv2.imread(str(IMAGES / name))
            found = detector.submit(Frame("coco", index, 0.0, 0.0, image))[0].detections
            boxes, scores = reference[f"{name}__boxes"], reference[f"{name}__scores"]
            classes = reference[f"{name}__classes"]
            assert len(found.boxes_xyxy) == len(boxes), name
            # One to one: each reference box has exactly one streamd box of its class in the same place and score.
            allowed = ((_iou(boxes, found.boxes_xyxy) >= IOU_MATCH)
                       & (classes[:, None] == found.class_ids[None])
                       & (np.abs(scores[:, None] - found.scores[None]) <= SCORE_TOLERANCE))
            assert (allowed.sum(axis=1) == 1).all() and (allowed.sum(axis=0) == 1).all(), name
    finally:
        detector.close()
