"""Ultralytics layouts on the CPU path: detection from shapes and metadata, preprocessing, decoders
checked against exact boxes in frame pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.config.schema import ModelConfig
from streamd.errors import ModelLayoutError
from streamd.frame import Frame
from streamd.inference.factory import build_detector
from streamd.yolox.decoders import make_decoder
from streamd.yolox.layout import OutputInfo, detect_layout
from streamd.yolox.metadata import parse_names, read_metadata
from streamd.yolox.preprocess import ULTRALYTICS, Preprocessor, letterbox_geometry, resolve_convention
from tests.support import require_shared
from tests.yolox.ultralytics_models import (
    YOLO26N_END2END,
    YOLOV8N,
    anchor_free_table,
    ultralytics_metadata,
    write_constant_model,
)

SIZE = 64
CELLS = 64 + 16 + 4  # strides 8, 16, 32 on a 64x64 input
CLASSES = 3
# A 320x240 frame in a 64x64 input: ratio 0.2, resized 64x48, centred: 8 rows of padding on top.
FRAME = np.full((240, 320, 3), 90, np.uint8)


def frame_box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    """Network-input xyxy -> frame pixels, for the centred letterbox of FRAME."""
    return [x1 / 0.2, (y1 - 8) / 0.2, x2 / 0.2, (y2 - 8) / 0.2]


def detect(model_path: Path, classes: tuple[str, ...] = ("a", "b", "c"), **settings) -> tuple:
    detector = build_detector(ModelConfig(path=str(model_path), classes=classes, **settings))
    try:
        result = detector.submit(Frame("s", 0, 0.0, 0.0, FRAME))[0]
        return detector, result.detections
    finally:
        detector.close()


def test_names_metadata_is_read_in_class_order() -> None:
    assert parse_names("{1: 'car', 0: 'person'}") == ("person", "car")
    assert parse_names("['a', 'b']") == ("a", "b")
    assert parse_names("{0: 'a', 2: 'c'}") == ()  # ids with a gap: not trusted
    assert parse_names("not python") == ()


@pytest.mark.parametrize(("shape", "family", "end2end", "layout"), [
    ((1, CELLS, 5 + CLASSES), "", None, "yolox"),
    ((1, 4 + CLASSES, CELLS), "", None, "ultralytics"),
    ((1, 4 + CLASSES, CELLS), "ultralytics", False, "ultralytics"),
    ((1, CELLS, 4 + CLASSES), "ultralytics", False, "ultralytics-transposed"),
    ((1, CELLS, 4 + CLASSES), "", None, "ultralytics-transposed"),
    ((1, 300, 6), "", None, "end2end"),
    ((1, 300, 6), "ultralytics", True, "end2end"),
    ((None, 4 + CLASSES, None), "ultralytics", None, "ultralytics"),
])
def test_layout_from_shape_and_metadata(shape, family, end2end, layout) -> None:
    outputs = [OutputInfo("output0", shape)]
    assert detect_layout(outputs, SIZE, SIZE, CLASSES, family=family, end2end=end2end) == layout


def test_an_unknown_layout_names_the_shape_and_the_layouts_known() -> None:
    with pytest.raises(ModelLayoutError) as error:
        detect_layout([OutputInfo("output0", (1, 17, 5))], SIZE, SIZE, CLASSES)
    message = str(error.value)
    assert "output0[1, 17, 5]" in message
    for layout in ("yolox", "heads", "ultralytics", "ultralytics-transposed", "end2end"):
        assert layout in message


def test_ultralytics_letterbox_rounds_and_centres() -> None:
    # 101x77 into 64x64: height 77 * 0.634 = 48.8 -> 49 rows (YOLOX's int() would give 48), 7 on top.
    geometry = letterbox_geometry(101, 77, SIZE, SIZE, ULTRALYTICS.centered, ULTRALYTICS.round_resize)
    assert (geometry.resized_width, geometry.resized_height, geometry.pad_x, geometry.pad_y) == (64, 49, 0, 7)
    image = np.zeros((77, 101, 3), np.uint8)
    image[..., 0], image[..., 2] = 255, 51  # blue 255, red 51 (BGR)
    network_input, _ = Preprocessor(ULTRALYTICS, SIZE, SIZE)(image)
    assert network_input.shape == (1, 3, SIZE, SIZE)
    np.testing.assert_allclose(network_input[0, :, 30, 30], [0.2, 0.0, 1.0], atol=1e-6)  # RGB, 0-1
    np.testing.assert_allclose(network_input[0, :, 3, 30], [114 / 255] * 3, atol=1e-6)  # pad 114 above
    assert resolve_convention("auto", "ultralytics") is ULTRALYTICS
    assert resolve_convention("auto", "yolox").name == "yolox"


def test_ultralytics_boxes_map_back_through_each_side_scale() -> None:
    # As Ultralytics' scale_boxes: the 49 rows hold the frame's 77 (49 / 77, not the ratio 64 / 101), so the
    # resized region maps onto the whole frame.
    geometry = letterbox_geometry(101, 77, SIZE, SIZE, ULTRALYTICS.centered, ULTRALYTICS.round_resize)
    np.testing.assert_allclose(geometry.to_frame(np.array([[0, 7, 64, 56]], np.float32)), [[0, 0, 101, 77]],
                               rtol=1e-6)
    # YOLOX's own demo divides by the one ratio.
    yolox = letterbox_geometry(101, 77, SIZE, SIZE, centered=False)
    np.testing.assert_allclose(yolox.to_frame(np.array([[0, 0, 64, 48]], np.float32)),
                               [[0, 0, 101, 48 * 101 / 64]], rtol=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
def test_anchor_free_boxes_in_frame_pixels(tmp_path: Path, transposed: bool) -> None:
    table = anchor_free_table(CELLS, CLASSES, [
        (3, 32, 32, 20, 10, 1, 0.9),     # kept
        (4, 33, 32, 20, 10, 1, 0.8),     # same class, IoU ~0.9 with the first: suppressed
        (5, 33, 32, 20, 10, 2, 0.7),     # other class, same place: kept (class-aware NMS)
        (6, 10, 20, 8, 8, 0, 0.2),       # below the threshold
        (70, 50, 40, 12, 16, 0, 0.5),    # kept
    ])
    if transposed:
        table = table.transpose(0, 2, 1).copy()
    model = write_constant_model(tmp_path / "v8.onnx", table, SIZE, ultralytics_metadata(CLASSES, SIZE, False))
    detector, detections = detect(model, score_threshold=0.3)
    assert detector.decoder.layout == ("ultralytics-transposed" if transposed else "ultralytics")
    assert detector.convention.name == "ultralytics"
    np.testing.assert_allclose(detections.scores, [0.9, 0.7, 0.5], rtol=1e-6)
    assert detections.class_ids.tolist() == [1, 2, 0]
    np.testing.assert_allclose(detections.boxes_xyxy, [frame_box(22, 27, 42, 37), frame_box(23, 27, 43, 37),
                                                       frame_box(44, 32, 56, 48)], atol=1e-3)


def test_end_to_end_rows_are_thresholded_not_suppressed(tmp_path: Path) -> None:
    table = np.zeros((1, 10, 6), np.float32)
    table[0, 0] = (22, 27, 42, 37, 0.6, 1)
    table[0, 1] = (23, 27, 43, 37, 0.9, 1)  # overlaps the first, same class: both kept (no NMS)
    table[0, 2] = (44, 32, 56, 48, 0.2, 0)  # below the threshold
    table[0, 3] = (0, 8, 64, 56, 0.4, 2)
    model = write_constant_model(tmp_path / "e2e.onnx", table, SIZE, ultralytics_metadata(CLASSES, SIZE, True))
    detector, detections = detect(model, score_threshold=0.3)
    assert detector.decoder.layout == "end2end"
    np.testing.assert_allclose(detections.scores, [0.9, 0.6, 0.4], rtol=1e-6)
    assert detections.class_ids.tolist() == [1, 1, 2]
    np.testing.assert_allclose(detections.boxes_xyxy, [frame_box(23, 27, 43, 37), frame_box(22, 27, 42, 37),
                                                       [0, 0, 320, 240]], atol=1e-3)


def test_explicit_layout_and_preprocessing_override(tmp_path: Path) -> None:
    table = anchor_free_table(CELLS, CLASSES, [(3, 32, 32, 20, 10, 1, 0.9)])
    model = write_constant_model(tmp_path / "plain.onnx", table, SIZE)  # no metadata at all
    detector, detections = detect(model, layout="ultralytics", preprocessing="yolox")
    assert detector.decoder.layout == "ultralytics" and detector.convention.name == "yolox"
    # Top-left letterbox: no vertical offset.
    np.testing.assert_allclose(detections.boxes_xyxy, [[110, 135, 210, 185]], atol=1e-3)


def test_decoder_registry_refuses_an_unknown_layout() -> None:
    with pytest.raises(ModelLayoutError, match="end2end"):
        make_decoder("detr", SIZE, SIZE, CLASSES, 0.3, 0.45)


@pytest.mark.parametrize(("path", "layout", "rows"), [(YOLOV8N, "ultralytics", (1, 84, 8400)),
                                                      (YOLO26N_END2END, "end2end", (1, 300, 6))])
def test_shared_exports(path: Path, layout: str, rows: tuple[int, ...]) -> None:
    require_shared(path)
    metadata = read_metadata(path)
    assert metadata.family == "ultralytics" and metadata.task == "detect"
    assert metadata.imgsz == (640, 640) and metadata.stride == 32
    assert metadata.names == tuple(str(i) for i in range(80))
    assert metadata.end2end is (layout == "end2end")
    assert metadata.outputs[0].shape == rows
    assert detect_layout(metadata.outputs, 640, 640, 80, family=metadata.family,
                         end2end=metadata.end2end) == layout
    # Random weights: class scores about 1.6e-4 at most, so a threshold under that yields boxes.
    detector, detections = detect(path, classes=metadata.names, score_threshold=1e-4)
    assert detector.decoder.layout == layout and detector.convention.name == "ultralytics"
    assert detector.input_size == (640, 640)
    assert len(detections) > 0
    boxes = detections.boxes_xyxy
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 320) and np.all(boxes[:, [1, 3]] <= 240)
    assert np.all(np.diff(detections.scores) <= 0)


def test_check_names_family_layout_size_preprocessing_and_classes(tmp_path: Path) -> None:
    from streamd.config import parse_config  # noqa: PLC0415
    from streamd.daemon.check import check_config  # noqa: PLC0415

    table = anchor_free_table(CELLS, CLASSES, [(3, 32, 32, 20, 10, 1, 0.9)])
    model = write_constant_model(tmp_path / "v8.onnx", table, SIZE, ultralytics_metadata(CLASSES, SIZE, False))
    config = parse_config({"sources": [{"id": "s", "kind": "synthetic", "max_frames": 1}],
                           "model": {"path": str(model)}, "metrics": {"enabled": False}})
    assert config.model.classes == ("thing0", "thing1", "thing2")  # from the metadata's names
    lines: list[str] = []
    check_config(config, lines.append)
    assert any("family ultralytics, layout ultralytics, input 64x64, preprocessing ultralytics, "
               "classes thing0, thing1, thing2" in line for line in lines), lines


def test_channels_first_and_transposed_decoders_agree() -> None:
    rng = np.random.default_rng(0)
    output = rng.random((1, 84, 8400), dtype=np.float32) * 0.05
    output[0, 4:, ::200] = rng.random((80, 42), dtype=np.float32)
    output[0, :2] *= 12800
    output[0, 2:4] *= 1000
    first = make_decoder("ultralytics", 640, 640, 80, 0.3, 0.45, 100).decode([output])
    transposed = make_decoder("ultralytics-transposed", 640, 640, 80, 0.3, 0.45, 100).decode(
        [output.transpose(0, 2, 1).copy()])
    assert len(first) > 10
    np.testing.assert_array_equal(first.boxes_xyxy, transposed.boxes_xyxy)
    np.testing.assert_array_equal(first.class_ids, transposed.class_ids)
    np.testing.assert_array_equal(first.scores, transposed.scores)


def greedy_class_offset_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                            max_detections: int) -> np.ndarray:
    """Reference: boxes shifted apart by class (7680 px a class, as Ultralytics offsets them), then plain
    greedy NMS in float64: keep the best, drop what overlaps it by more than the threshold, repeat."""
    shifted = boxes.astype(np.float64) + class_ids[:, None] * 7680.0
    areas = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(shifted[best, :2], shifted[rest, :2])
        bottom_right = np.minimum(shifted[best, 2:], shifted[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.array(keep[:max_detections], np.int64)


@pytest.mark.parametrize("seed", range(5))
def test_anchor_free_decoder_matches_a_greedy_reference_on_crowded_outputs(seed: int) -> None:
    # Many overlapping candidates of a few classes at a low threshold: best class per anchor, strict
    # threshold, xywh -> xyxy, class-aware NMS, at most max_detections, sorted by score.
    rng = np.random.default_rng(seed)
    anchors, classes = 2100, 5
    output = np.zeros((1, 4 + classes, anchors), np.float32)
    output[0, 0:2] = rng.uniform(100, 220, (2, anchors))
    output[0, 2:4] = rng.uniform(20, 80, (2, anchors))
    output[0, 4:] = rng.random((classes, anchors), dtype=np.float32) ** 4
    threshold, iou, limit = 0.05, 0.5, 300
    got = make_decoder("ultralytics", 320, 320, classes, threshold, iou, limit).decode([output])

    rows = output[0].T
    best = rows[:, 4:].max(axis=1)
    candidate = np.flatnonzero(best > threshold)
    class_ids = rows[candidate, 4:].argmax(axis=1)
    xywh = rows[candidate, :4]
    boxes = np.concatenate((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), axis=1)
    keep = greedy_class_offset_nms(boxes, best[candidate], class_ids, iou, limit)
    assert len(got) == len(keep) > 20
    np.testing.assert_allclose(got.boxes_xyxy, boxes[keep], atol=1e-4)
    np.testing.assert_array_equal(got.class_ids, class_ids[keep])
    np.testing.assert_allclose(got.scores, best[candidate][keep], rtol=1e-6)
