"""The batch edit: yolox_nano made batch-dynamic equals the batch-1 model frame by frame (ONNX Runtime, CPU)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from streamd.errors import BackendError
from streamd.inference.onnx_batch import batch_dynamic_copy, make_batch_dynamic
from tests.support import YOLOX_NANO, require_shared

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
