"""RT-DETR exports on the CPU path: detection from the graph and its metadata, the stretched preprocessing,
and the decoder checked against exact boxes in frame pixels, on tiny graphs with the real export's output
signature ([1, 300, 6] or an earlier exporter's [1, 300, 4+C]) and metadata."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.config.schema import ModelConfig
from streamd.frame import Frame
from streamd.inference.factory import build_detector
from streamd.yolox.decoders import make_decoder
from streamd.yolox.layout import OutputInfo, detect_layout
from streamd.yolox.metadata import metadata_from_props, read_metadata
from streamd.yolox.preprocess import RTDETR, Preprocessor, convention_geometry, resolve_convention
from tests.yolox.ultralytics_models import rtdetr_metadata, ultralytics_metadata, write_constant_model

SIZE = 64
CLASSES = 3
QUERIES = 300
FRAME = np.full((240, 320, 3), 90, np.uint8)  # stretched into 64x64: x / 5, y / 3.75


def rows(planted: list[tuple[float, float, float, float, float, int]]) -> np.ndarray:
    """[1, 300, 6]: ``planted`` rows (cx, cy, w, h normalised, score, class) first, zeros after."""
    table = np.zeros((1, QUERIES, 6), np.float32)
    table[0, :len(planted)] = planted
    return table


def detect(model_path: Path, **settings) -> tuple:
    detector = build_detector(ModelConfig(path=str(model_path), classes=("a", "b", "c"), **settings))
    try:
        return detector, detector.submit(Frame("s", 0, 0.0, 0.0, FRAME))[0].detections
    finally:
        detector.close()


def test_metadata_names_the_rtdetr_family() -> None:
    assert metadata_from_props(rtdetr_metadata(CLASSES, SIZE)).family == "rtdetr"
    # Earlier exporters wrote no head key: the description names the model.
    earlier = {k: v for k, v in rtdetr_metadata(CLASSES, SIZE).items() if k != "head"}
    earlier["description"] = "Ultralytics RT-DETR-l model trained on coco.yaml"
    assert metadata_from_props(earlier).family == "rtdetr"
    assert metadata_from_props(ultralytics_metadata(CLASSES, SIZE, True)).family == "ultralytics"


@pytest.mark.parametrize(("width", "family", "end2end", "layout"), [
    (6, "rtdetr", False, "rtdetr"),
    (4 + CLASSES, "rtdetr", False, "rtdetr-queries"),
    (6, "ultralytics", True, "end2end"),   # the same shape from a YOLO26 / YOLOv10 export
    (6, "", None, "end2end"),              # no metadata: the shape alone cannot tell RT-DETR (set model.layout)
])
def test_layout_from_shape_and_metadata(width: int, family: str, end2end: bool | None, layout: str) -> None:
    outputs = [OutputInfo("output0", (1, QUERIES, width))]
    assert detect_layout(outputs, SIZE, SIZE, CLASSES, family=family, end2end=end2end) == layout


def test_stretch_preprocessing_is_a_plain_resize() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (77, 101, 3), np.uint8)
    network_input, geometry = Preprocessor(RTDETR, SIZE, SIZE)(image)
    # What Ultralytics' RT-DETR predictor feeds: the frame resized to the input (bilinear), RGB, 0-1.
    expected = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)[..., ::-1].transpose(2, 0, 1) / 255
    np.testing.assert_allclose(network_input[0], expected, atol=1e-6)
    assert (geometry.pad_x, geometry.pad_y, geometry.resized_width, geometry.resized_height) == (0, 0, SIZE, SIZE)
    # Each side maps back on its own scale.
    np.testing.assert_allclose(geometry.to_frame(np.array([[0, 0, 64, 32]], np.float32)), [[0, 0, 101, 38.5]],
                               rtol=1e-6)
    assert convention_geometry(RTDETR, 320, 240, SIZE, SIZE).ratio_y == pytest.approx(SIZE / 240)
    assert resolve_convention("auto", "rtdetr") is RTDETR


def test_rtdetr_rows_in_frame_pixels_best_first(tmp_path: Path) -> None:
    table = rows([
        (0.50, 0.50, 0.25, 0.50, 0.40, 1),
        (0.50, 0.50, 0.25, 0.50, 0.90, 2),   # the same query with another class: kept as well, no NMS
        (0.10, 0.20, 0.10, 0.10, 0.20, 0),   # below the threshold
        (0.90, 0.90, 0.40, 0.40, 0.60, 0),   # over the frame's corner: clipped to it
        (0.30, 0.30, 0.10, 0.10, 0.95, 7),   # a class the names do not cover: dropped
    ])
    model = write_constant_model(tmp_path / "rtdetr.onnx", table, SIZE, rtdetr_metadata(CLASSES, SIZE))
    metadata = read_metadata(model)
    assert metadata.family == "rtdetr" and metadata.outputs[0].shape == (1, QUERIES, 6)
    detector, detections = detect(model, score_threshold=0.3)
    assert detector.decoder.layout == "rtdetr" and detector.convention.name == "rtdetr"
    assert detector.input_size == (SIZE, SIZE)
    np.testing.assert_allclose(detections.scores, [0.9, 0.6, 0.4], rtol=1e-6)
    assert detections.class_ids.tolist() == [2, 0, 1]
    # Normalised boxes times the frame's own width and height (the input is the whole frame, stretched).
    np.testing.assert_allclose(detections.boxes_xyxy, [[120, 60, 200, 180], [224, 168, 320, 240],
                                                       [120, 60, 200, 180]], atol=1e-3)


def test_rtdetr_queries_take_each_query_best_class(tmp_path: Path) -> None:
    table = np.zeros((1, QUERIES, 4 + CLASSES), np.float32)
    table[0, 0] = (0.5, 0.5, 0.25, 0.5, 0.2, 0.7, 0.6)   # best class 1
    table[0, 1] = (0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.25)   # best 0.25: below the threshold
    table[0, 2] = (0.8, 0.5, 0.2, 0.2, 0.8, 0.0, 0.0)
    metadata = {k: v for k, v in rtdetr_metadata(CLASSES, SIZE).items() if k != "head"}
    model = write_constant_model(tmp_path / "rtdetr_queries.onnx", table, SIZE, metadata)
    detector, detections = detect(model, score_threshold=0.3)
    assert detector.decoder.layout == "rtdetr-queries" and detector.convention.name == "rtdetr"
    np.testing.assert_allclose(detections.scores, [0.8, 0.7], rtol=1e-6)
    assert detections.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(detections.boxes_xyxy, [[224, 96, 288, 144], [120, 60, 200, 180]], atol=1e-3)


def test_max_detections_keeps_the_best() -> None:
    table = rows([(0.5, 0.5, 0.1, 0.1, score, 0) for score in (0.5, 0.9, 0.7, 0.8)])
    decoder = make_decoder("rtdetr", SIZE, SIZE, CLASSES, 0.3, 0.45, max_detections=2)
    detections = decoder.decode([table])
    np.testing.assert_allclose(detections.scores, [0.9, 0.8], rtol=1e-6)
    assert len(make_decoder("rtdetr", SIZE, SIZE, CLASSES, 0.99, 0.45).decode([table])) == 0


def test_a_configured_layout_reads_an_export_without_metadata(tmp_path: Path) -> None:
    model = write_constant_model(tmp_path / "bare.onnx", rows([(0.5, 0.5, 0.25, 0.5, 0.9, 1)]), SIZE)
    detector, detections = detect(model, layout="rtdetr")
    assert detector.convention.name == "rtdetr"  # the configured layout's family picks the preprocessing
    np.testing.assert_allclose(detections.boxes_xyxy, [[120, 60, 200, 180]], atol=1e-3)


def test_check_names_family_layout_size_preprocessing_and_classes(tmp_path: Path) -> None:
    from streamd.config import parse_config  # noqa: PLC0415
    from streamd.daemon.check import check_config  # noqa: PLC0415

    model = write_constant_model(tmp_path / "rtdetr.onnx", rows([(0.5, 0.5, 0.25, 0.5, 0.9, 1)]), SIZE,
                                 rtdetr_metadata(CLASSES, SIZE))
    config = parse_config({"sources": [{"id": "s", "kind": "synthetic", "max_frames": 1}],
                           "model": {"path": str(model)}, "metrics": {"enabled": False}})
    assert config.model.classes == ("thing0", "thing1", "thing2")  # from the metadata's names
    lines: list[str] = []
    check_config(config, lines.append)
    assert any("family rtdetr, layout rtdetr, input 64x64, preprocessing rtdetr, classes thing0, thing1, thing2"
               in line for line in lines), lines
