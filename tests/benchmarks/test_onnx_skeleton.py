"""benchmarks/onnx_skeleton.py: a model stripped to its skeleton and restored has the original's graph,
metadata and initializer shapes and dtypes, weights of the recorded statistics, and runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.onnx_skeleton import SKELETON_KEY, main, restore, strip
from tests.support import YOLOX_NANO, require_shared


def _run(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 1 for dim in feed.shape]
    return session.run(None, {feed.name: np.random.default_rng(0).random(shape, dtype=np.float32)})


def _without_data(model: onnx.ModelProto) -> onnx.GraphProto:
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    for tensor in graph.initializer:
        for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data"):
            tensor.ClearField(field)
    return graph


def test_strip_and_restore_keep_the_graph_and_the_weight_statistics(tmp_path: Path) -> None:
    require_shared(YOLOX_NANO)
    skeleton_path, restored_path = tmp_path / "nano.skeleton.onnx", tmp_path / "nano.onnx"
    assert main(["strip", str(YOLOX_NANO), str(skeleton_path)]) == 0
    assert main(["restore", str(skeleton_path), str(restored_path), "--seed", "3"]) == 0
    assert skeleton_path.stat().st_size < YOLOX_NANO.stat().st_size / 20
    original, restored = onnx.load(str(YOLOX_NANO)), onnx.load(str(restored_path))
    assert _without_data(restored) == _without_data(original)
    assert list(restored.metadata_props) == list(original.metadata_props)
    assert restored.opset_import == original.opset_import
    record = json.loads({e.key: e.value for e in onnx.load(str(skeleton_path)).metadata_props}[SKELETON_KEY])
    replaced = record["tensors"]
    assert len(replaced) > 50
    for before, after in zip(original.graph.initializer, restored.graph.initializer):
        old, new = numpy_helper.to_array(before), numpy_helper.to_array(after)
        assert (new.shape, new.dtype) == (old.shape, old.dtype)
        if before.name not in replaced:
            np.testing.assert_array_equal(new, old)
            continue
        assert old.nbytes >= 1024 and not np.array_equal(new, old)
        old, new = old.astype(np.float64), new.astype(np.float64)
        assert abs(new.mean() - old.mean()) <= 0.05 * old.std() + 1e-6
        assert abs(new.std() - old.std()) <= 0.05 * old.std() + 1e-6
        assert old.min() <= new.min() and new.max() <= old.max()
    outputs_before, outputs_after = _run(YOLOX_NANO), _run(restored_path)
    assert [o.shape for o in outputs_after] == [o.shape for o in outputs_before]
    assert all(np.isfinite(o).all() for o in outputs_after)


def _small_model(weight: np.ndarray) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Reshape", ["y", "shape"], ["out"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, weight.shape[0]])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2 * weight.shape[1]])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([-1], np.int64), "shape")])
    return helper.make_model(graph)


def test_restore_is_seeded_and_keeps_small_integer_and_non_finite_tensors() -> None:
    weight = np.random.default_rng(1).normal(0.5, 2.0, (64, 32)).astype(np.float16)
    skeleton, count, removed = strip(_small_model(weight))
    assert (count, removed) == (1, weight.nbytes)
    assert skeleton.ByteSize() < weight.nbytes
    first, second, other = restore(skeleton, 7)[0], restore(skeleton, 7)[0], restore(skeleton, 8)[0]
    assert first == second and first != other
    values = numpy_helper.to_array(first.graph.initializer[0])
    assert values.dtype == np.float16 and values.shape == weight.shape
    np.testing.assert_array_equal(numpy_helper.to_array(first.graph.initializer[1]), [-1])
    with pytest.raises(ValueError, match="already a skeleton"):
        strip(skeleton)
    with pytest.raises(ValueError, match="not a skeleton"):
        restore(first)
    constant = restore(strip(_small_model(np.full((64, 32), 0.25, np.float32)))[0], 5)[0]
    np.testing.assert_array_equal(numpy_helper.to_array(constant.graph.initializer[0]), 0.25)
    mask = (np.arange(64 * 32).reshape(64, 32) % 3 == 0).astype(np.float32)  # a constant, not a weight: kept
    assert strip(_small_model(mask))[1:] == (0, 0)
    weight[0, 0] = np.inf  # likewise masked anchors
    assert strip(_small_model(weight))[1:] == (0, 0)
    assert strip(_small_model(weight[:8, :8].astype(np.float32)))[1:] == (0, 0)  # 256 bytes: kept
