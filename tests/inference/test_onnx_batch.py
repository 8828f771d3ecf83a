"""The batch edit: yolox_nano made batch-dynamic equals the batch-1 model frame by frame (ONNX Runtime, CPU)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from streamd.errors import BackendError
from streamd.inference.onnx_batch import batch_dynamic_copy, make_batch_dynamic
from tests.support import SHARED, YOLOX_NANO, require_shared

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    require_shared(YOLOX_NANO)
    return batch_dynamic_copy(YOLOX_NANO, tmp_path_factory.mktemp("batch"))


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_batched_outputs_equal_batch_one_frame_by_frame(dynamic_model):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 3, 416, 416)).astype(np.float32)
    single = _session(YOLOX_NANO)
    batched = _session(dynamic_model)
    assert batched.get_inputs()[0].shape[0] == "batch"
    outputs = batched.run(None, {"images": frames})[0]
    assert outputs.shape == (4, 3549, 85)
    for index in range(4):
        expected = single.run(None, {"images": frames[index:index + 1]})[0]
        np.testing.assert_allclose(outputs[index:index + 1], expected, rtol=0, atol=1e-5)
    one = batched.run(None, {"images": frames[:1]})[0]
    assert one.shape == (1, 3549, 85)


def test_reshape_shapes_keep_the_input_batch(dynamic_model):
    model = onnx.load(str(dynamic_model))
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    shapes = [initializers[n.input[1]].tolist() for n in model.graph.node if n.op_type == "Reshape"]
    assert shapes == [[0, 85, -1]] * 3


def test_already_dynamic_model_is_left_alone(dynamic_model):
    model = onnx.load(str(dynamic_model))
    assert make_batch_dynamic(model) == model


def test_computed_batch_is_refused():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [2])
    graph = helper.make_graph([helper.make_node("Shape", ["x"], ["y"], name="shape_of_x")], "g", [x], [y])
    with pytest.raises(BackendError, match="shape_of_x"):
        make_batch_dynamic(helper.make_model(graph))


def test_yolo26n_end2end_batched_equals_batch_one_frame_by_frame():
    """Its head expands TopK indices with [1, 1, 80] and [1, 1, 4]: broadcasting keeps the batch."""
    path = SHARED / "models" / "ultralytics" / "yolo26n_end2end.onnx"
    require_shared(path)
    model = make_batch_dynamic(onnx.load(str(path)))
    onnx.checker.check_model(model)
    frames = np.random.default_rng(0).random((3, 3, 640, 640), dtype=np.float32)
    outputs = _session_of(model).run(None, {"images": frames})[0]
    assert outputs.shape == (3, 300, 6)
    single = _session(path)
    for index in range(3):
        expected = single.run(None, {"images": frames[index:index + 1]})[0]
        np.testing.assert_allclose(outputs[index:index + 1], expected, rtol=0, atol=1e-5)


def _session_of(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _expand_model(shape, data_is_constant=False):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    initializers = [onnx.numpy_helper.from_array(np.array(shape, np.int64), "shape"),
                    onnx.numpy_helper.from_array(np.zeros((1, 4, 1), np.float32), "constant")]
    nodes = [helper.make_node("Expand", ["constant" if data_is_constant else "x", "shape"], ["e"], name="the_expand"),
             helper.make_node("Add", ["e", "x"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializers))


def test_expand_keeping_the_batch_is_accepted_and_others_refused():
    assert make_batch_dynamic(_expand_model([1, 1, 3])).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert make_batch_dynamic(_expand_model([2, 1, 1, 3]))  # the input's batch faces the 1 at position 1
    with pytest.raises(BackendError, match="the_expand.*facing the batch"):
        make_batch_dynamic(_expand_model([2, 4, 3]))
    with pytest.raises(BackendError, match="the_expand expands a constant"):
        make_batch_dynamic(_expand_model([1, 1, 3], data_is_constant=True))


def test_gather_elements_with_constant_indices_is_refused():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    indices = onnx.numpy_helper.from_array(np.zeros((1, 2), np.int64), "indices")
    node = helper.make_node("GatherElements", ["x", "indices"], ["y"], name="the_gather", axis=1)
    with pytest.raises(BackendError, match="the_gather"):
        make_batch_dynamic(helper.make_model(helper.make_graph([node], "g", [x], [y], [indices])))
