"""The stand-in engine's ONNX interpreter (tests/gpu/standin_engine.py) on CPU torch equals ONNX Runtime.

The GPU tests run the interpreter inside CUDA graphs; these check its arithmetic where there is no GPU:
Ultralytics YOLOv8n and the YOLO26n end-to-end export on real letterboxed pictures at batch 1 and, made
batch-dynamic, at batch 3 (each image against ONNX Runtime at batch 1), and a small batch-dynamic graph
with RT-DETR's operators and shape arithmetic (Shape, Gather, Range and Tile on the batch) at batch 1 and 3.
Skipped without torch.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamd.errors import BackendError
from streamd.inference.onnx_batch import make_batch_dynamic
from streamd.yolox.preprocess import ULTRALYTICS, preprocess
from tests.support import DOG, SHARED, require_shared

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from tests.gpu.standin_engine import _interpreter_class  # noqa: E402 - needs torch

ULTRALYTICS_DIR = SHARED / "models" / "ultralytics"
CALIBRATION = SHARED / "calib" / "coco_val2017_100"
PICKS = 40  # the TopK of the graph below: more than its 32 unmasked scores, so it picks among exact ties


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _interpret(model, frames: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _interpreter_class()(model).eval()(torch.from_numpy(frames)).numpy()


def _pictures() -> np.ndarray:
    paths = [DOG, *sorted(CALIBRATION.glob("*.jpg"))[:2]]
    require_shared(*paths)
    return np.concatenate([preprocess(cv2.imread(str(path)), ULTRALYTICS, 640, 640)[0] for path in paths])


@pytest.mark.parametrize("name", ["yolov8n.onnx", "yolo26n_end2end.onnx"])
def test_ultralytics_exports_equal_onnx_runtime_at_batch_one_and_three(name: str) -> None:
    path = ULTRALYTICS_DIR / name
    require_shared(path)
    frames = _pictures()
    session = _session(path)
    expected = [session.run(None, {"images": frames[i:i + 1]})[0] for i in range(len(frames))]
    model = onnx.load(str(path))
    for index in range(len(frames)):
        np.testing.assert_allclose(_interpret(model, frames[index:index + 1]), expected[index], rtol=0, atol=2e-4)
    batched = _interpret(make_batch_dynamic(model), frames)
    assert batched.shape[0] == len(frames)
    for index in range(len(frames)):
        np.testing.assert_allclose(batched[index:index + 1], expected[index], rtol=0, atol=2e-4)


def _constant(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _detr_like_model() -> onnx.ModelProto:
    """RT-DETR's decoder patterns on a batch-dynamic [N, 4, 8, 8] input: shapes taken from the data, a TopK
    with exact ties, per-image offsets from Range(0, N) into a flattened batch, GridSample at the picks."""
    rng = np.random.default_rng(0)
    node = helper.make_node
    initializers = [
        _constant("i0", np.array(0, np.int64)), _constant("i1", np.array(1, np.int64)),
        _constant("axis0", np.array([0], np.int64)), _constant("axis_last", np.array([-1], np.int64)),
        _constant("axis2", np.array([2], np.int64)), _constant("minus1", np.array([-1], np.int64)),
        _constant("c64", np.array([64], np.int64)), _constant("c8", np.array([8], np.int64)),
        _constant("c4", np.array([4], np.int64)), _constant("picks_count", np.array([PICKS], np.int64)),
        _constant("c1", np.array([1], np.int64)), _constant("c2", np.array([2], np.int64)),
        _constant("k", np.array([PICKS], np.int64)), _constant("tile", np.array([1, PICKS], np.int64)),
        _constant("stride", np.array([64], np.int64)), _constant("expand", np.array([1, 1, 8], np.int64)),
        _constant("ln_scale", rng.normal(size=4).astype(np.float32)),
        _constant("ln_bias", rng.normal(size=4).astype(np.float32)),
        _constant("w", rng.normal(size=(8, 4)).astype(np.float32)),
        _constant("b", rng.normal(size=8).astype(np.float32)),
        _constant("mask", (np.arange(64) % 2).astype(np.float32).reshape(1, 64)),  # zeros: exact TopK ties
        _constant("mm", rng.normal(size=(8, 8)).astype(np.float32)),
        _constant("pads", np.array([0, 0, 0, 1, 0, 0, 0, 2], np.int64)),
        _constant("lo", np.array(1e-5, np.float32)), _constant("hi", np.array(1.0, np.float32)),
        _constant("two", np.array(2.0, np.float32)), _constant("one", np.array(1.0, np.float32)),
        _constant("three", np.array(3, np.int64)), _constant("false", np.array(False)),
        _constant("slice_start", np.array([0], np.int64)), _constant("slice_end", np.array([2], np.int64)),
    ]
    nodes = [
        node("Shape", ["x"], ["shape"]), node("Gather", ["shape", "i0"], ["n"], axis=0),
        node("Unsqueeze", ["n", "axis0"], ["n1"]),
        node("Concat", ["n1", "c4", "minus1"], ["flat_shape"], axis=0),
        node("Reshape", ["x", "flat_shape"], ["flat"]), node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
        node("LayerNormalization", ["tokens", "ln_scale", "ln_bias"], ["normed"], axis=-1, epsilon=1e-5),
        node("Flatten", ["normed"], ["rows"], axis=2),
        node("Gemm", ["rows", "w", "b"], ["projected"], transB=1),
        node("Concat", ["n1", "c64", "c8"], ["feature_shape"], axis=0),
        node("Reshape", ["projected", "feature_shape"], ["features"]),
        node("ReduceMax", ["features"], ["best"], axes=[-1], keepdims=0),
        node("Relu", ["best"], ["positive"]), node("Mul", ["positive", "mask"], ["scores"]),
        node("TopK", ["scores", "k"], ["top", "picks"], axis=1),
        node("Range", ["i0", "n", "i1"], ["images"]), node("Unsqueeze", ["images", "minus1"], ["column"]),
        node("Tile", ["column", "tile"], ["tiled"]), node("Reshape", ["tiled", "minus1"], ["image_of_pick"]),
        node("Mul", ["image_of_pick", "stride"], ["offsets"]),
        node("Reshape", ["picks", "minus1"], ["flat_picks"]), node("Add", ["flat_picks", "offsets"], ["rows_of"]),
        node("Flatten", ["features"], ["feature_rows"], axis=2),
        node("Gather", ["feature_rows", "rows_of"], ["gathered"], axis=0),
        node("Concat", ["n1", "picks_count", "minus1"], ["pick_shape"], axis=0),
        node("Reshape", ["gathered", "pick_shape"], ["picked"]),
        node("Unsqueeze", ["picks", "axis2"], ["picks3"]), node("Expand", ["picks3", "expand"], ["picks8"]),
        node("GatherElements", ["features", "picks8"], ["picked_again"], axis=1),
        node("Add", ["picked", "picked_again"], ["query"]), node("MatMul", ["query", "mm"], ["mixed"]),
        node("Sigmoid", ["mixed"], ["unit"]), node("Clip", ["unit", "lo", "hi"], ["clipped"]),
        node("Log", ["clipped"], ["logged"]), node("Erf", ["logged"], ["erf"]),
        node("Slice", ["clipped", "slice_start", "slice_end", "axis_last"], ["xy"]),
        node("Mul", ["xy", "two"], ["xy2"]), node("Sub", ["xy2", "one"], ["grid_flat"]),
        node("Concat", ["n1", "picks_count", "c1", "c2"], ["grid_shape"], axis=0),
        node("Reshape", ["grid_flat", "grid_shape"], ["grid"]),
        node("Pad", ["x", "pads"], ["padded"], mode="constant"),
        node("GridSample", ["padded", "grid"], ["sampled"], align_corners=0, mode="bilinear", padding_mode="zeros"),
        node("Squeeze", ["sampled", "axis_last"], ["sampled3"]), node("Transpose", ["sampled3"], ["per_pick"],
                                                                      perm=[0, 2, 1]),
        node("ReduceSum", ["per_pick", "axis_last"], ["summed"], keepdims=1),
        node("Mod", ["picks", "three"], ["remainder"], fmod=0), node("Div", ["picks", "three"], ["quotient"]),
        node("Equal", ["remainder", "i0"], ["divisible"]), node("Not", ["divisible"], ["odd"]),
        node("Less", ["picks", "i0"], ["negative"]), node("Xor", ["negative", "false"], ["negative2"]),
        node("And", ["odd", "negative2"], ["both"]), node("Where", ["both", "remainder", "quotient"], ["chosen"]),
        node("Cast", ["chosen"], ["chosen_float"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["chosen_float", "axis2"], ["chosen3"]), node("Unsqueeze", ["top", "axis2"], ["top3"]),
        node("Concat", ["mixed", "erf", "summed", "chosen3", "top3"], ["output"], axis=2),
    ]
    graph = helper.make_graph(nodes, "detr_like",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", PICKS, 19])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_detr_like_graph_equals_onnx_runtime_at_batch_one_and_three() -> None:
    model = _detr_like_model()
    frames = np.random.default_rng(1).normal(size=(3, 4, 8, 8)).astype(np.float32)
    session = _session(model)
    batched = _interpret(model, frames)
    assert batched.shape == (3, PICKS, 8 + 8 + 1 + 1 + 1)
    assert (batched[:, :, -1] == 0).sum() >= 3 * (PICKS - 32)  # the masked scores: tied picks, lower index first
    np.testing.assert_allclose(batched, session.run(None, {"x": frames})[0], rtol=0, atol=1e-5)
    for index in range(len(frames)):
        expected = session.run(None, {"x": frames[index:index + 1]})[0]
        np.testing.assert_allclose(_interpret(model, frames[index:index + 1]), expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(batched[index:index + 1], expected, rtol=0, atol=1e-5)


def test_shape_arithmetic_is_folded_when_the_model_loads() -> None:
    interpreter = _interpreter_class()(_detr_like_model())
    run = {name for _, _, outputs in interpreter.steps for name in outputs}
    # Shape, Gather, Unsqueeze and Concat on shapes: folded, none of them is left for the forward
    assert not run & {"shape", "n", "n1", "flat_shape", "feature_shape", "pick_shape", "grid_shape"}
    assert "images" in run  # Range(0, N): its length follows the batch, so it runs (torch.arange on the device)
    # the Reshape shapes [N, PICKS, -1] are evaluated from the input's batch at each forward
    assert any(spec[0] == "batch" for _, specs, _ in interpreter.steps for spec in specs)


def _single_node_model(node, inputs, output_shape=None, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph([node], "one",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, output_shape)],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_unsupported_operator_is_refused_by_name() -> None:
    model = _single_node_model(helper.make_node("Selu", ["x"], ["y"], name="the_selu"), [("x", [1, 4])])
    with pytest.raises(BackendError, match="Selu.*the_selu"):
        _interpreter_class()(model)


def test_an_unsupported_attribute_is_refused_by_name() -> None:
    model = _single_node_model(helper.make_node("Resize", ["x", "", "scales"], ["y"], name="the_resize",
                                                mode="linear"),
                               [("x", [1, 1, 4, 4])], initializers=[_constant("scales", np.float32([1, 1, 2, 2]))])
    with pytest.raises(BackendError, match="the_resize.*mode linear"):
        _interpreter_class()(model)
    model = _single_node_model(helper.make_node("TopK", ["x", "k"], ["y", "i"], name="the_topk", fancy=1),
                               [("x", [1, 4])], initializers=[_constant("k", np.int64([2]))])
    with pytest.raises(BackendError, match="fancy.*the_topk"):
        _interpreter_class()(model)


def test_a_shape_read_from_the_image_values_is_refused() -> None:
    nodes = [helper.make_node("Cast", ["x"], ["as_int"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "as_int"], ["y"], name="data_shaped")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(BackendError, match="data_shaped.*computed from the image"):
        _interpreter_class()(model)
