"""Preprocessing folded into the ONNX graph gives the same network outputs as host preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.inference.fold_preprocessing import fold_preprocessing
from streamd.inference.onnxruntime_backend import OnnxRuntimeBackend
from streamd.yolox.preprocess import LEGACY, RTDETR, ULTRALYTICS, YOLOX, Convention, Preprocessor
from tests.support import YOLOX_NANO, require_shared


def conv_model(path: Path, size: int = 32) -> Path:
    """A 3x3 conv with fixed random weights: any channel mix-up or scale error shows in its output."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    weights = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["output"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, size, size])],
        initializer=[numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def outputs_both_ways(model_path: Path, convention: Convention, size: int, output: str = "output"
                      ) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    preprocessor = Preprocessor(convention, size, size)
    plain = OnnxRuntimeBackend(model_path, threads=1)
    folded = OnnxRuntimeBackend(model_path, threads=1, model_bytes=fold_preprocessing(model_path, convention))
    assert folded.inputs[0].dtype == np.uint8 and folded.inputs[0].shape == (1, size, size, 3)
    network_input, _ = preprocessor(image)
    expected = plain.infer({plain.inputs[0].name: network_input})[output]
    canvas, _ = preprocessor.letterbox(image)
    got = folded.infer({folded.inputs[0].name: canvas[None]})[output]
    return expected, got


@pytest.mark.parametrize("convention", [YOLOX, LEGACY, ULTRALYTICS, RTDETR], ids=lambda c: c.name)
def test_folded_conv_model_matches_host_preprocessing(tmp_path: Path, convention: Convention) -> None:
    expected, got = outputs_both_ways(conv_model(tmp_path / "conv.onnx"), convention, 32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_folded_yolox_nano_matches_host_preprocessing() -> None:
    require_shared(YOLOX_NANO)
    expected, got = outputs_both_ways(YOLOX_NANO, YOLOX, 416)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_folded_yolov8n_export_matches_host_preprocessing() -> None:
    from tests.yolox.ultralytics_models import YOLOV8N  # noqa: PLC0415

    require_shared(YOLOV8N)
    expected, got = outputs_both_ways(YOLOV8N, ULTRALYTICS, 640, output="output0")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_models_that_cannot_be_folded_are_left_alone(tmp_path: Path) -> None:
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "dyn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "dyn.onnx")
    assert fold_preprocessing(tmp_path / "dyn.onnx", YOLOX) is None
