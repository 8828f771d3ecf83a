"""``streamd quantize`` on each model family streamd decodes: the family, layout and preprocessing are read
from the model, the INT8 model is a valid Q/DQ graph whose outputs keep the family's layout, and the
fidelity report decodes them with the family's decoder.

The Ultralytics exports (``../shared/models/ultralytics``, real exporter graphs with random weights) are
quantized without the search (a few images, seconds); their DFL softmax is exactly 1/16 everywhere, the
constant tensor ORT's histogram calibrator could not bin. RT-DETR runs on a tiny Conv model with the
metadata and [1, K, 6] rows of an RT-DETR export, through the whole guard.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamd.quantize.cli import main
from streamd.quantize.errors import EXIT_BAD_INPUT, EXIT_OK
from streamd.quantize.family import family_float_nodes
from streamd.quantize.fidelity import DetectionModelSpec, FidelityMeter
from streamd.quantize.model import load_model
from tests.quantize.test_cli import requires_int8_calibration
from tests.quantize.tiny_conv_yolox import write_tiny_conv_yolox
from tests.support import SHARED, require_shared
from tests.yolox.ultralytics_models import YOLO26N_END2END, YOLOV8N, rtdetr_metadata

CALIB = SHARED / "calib" / "coco_val2017_100"
# Random weights: every class score is about 1.6e-4, so the ground truth is taken below that.
RANDOM_WEIGHTS = ["--reference-score", "0.0001"]
FEW = ["--calib-count", "3", "--eval-count", "2"]
RTDETR_SIZE, QUERIES = 64, 16


def _quantize(model: Path, images: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(["--onnx", str(model), "--calib", str(images), "--output", str(out / "int8.onnx"),
                 "--report", str(out / "report.json"), *extra])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return code, report


def _check_qdq(float_model: Path, int8_model: Path, images: np.ndarray | None = None) -> onnx.ModelProto:
    """A valid Q/DQ model: symmetric int8, the float model's inputs and outputs unchanged, runs in ORT."""
    model = onnx.load(str(int8_model))
    onnx.checker.check_model(model)
    reference = onnx.load(str(float_model), load_external_data=False)
    assert [o.name for o in model.graph.output] == [o.name for o in reference.graph.output]
    assert [o.type for o in model.graph.output] == [o.type for o in reference.graph.output]
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    zero_points = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("zero_point")]
    assert zero_points and all(int(np.abs(z).max()) == 0 for z in zero_points)
    session = ort.InferenceSession(str(int8_model), providers=["CPUExecutionProvider"])
    shape = [d.dim_value for d in reference.graph.input[0].type.tensor_type.shape.dim]
    feed = np.full(shape, 0.45, np.float32) if images is None else images
    (output,) = session.run(None, {reference.graph.input[0].name: feed})
    assert list(output.shape) == [d.dim_value for d in reference.graph.output[0].type.tensor_type.shape.dim]
    return model


@requires_int8_calibration
def test_ultralytics_anchor_free_export(tmp_path: Path) -> None:
    require_shared(YOLOV8N, CALIB)
    code, report = _quantize(YOLOV8N, CALIB, tmp_path, *FEW, *RANDOM_WEIGHTS, "--no-guard")
    assert code == EXIT_OK, report.get("verdict")
    assert report["layout"] == {"family": "ultralytics", "layout": "ultralytics", "num_classes": 80}
    assert report["input"]["convention"] == "ultralytics" and report["input"]["width"] == 640
    assert report["fidelity"]["reference_detections"] > 0 and report["int8_conv_mac_share"] == 1.0
    model = _check_qdq(YOLOV8N, tmp_path / "int8.onnx")
    # Only Conv inputs carry Q/DQ: the head's Split / Softmax / box decoding run on float tensors.
    producers = {o: n for n in model.graph.node for o in n.output}
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert producers[softmax.input[0]].op_type != "DequantizeLinear"


def test_ultralytics_keeps_the_dfl_conv_in_float() -> None:
    require_shared(YOLOV8N, YOLO26N_END2END)
    info = load_model(YOLOV8N)
    assert family_float_nodes("ultralytics", info.model, info.conv_macs) == ["/model.22/dfl/conv/Conv"]
    end2end = load_model(YOLO26N_END2END)  # YOLO26's head regresses boxes directly: no DFL
    assert family_float_nodes("ultralytics", end2end.model, end2end.conv_macs) == []
    assert family_float_nodes("yolox", info.model, info.conv_macs) == []


@requires_int8_calibration
def test_nms_free_end_to_end_export(tmp_path: Path) -> None:
    require_shared(YOLO26N_END2END, CALIB)
    code, report = _quantize(YOLO26N_END2END, CALIB, tmp_path, *FEW, *RANDOM_WEIGHTS, "--no-guard")
    assert code == EXIT_OK, report.get("verdict")
    assert report["layout"] == {"family": "ultralytics", "layout": "end2end", "num_classes": 80}
    assert report["input"]["convention"] == "ultralytics"
    model = _check_qdq(YOLO26N_END2END, tmp_path / "int8.onnx")
    # The model's own selection (TopK, GatherElements) is kept as exported, on float tensors.
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("TopK") == 2 and "GatherElements" in ops


def write_tiny_rtdetr(path: Path, num_classes: int = 3) -> Path:
    """Convs to QUERIES rows of (cx, cy, w, h, score, class): normalised sigmoid boxes and scores that
    depend on the picture, a fixed class per row, with the metadata of an Ultralytics RT-DETR export."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits, nodes, tensor, c_in = [], [], "images", 3
    for stage in range(4):  # 64 -> 4x4 = 16 queries
        weight = (rng.standard_normal((8, c_in, 3, 3)) * (0.3 if stage == 0 else 0.2)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{stage}"), numpy_helper.from_array(np.zeros(8, np.float32),
                                                                                         f"b{stage}")]
        nodes += [helper.make_node("Conv", [tensor, f"w{stage}", f"b{stage}"], [f"c{stage}"], name=f"conv{stage}",
                                   kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{stage}"], [f"r{stage}"], name=f"relu{stage}")]
        tensor, c_in = f"r{stage}", 8
    head = (rng.standard_normal((5, 8, 1, 1)) * 0.3).astype(np.float32)
    inits += [numpy_helper.from_array(head, "wh"), numpy_helper.from_array(np.array([0, 0, -1, -1, 1.5], np.float32),
                                                                           "bh"),
              numpy_helper.from_array(np.array([1, 5, QUERIES], np.int64), "shape"),
              numpy_helper.from_array((np.arange(QUERIES) % num_classes).astype(np.float32).reshape(1, QUERIES, 1),
                                      "classes")]
    nodes += [helper.make_node("Conv", [tensor, "wh", "bh"], ["logits"], name="head", kernel_shape=[1, 1]),
              helper.make_node("Sigmoid", ["logits"], ["terms"], name="sigmoid"),
              helper.make_node("Reshape", ["terms", "shape"], ["flat"], name="reshape"),
              helper.make_node("Transpose", ["flat"], ["rows"], name="transpose", perm=[0, 2, 1]),
              helper.make_node("Concat", ["rows", "classes"], ["output0"], name="concat", axis=2)]
    graph = helper.make_graph(
        nodes, "tiny_rtdetr", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, RTDETR_SIZE,
                                                                                            RTDETR_SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, QUERIES, 6])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in rtdetr_metadata(num_classes, RTDETR_SIZE).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@requires_int8_calibration
def test_rtdetr_through_the_guard(tmp_path: Path, image_folder: Path) -> None:
    model = write_tiny_rtdetr(tmp_path / "rtdetr.onnx")
    code, report = _quantize(model, image_folder, tmp_path, "--calib-count", "8", "--eval-count", "8",
                             "--search-count", "4", "--min-fidelity", "0.5")
    assert code == EXIT_OK, report.get("verdict")
    assert report["layout"] == {"family": "rtdetr", "layout": "rtdetr", "num_classes": 3}
    assert report["input"]["convention"] == "rtdetr"
    assert report["family_float_nodes"] == [] and report["search"]["images"] == "calibration"
    assert report["fidelity"]["map50_95"] >= 0.5 and report["fidelity"]["reference_detections"] > 0
    _check_qdq(model, tmp_path / "int8.onnx")


@requires_int8_calibration
def test_selection_images_drive_the_search(tmp_path: Path, tiny_conv_model: Path, image_folder: Path) -> None:
    images = sorted(image_folder.iterdir())
    lists = {}
    for name, part in (("calib", images[:8]), ("select", images[8:16]), ("eval", images[16:24])):
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text("".join(f"{p}\n" for p in part))
    code, report = _quantize(tiny_conv_model, lists["calib"], tmp_path, "--select", str(lists["select"]),
                             "--eval", str(lists["eval"]), "--search-count", "4", "--min-fidelity", "0.5",
                             "--rank-on", "selection")
    assert code == EXIT_OK, report.get("verdict")
    assert report["search"]["images"] == "selection" and report["search"]["image_count"] == 8
    assert report["search"]["ranked_on"] == "selection" and report["search"]["ranking_images"] == 4
    assert report["selection"]["images"] == 8 and report["evaluation"]["held_out"]
    # Scoring on the selection images themselves is allowed, but is not reported as held out.
    code, report = _quantize(tiny_conv_model, lists["calib"], tmp_path, "--select", str(lists["select"]),
                             "--eval", str(lists["select"]), "--search-count", "4", "--min-fidelity", "0.5")
    assert code == EXIT_OK and report["evaluation"]["held_out"] is False


def test_unknown_outputs_name_what_was_found(tmp_path: Path, image_folder: Path, capsys) -> None:
    model = onnx.load(str(write_tiny_conv_yolox(tmp_path / "tiny.onnx")))
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 3  # [1, cells, 3]: no layout has it
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7
    onnx.save(model, str(tmp_path / "odd.onnx"))
    code, _ = _quantize(tmp_path / "odd.onnx", image_folder, tmp_path)
    assert code == EXIT_BAD_INPUT
    assert "cannot tell the model's family from its outputs output[1, 7, 3]" in capsys.readouterr().err


@pytest.mark.parametrize("convention", ["yolox", "ultralytics"])
def test_convention_override(tmp_path: Path, tiny_conv_model: Path, image_folder: Path, convention: str) -> None:
    code, report = _quantize(tiny_conv_model, image_folder, tmp_path, "--calib-count", "4", "--eval-count", "4",
                             "--precision", "fp32", "--convention", convention, "--min-fidelity", "0")
    assert code == EXIT_OK and report["input"]["convention"] == convention
    assert report["layout"]["family"] == "yolox"


@requires_int8_calibration
def test_no_ranking_when_int8_meets_the_goal(tmp_path: Path, tiny_conv_model: Path, image_folder: Path) -> None:
    code, report = _quantize(tiny_conv_model, image_folder, tmp_path, "--calib-count", "8", "--eval-count", "8",
                             "--min-fidelity", "0.5")
    assert code == EXIT_OK and report["excluded_nodes"] == [] and report["int8_conv_mac_share"] == 1.0
    assert report["search"]["ranking"] == [] and len(report["search"]["steps"]) == 1


def test_fidelity_leaves_out_boxes_of_no_area() -> None:
    # An NMS-free head can emit an inverted box (x2 < x1): IoU 0 even with itself, so as ground truth it
    # would cap a model's fidelity against its own outputs below 1.
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = (10, 10, 50, 60, 0.9, 0)
    rows[0, 1] = (80, 20, 70, 40, 0.8, 1)  # inverted
    rows[0, 2] = (100, 100, 140, 100, 0.7, 1)  # no height
    rows[0, 3] = (100, 100, 140, 130, 0.6, 1)
    meter = FidelityMeter(DetectionModelSpec("end2end", 2, 320, 320), [rows])
    assert meter.reference_detection_count == 2
    assert meter.score([rows])["map50_95"] == 1.0
