"""TensorRT backend against the strict stand-in (CPU, every CI run), and against real TensorRT where it imports."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamd.errors import BackendError
from streamd.inference.registry import BackendOptions
from streamd.inference.tensorrt_backend import TensorRTBackend, TensorRTEngine, open_backend
from streamd.inference.tensorrt_build import EngineCache, build_engine, ensure_engine, onnx_input_profile
from tests.inference import tensorrt_standin as standin

IO = {
    "images": {"mode": "input", "shape": [-1, 3, 4, 4], "dtype": "FLOAT", "profile": [[1, 3, 4, 4], [1, 3, 4, 4],
                                                                                    [4, 3, 4, 4]]},
    "output": {"mode": "output", "shape": [-1, 5, 2], "dtype": "FLOAT"},
}


def write_onnx(path: Path, batch: int | str = "batch", dtype: int = TensorProto.FLOAT) -> Path:
    node = helper.make_node("Identity", ["images"], ["output"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", dtype, [batch, 3, 4, 4])],
                              [helper.make_tensor_value_info("output", dtype, [batch, 3, 4, 4])])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.fixture(params=["10.9.0", "11.4.1"])
def trt(request):
    return standin.make_module(request.param)


def test_infer_binds_by_name_and_moves_data(trt) -> None:
    cuda = standin.host_cuda()
    backend = TensorRTBackend(standin.serialize_engine(IO), trt=trt, cuda=cuda)
    assert [s.name for s in backend.inputs] == ["images"]
    assert backend.inputs[0].shape == (None, 3, 4, 4) and backend.outputs[0].dtype == np.float32
    batch = np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32)
    out = backend.infer({"images": batch})["output"]
    assert out.shape == (2, 5, 2)
    np.testing.assert_array_equal(out.reshape(2, -1), 2 * batch.reshape(2, -1)[:, :10] + 1)
    calls = [c[0] for c in backend.engine._engine.calls]
    # shapes first, then every I/O address, then execute: the real API's order.
    assert calls == ["set_input_shape", "set_tensor_address", "set_tensor_address", "execute_async_v3"]
    # Copies and execute are queued on the backend's one stream, and it is synchronised before results
    # are read (the stand-in runs queued work only at the synchronise).
    stream = backend._stream.ptr
    assert [c[:2] for c in cuda.log] == [("copy_htod", stream), ("execute_async_v3", stream),
                                         ("copy_dtoh", stream), ("synchronize", stream)]
    backend.infer({"images": batch})  # unchanged shapes and addresses are not set again
    assert [c[0] for c in backend.engine._engine.calls][4:] == ["execute_async_v3"]
    backend.close()
    backend.close()  # idempotent


def test_infer_stages_each_tensor_in_the_engines_dtype(trt) -> None:
    """A float16 engine: the backend stages float16 (the stand-in refuses an input buffer of another dtype)."""
    io = {"images": {**IO["images"], "dtype": "HALF"}, "output": {**IO["output"], "dtype": "HALF"}}
    backend = TensorRTBackend(standin.serialize_engine(io), trt=trt, cuda=standin.host_cuda())
    out = backend.infer({"images": np.full((1, 3, 4, 4), 0.5, np.float32)})["output"]
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.full((1, 5, 2), 2.0, np.float16))
    backend.close()


def test_shape_outside_profile_names_tensor(trt) -> None:
    backend = TensorRTBackend(standin.serialize_engine(IO), trt=trt, cuda=standin.host_cuda())
    with pytest.raises(BackendError, match="set_input_shape\\('images'"):
        backend.infer({"images": np.zeros((9, 3, 4, 4), np.float32)})


def test_missing_address_is_an_error_naming_the_tensor(trt) -> None:
    engine = TensorRTEngine(trt, standin.serialize_engine(IO))
    with pytest.raises(BackendError, match="'output'"):
        engine.enqueue({"images": 0x1000}, stream_ptr=1)


def test_execute_failure_is_raised(trt) -> None:
    """A null output address is accepted (for an output allocator) and then fails execute_async_v3."""
    engine = TensorRTEngine(trt, standin.serialize_engine(IO))
    engine.set_input_shapes({"images": (1, 3, 4, 4)})
    with pytest.raises(BackendError, match="execute_async_v3 failed"):
        engine.enqueue({"images": 0x1000, "output": 0}, stream_ptr=7)


def test_bad_engine_bytes(trt) -> None:
    with pytest.raises(BackendError, match="deserialize"):
        TensorRTEngine(trt, b"not an engine")


def test_standin_refuses_execute_before_addresses(trt) -> None:
    """The stand-in itself is strict: the contract the backend is tested against."""
    context = trt.Runtime(trt.Logger()).deserialize_cuda_engine(standin.serialize_engine(IO)).create_execution_context()
    assert context.set_input_shape("images", (1, 3, 4, 4))
    assert not context.execute_async_v3(0)
    assert not context.set_tensor_address("nope", 0x10)
    with pytest.raises(TypeError):
        context.set_tensor_address(b"images", 0x10)
    with pytest.raises(TypeError):
        context.execute_async_v3(None)


def test_build_and_cache(tmp_path: Path, trt, caplog) -> None:
    model = write_onnx(tmp_path / "m.onnx")
    cache = EngineCache(tmp_path / "cache")
    profile = onnx_input_profile(model, max_batch=4)
    assert profile == {"images": ((1, 3, 4, 4), (1, 3, 4, 4), (4, 3, 4, 4))}
    with caplog.at_level(logging.INFO):
        first = ensure_engine(trt, model, "fp32", profile, "GPU A", (9, 0), cache)
    assert trt.builds == 1 and "Building engine finished" in caplog.text
    assert ensure_engine(trt, model, "fp32", profile, "GPU A", (9, 0), cache) == first
    assert trt.builds == 1  # cache hit
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ensure_engine(trt, model, "fp32", profile, "GPU B", (8, 7), cache)
    assert trt.builds == 2 and "gpu_name" in caplog.text and "compute_capability" in caplog.text
    write_onnx(model, batch=1)  # the ONNX changed: its hash is in the key
    ensure_engine(trt, model, "fp32", onnx_input_profile(model, 4), "GPU B", (8, 7), cache)
    assert trt.builds == 3
    engine_path, _ = cache.paths(model, "fp32")
    engine_path.write_bytes(b"damaged")
    ensure_engine(trt, model, "fp32", onnx_input_profile(model, 4), "GPU B", (8, 7), cache)
    assert trt.builds == 4


def test_static_batch_profile_stays_one(tmp_path: Path, trt) -> None:
    model = write_onnx(tmp_path / "m.onnx", batch=1)
    assert onnx_input_profile(model, max_batch=8) == {"images": ((1, 3, 4, 4),) * 3}


def write_weighted_onnx(path: Path) -> Path:
    """``output = images * scale`` with a float32 weight, dynamic batch."""
    scale = numpy_helper.from_array(np.full((1,), 0.5, np.float32), "scale")
    node = helper.make_node("Mul", ["images", "scale"], ["output"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                          ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              initializer=[scale])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_precision_per_major_version(tmp_path: Path) -> None:
    model = write_onnx(tmp_path / "m.onnx")
    profile = {"images": ((1, 3, 4, 4), (1, 3, 4, 4), (1, 3, 4, 4))}
    ten = standin.make_module("10.9.0")
    build_engine(ten, model, "fp16", profile)  # weakly typed: the FP16 flag, no STRONGLY_TYPED
    assert ten.last_config.get_flag(ten.BuilderFlag.FP16) and ten.last_network_flags == 0
    assert ten.parsed_paths == [str(model)]
    build_engine(ten, model, "fp32", profile)
    assert ten.last_network_flags == 1 << int(ten.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert ten.last_config.flags == 0
    eleven = standin.make_module("11.4.1")
    build_engine(eleven, model, "fp32", profile)
    assert eleven.last_network_flags == 0  # always strongly typed; the deprecated flag is not passed
    half = write_onnx(tmp_path / "h.onnx", dtype=TensorProto.FLOAT16)
    build_engine(eleven, half, "fp16", profile)  # already float16: parsed as it is
    assert eleven.parsed_paths[-1] == str(half)
    with pytest.raises(BackendError, match="precision"):
        build_engine(ten, model, "int4", profile)
    with pytest.raises(BackendError, match="QuantizeLinear"):
        build_engine(ten, model, "int8", profile)


def test_fp16_on_trt11_builds_a_float16_network_with_float32_io(tmp_path: Path) -> None:
    """TensorRT 11 has no FP16 flag: the ONNX is converted to float16, inputs and outputs stay float32."""
    model = write_weighted_onnx(tmp_path / "m.onnx")
    eleven = standin.make_module("11.4.1")
    profile = onnx_input_profile(model, max_batch=2)
    engine = build_engine(eleven, model, "fp16", profile)
    assert eleven.last_network_flags == 0 and eleven.last_config.flags == 0
    assert eleven.parsed_paths[-1] != str(model)  # the converted copy was parsed
    network = eleven.last_network
    assert network.weight_dtypes["scale"] == eleven.DataType.HALF
    assert [t.dtype for t in network.inputs] == [eleven.DataType.FLOAT]
    assert [t.dtype for t in network.outputs] == [eleven.DataType.FLOAT]
    assert not Path(eleven.parsed_paths[-1]).exists()  # the temporary conversion is gone
    # The daemon's host backend runs it with float32 buffers; the cache key is the original ONNX's.
    backend = TensorRTBackend(engine, trt=eleven, cuda=standin.host_cuda())
    assert backend.inputs[0].dtype == np.float32 and backend.outputs[0].dtype == np.float32
    backend.close()
    cache = EngineCache(tmp_path / "cache")
    ensure_engine(eleven, model, "fp16", profile, "GPU", (9, 0), cache)
    assert cache.paths(model, "fp16")[0].is_file()


def test_standin_refuses_precision_flags_on_strongly_typed_networks(tmp_path: Path) -> None:
    """The stand-in, like TensorRT 10, refuses FP16 on a STRONGLY_TYPED network; the builder never asks."""
    ten = standin.make_module("10.9.0")
    builder = ten.Builder(ten.Logger())
    network = builder.create_network(1 << int(ten.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = builder.create_builder_config()
    config.set_flag(ten.BuilderFlag.FP16)
    config.add_optimization_profile(builder.create_optimization_profile())
    assert builder.build_serialized_network(network, config) is None
    eleven = standin.make_module("11.4.1")
    assert eleven.Builder(eleven.Logger()).create_network(1 << 3) is None  # 11 defines bits 0..2 only


def test_build_failures_name_what_failed(tmp_path: Path, trt) -> None:
    model = write_onnx(tmp_path / "m.onnx")
    profile = {"images": ((1, 3, 4, 4),) * 3}
    with pytest.raises(BackendError, match="cannot parse .*broken.onnx"):
        build_engine(trt, (tmp_path / "broken.onnx"), "fp32", profile)
    with pytest.raises(BackendError, match="no input profile for tensor 'images'"):
        build_engine(trt, model, "fp32", {"other": ((1,), (1,), (1,))})
    # TensorRT's set_shape raises RuntimeError (min > opt) or TypeError (a float) naming nothing: the
    # builder names the tensor and the shapes (the permissive stand-in used to build these).
    with pytest.raises(BackendError, match="set_shape\\('images', min=\\(4, 3, 4, 4\\).*inconsistent"):
        build_engine(trt, model, "fp32", {"images": ((4, 3, 4, 4), (1, 3, 4, 4), (1, 3, 4, 4))})
    with pytest.raises(BackendError, match="set_shape\\('images'.*incompatible function arguments"):
        build_engine(trt, model, "fp32", {"images": ((1.0, 3, 4, 4),) * 3})
    trt.Builder.build_serialized_network = lambda self, network, config: None
    with pytest.raises(BackendError, match="failed to build the fp32 engine from .*m.onnx"):
        build_engine(trt, model, "fp32", profile)


def test_closed_engine_refuses_enqueue(trt) -> None:
    engine = TensorRTEngine(trt, standin.serialize_engine(IO))
    engine.close()
    with pytest.raises(BackendError, match="closed"):
        engine.enqueue({"images": 0x1000, "output": 0x2000}, stream_ptr=1)


def test_open_backend_from_onnx(tmp_path: Path, trt) -> None:
    model = write_onnx(tmp_path / "m.onnx")
    options = BackendOptions(str(model), extra={"engine_cache_dir": str(tmp_path / "cache"), "max_batch": 2})
    backend = open_backend(options, trt=trt, cuda=standin.host_cuda())
    out = backend.infer({"images": np.ones((2, 3, 4, 4), np.float32)})["output"]
    np.testing.assert_array_equal(out, np.full((2, 3, 4, 4), 3, np.float32))
    backend.close()


def test_missing_tensorrt_is_a_clear_error(monkeypatch) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendError, match="TensorRT Python package"):
        open_backend(BackendOptions("model.engine"))


@pytest.mark.gpu
def test_real_tensorrt(tmp_path: Path) -> None:
    """The same calls against real TensorRT, wherever it imports (never on the development machines)."""
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt is not installed: TensorRT cannot be installed on the CI or GPU machines")
    model = write_onnx(tmp_path / "m.onnx")
    options = BackendOptions(str(model), extra={"engine_cache_dir": str(tmp_path / "cache"), "max_batch": 2})
    backend = open_backend(options)
    batch = np.random.default_rng(1).random((2, 3, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(backend.infer({"images": batch})["output"], batch)
    backend.close()
