"""The TensorRT stand-in refuses what real TensorRT refuses, the way TensorRT refuses it.

One test per misuse: TypeError where pybind11 rejects an argument, AttributeError for what the
version does not have, False / None / -1 where TensorRT reports failure by its return value,
RuntimeError where the Python bindings raise it. Sources for each behaviour: the stand-in's
docstring. What a real GPU would turn into corrupt data or an illegal access (buffer sizes, dtypes,
reading results before the stream is synchronised) raises ``MemoryMisuseError`` or leaves the output
unwritten, so a test of the caller fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamd.inference.tensorrt_backend import TensorRTBackend
from tests.inference import tensorrt_standin as standin

TEN, ELEVEN = "10.9.0", "11.4.1"
SHAPE = (1, 3, 4, 4)
IO = {"images": {"mode": "input", "shape": [-1, 3, 4, 4], "dtype": "FLOAT",
                 "profile": [[1, 3, 4, 4], [1, 3, 4, 4], [4, 3, 4, 4]]},
      "output": {"mode": "output", "shape": [-1, 5, 2], "dtype": "FLOAT"}}


@pytest.fixture(params=[TEN, ELEVEN])
def trt(request):
    return standin.make_module(request.param)


def builder_parts(trt):
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    return builder, builder.create_builder_config(), builder.create_optimization_profile()


def context_of(trt, io=IO):
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(standin.serialize_engine(io))
    return engine, engine.create_execution_context()


# ---- flags and enums -------------------------------------------------------------------------------------

def test_set_flag_refuses_an_int_or_another_enum(trt) -> None:
    _, config, _ = builder_parts(trt)
    with pytest.raises(TypeError):
        config.set_flag(int(trt.BuilderFlag.TF32))
    with pytest.raises(TypeError):
        config.set_flag(trt.MemoryPoolType.WORKSPACE)
    config.set_flag(trt.BuilderFlag.TF32)
    assert config.get_flag(trt.BuilderFlag.TF32)


def test_memory_pool_limit_refuses_a_name_for_the_pool(trt) -> None:
    _, config, _ = builder_parts(trt)
    with pytest.raises(TypeError):
        config.set_memory_pool_limit("WORKSPACE", 1 << 20)
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1.5e9)


def test_precision_flags_exist_on_10_only() -> None:
    ten, eleven = standin.make_module(TEN), standin.make_module(ELEVEN)
    assert ten.BuilderFlag.FP16 and ten.BuilderFlag.INT8
    for name in ("FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS"):
        with pytest.raises(AttributeError):
            getattr(eleven.BuilderFlag, name)


def test_explicit_batch_is_deprecated_on_10_and_gone_on_11() -> None:
    ten, eleven = standin.make_module(TEN), standin.make_module(ELEVEN)
    flag = ten.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    assert ten.Builder(ten.Logger()).create_network(1 << int(flag)) is not None  # accepted, ignored
    with pytest.raises(AttributeError):
        eleven.NetworkDefinitionCreationFlag.EXPLICIT_BATCH  # noqa: B018
    assert int(eleven.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0  # renumbered, deprecated, ignored


def test_create_network_refuses_undefined_bits_and_non_uint32(trt) -> None:
    builder, _, _ = builder_parts(trt)
    assert builder.create_network(1 << 20) is None
    for flags in (1.0, -1, "0", None):
        with pytest.raises(TypeError):
            builder.create_network(flags)


# ---- removed and unknown attributes ----------------------------------------------------------------------

@pytest.mark.parametrize("attribute", ["max_workspace_size", "max_batch_size", "workspace"])
def test_removed_config_attributes_cannot_be_assigned(trt, attribute) -> None:
    _, config, _ = builder_parts(trt)
    with pytest.raises(AttributeError):
        setattr(config, attribute, 1 << 30)


def test_builder_max_batch_size_cannot_be_assigned(trt) -> None:
    builder, _, _ = builder_parts(trt)
    with pytest.raises(AttributeError):
        builder.max_batch_size = 8


def test_platform_precision_queries_are_gone_on_11() -> None:
    assert builder_parts(standin.make_module(TEN))[0].platform_has_fast_fp16
    eleven, _, _ = builder_parts(standin.make_module(ELEVEN))
    with pytest.raises(AttributeError):
        eleven.platform_has_fast_fp16  # noqa: B018


def test_int8_calibrator_is_gone_on_11() -> None:
    eleven = standin.make_module(ELEVEN)
    _, config, _ = builder_parts(eleven)
    with pytest.raises(AttributeError):
        config.int8_calibrator = object()
    assert not hasattr(eleven, "IInt8EntropyCalibrator2")


def test_int8_calibrator_on_10_must_be_an_initialised_calibrator() -> None:
    ten = standin.make_module(TEN)
    _, config, _ = builder_parts(ten)
    with pytest.raises(TypeError):
        config.int8_calibrator = object()

    class Forgot(ten.IInt8EntropyCalibrator2):
        def __init__(self) -> None:  # does not call the base __init__, which pybind11 refuses
            pass

    with pytest.raises(TypeError):
        config.int8_calibrator = Forgot()

    class Calibrator(ten.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            ten.IInt8EntropyCalibrator2.__init__(self)

    config.int8_calibrator = Calibrator()


def test_progress_monitor_must_call_the_base_init(trt) -> None:
    _, config, _ = builder_parts(trt)

    class Forgot(trt.IProgressMonitor):
        def __init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        config.progress_monitor = Forgot()


def test_runtime_objects_take_no_new_attributes(trt) -> None:
    engine, context = context_of(trt)
    for target, name in ((engine, "max_batch_size"), (context, "active_optimization_profile_index"),
                         (trt.Logger(), "severity")):
        with pytest.raises(AttributeError):
            setattr(target, name, 1)


# ---- optimization profiles --------------------------------------------------------------------------------

@pytest.mark.parametrize(("minimum", "optimum", "maximum"), [
    ((4, 3, 4, 4), (4, 3, 4, 4), (1, 3, 4, 4)),  # min > max
    ((1, 3, 4, 4), (8, 3, 4, 4), (4, 3, 4, 4)),  # opt > max
    ((2, 3, 4, 4), (1, 3, 4, 4), (4, 3, 4, 4)),  # opt < min
    ((1, 3, 4, 4), (1, 3, 4), (1, 3, 4, 4)),  # ranks differ
    ((-1, 3, 4, 4), (1, 3, 4, 4), (4, 3, 4, 4)),  # dynamic in a profile
])
def test_inconsistent_profile_raises_runtime_error(trt, minimum, optimum, maximum) -> None:
    _, _, profile = builder_parts(trt)
    with pytest.raises(RuntimeError, match="inconsistent with other shapes"):
        profile.set_shape("images", minimum, optimum, maximum)


def test_profile_left_half_set_is_refused_with_minus_one(trt) -> None:
    """set_shape stored min before opt failed: the profile is invalid and add_optimization_profile says -1."""
    _, config, profile = builder_parts(trt)
    with pytest.raises(RuntimeError):
        profile.set_shape("images", (1, 3, 4, 4), (8, 3, 4, 4), (4, 3, 4, 4))
    assert config.add_optimization_profile(profile) == -1
    profile.set_shape("images", (1, 3, 4, 4), (1, 3, 4, 4), (4, 3, 4, 4))
    assert config.add_optimization_profile(profile) == 0


def test_add_optimization_profile_none_is_minus_one(trt) -> None:
    _, config, _ = builder_parts(trt)
    assert config.add_optimization_profile(None) == -1
    with pytest.raises(TypeError):
        config.add_optimization_profile({"images": (SHAPE,) * 3})


def test_profile_wider_than_a_static_dimension_fails_the_build(trt, tmp_path) -> None:
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(SHAPE))])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    builder, config, profile = builder_parts(trt)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(path))
    profile.set_shape("images", (1, 3, 4, 4), (1, 3, 4, 4), (4, 3, 4, 4))  # batch is static 1
    assert config.add_optimization_profile(profile) == 0
    assert builder.build_serialized_network(network, config) is None


# ---- shapes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1.0, 3, 4, 4), np.array([1.0, 3, 4, 4]), np.ones((2, 4), np.int64),
                                   4, "1,3,4,4", (1, 3, 4, None)])
def test_shape_that_is_not_a_sequence_of_ints_is_a_type_error(trt, shape) -> None:
    _, context = context_of(trt)
    _, _, profile = builder_parts(trt)
    with pytest.raises(TypeError):
        context.set_input_shape("images", shape)
    with pytest.raises(TypeError):
        profile.set_shape("images", shape, shape, shape)


def test_integer_sequences_are_dims(trt) -> None:
    """pybind11 converts any sequence of integers to Dims: a list or an integer numpy vector works."""
    _, context = context_of(trt)
    assert context.set_input_shape("images", [2, 3, 4, 4])
    assert context.set_input_shape("images", np.array([1, 3, 4, 4]))


@pytest.mark.parametrize(("name", "shape"), [("images", (9, 3, 4, 4)), ("images", (1, 3, 4)),
                                             ("output", (1, 5, 2)), ("nope", SHAPE)])
def test_set_input_shape_returns_false(trt, name, shape) -> None:
    _, context = context_of(trt)
    assert context.set_input_shape(name, shape) is False


# ---- addresses, execute ------------------------------------------------------------------------------------

def test_set_tensor_address_returns_false_or_raises(trt) -> None:
    _, context = context_of(trt)
    assert context.set_tensor_address("nope", 0x1000) is False
    assert context.set_tensor_address("images", 0) is False  # null input
    assert context.set_tensor_address("output", 0) is True  # null output: for an output allocator
    for address in (1.0e3, "0x1000", None):
        with pytest.raises(TypeError):
            context.set_tensor_address("images", address)
    with pytest.raises(TypeError):
        context.set_tensor_address(b"images", 0x1000)


def test_execute_returns_false_until_shapes_and_addresses_are_set(trt) -> None:
    cuda = standin.host_cuda()
    stream = cuda.Stream()
    _, context = context_of(trt)
    images, output = cuda.DeviceBuffer(4 * 48), cuda.DeviceBuffer(4 * 10)
    assert context.execute_async_v3(stream.ptr) is False  # nothing set
    assert context.set_tensor_address("images", images.ptr) and context.set_tensor_address("output", output.ptr)
    assert context.execute_async_v3(stream.ptr) is False  # no input shape
    assert context.set_input_shape("images", SHAPE)
    assert context.execute_async_v3(0xBAD) is False  # not a stream
    with pytest.raises(TypeError):
        context.execute_async_v3(float(stream.ptr))
    assert context.set_tensor_address("output", 0)
    assert context.execute_async_v3(stream.ptr) is False  # null output without an output allocator


def bound(trt, cuda, images_nbytes: int, output_nbytes: int):
    _, context = context_of(trt)
    images, output = cuda.DeviceBuffer(images_nbytes), cuda.DeviceBuffer(output_nbytes)
    assert context.set_input_shape("images", SHAPE)
    assert context.set_tensor_address("images", images.ptr) and context.set_tensor_address("output", output.ptr)
    return context, images, output


def test_buffer_too_small_for_the_tensor_is_refused(trt) -> None:
    cuda = standin.host_cuda()
    context, *buffers = bound(trt, cuda, 4 * 48, 4 * 10 - 1)  # output (1, 5, 2) float32 needs 40 bytes
    stream = cuda.Stream()
    with pytest.raises(standin.MemoryMisuseError, match="overrun"):
        context.execute_async_v3(stream.ptr)


def test_address_outside_any_buffer_or_freed_is_refused(trt) -> None:
    cuda = standin.host_cuda()
    context, images, _ = bound(trt, cuda, 4 * 48, 4 * 10)
    stream = cuda.Stream()
    images.free()
    with pytest.raises(standin.MemoryMisuseError, match="freed"):
        context.execute_async_v3(stream.ptr)
    pinned = cuda.PinnedBuffer((4 * 48,), np.uint8)
    assert context.set_tensor_address("images", pinned.ptr)
    with pytest.raises(standin.MemoryMisuseError, match="pinned memory"):
        context.execute_async_v3(stream.ptr)  # host memory bound as a device address


def test_input_of_another_dtype_is_refused_at_synchronize(trt) -> None:
    cuda = standin.host_cuda()
    context, images, _ = bound(trt, cuda, 4 * 48, 4 * 10)
    stream = cuda.Stream()
    host = cuda.PinnedBuffer((4 * 48,), np.uint8)
    host.view(SHAPE, np.float16)[...] = 1  # float16 staged for a float32 input
    cuda.copy_htod_async(images.ptr, host.ptr, 2 * 48, stream.ptr)
    assert context.execute_async_v3(stream.ptr)
    with pytest.raises(standin.MemoryMisuseError, match="float32"):
        stream.synchronize()


def test_input_never_written_is_refused(trt) -> None:
    cuda = standin.host_cuda()
    context, *buffers = bound(trt, cuda, 4 * 48, 4 * 10)
    stream = cuda.Stream()
    assert context.execute_async_v3(stream.ptr)
    with pytest.raises(standin.MemoryMisuseError, match="nothing written"):
        stream.synchronize()


def test_output_copied_into_a_view_of_another_dtype_is_refused(trt) -> None:
    cuda = standin.host_cuda()
    context, images, output = bound(trt, cuda, 4 * 48, 4 * 10)
    stream = cuda.Stream()
    host_in, host_out = cuda.PinnedBuffer((4 * 48,), np.uint8), cuda.PinnedBuffer((4 * 10,), np.uint8)
    host_in.view(SHAPE, np.float32)[...] = 1
    cuda.copy_htod_async(images.ptr, host_in.ptr, 4 * 48, stream.ptr)
    assert context.execute_async_v3(stream.ptr)
    host_out.view((1, 10), np.int32)
    cuda.copy_dtoh_async(host_out.ptr, output.ptr, 4 * 10, stream.ptr)
    with pytest.raises(standin.MemoryMisuseError, match="int32"):
        stream.synchronize()


def test_copy_from_pageable_memory_is_refused(trt) -> None:
    cuda = standin.host_cuda()
    device = cuda.DeviceBuffer(64)
    pageable = np.ones(16, np.float32)
    stream = cuda.Stream()
    with pytest.raises(standin.MemoryMisuseError, match="not in any allocated pinned buffer"):
        cuda.copy_htod_async(device.ptr, pageable.ctypes.data, 64, stream.ptr)


# ---- streams: nothing is done before the synchronise -----------------------------------------------------

def test_results_read_before_synchronize_are_not_there(trt) -> None:
    cuda = standin.host_cuda()
    context, images, output = bound(trt, cuda, 4 * 48, 4 * 10)
    stream = cuda.Stream()
    host_in, host_out = cuda.PinnedBuffer((4 * 48,), np.uint8), cuda.PinnedBuffer((4 * 10,), np.uint8)
    host_in.view(SHAPE, np.float32)[...] = 1
    result = host_out.view((1, 5, 2), np.float32)
    cuda.copy_htod_async(images.ptr, host_in.ptr, 4 * 48, stream.ptr)
    assert context.execute_async_v3(stream.ptr)
    cuda.copy_dtoh_async(host_out.ptr, output.ptr, 4 * 10, stream.ptr)
    assert not result.any()  # queued, not done: a caller that reads now reads zeros
    other = cuda.Stream()
    other.synchronize()  # another stream's synchronise does not finish this one's work
    assert not result.any()
    stream.synchronize()
    np.testing.assert_array_equal(result, np.full((1, 5, 2), 3, np.float32))
    assert [entry[0] for entry in cuda.log] == ["copy_htod", "execute_async_v3", "copy_dtoh", "synchronize",
                                                "synchronize"]
    assert [entry[1] for entry in cuda.log] == [stream.ptr] * 3 + [other.ptr, stream.ptr]


def test_backend_without_its_synchronize_returns_no_results(trt, monkeypatch) -> None:
    """A backend that forgot to synchronise would fail its data test: the stand-in makes that visible."""
    monkeypatch.setattr(standin._HostStream, "synchronize", lambda self: None)
    backend = TensorRTBackend(standin.serialize_engine(IO), trt=trt, cuda=standin.host_cuda())
    out = backend.infer({"images": np.ones(SHAPE, np.float32)})["output"]
    assert not out.any()  # 3.0 expected once synchronised
    monkeypatch.undo()
    backend.close()


def test_work_on_a_destroyed_stream_is_refused(trt) -> None:
    cuda = standin.host_cuda()
    stream = cuda.Stream()
    stream.close()
    device, host = cuda.DeviceBuffer(16), cuda.PinnedBuffer((16,), np.uint8)
    with pytest.raises(standin.MemoryMisuseError, match="not a live stream"):
        cuda.copy_htod_async(device.ptr, host.ptr, 16, stream.ptr)


def test_engine_loads_only_in_the_version_that_built_it(tmp_path) -> None:
    """A cached engine from another TensorRT is refused by deserialize (None); the backend says so."""
    from streamd.errors import BackendError  # noqa: PLC0415
    from streamd.inference.tensorrt_backend import TensorRTEngine  # noqa: PLC0415
    from streamd.inference.tensorrt_build import build_engine  # noqa: PLC0415
    from tests.inference.test_tensorrt_backend import write_onnx  # noqa: PLC0415

    ten, eleven = standin.make_module(TEN), standin.make_module(ELEVEN)
    engine = build_engine(ten, write_onnx(tmp_path / "m.onnx"), "fp32", {"images": ((1, 3, 4, 4),) * 3})
    assert ten.Runtime(ten.Logger()).deserialize_cuda_engine(engine) is not None
    assert eleven.Runtime(eleven.Logger()).deserialize_cuda_engine(engine) is None
    with pytest.raises(BackendError, match="deserialize"):
        TensorRTEngine(eleven, engine)


# ---- engine tensor API -------------------------------------------------------------------------------------

def test_engine_tensor_api_answers_like_tensorrt(trt) -> None:
    engine, _ = context_of(trt)
    assert engine.num_io_tensors == 2
    assert [engine.get_tensor_name(i) for i in range(3)] == ["images", "output", None]
    assert engine.get_tensor_mode("images") == trt.TensorIOMode.INPUT
    assert engine.get_tensor_mode("nope") == trt.TensorIOMode.NONE
    assert engine.get_tensor_dtype("nope") == trt.DataType.FLOAT
    assert tuple(engine.get_tensor_shape("output")) == (-1, 5, 2)
    with pytest.raises(ValueError):
        engine.get_tensor_shape("nope")
    for call, argument in ((engine.get_tensor_name, "0"), (engine.get_tensor_name, 0.0),
                           (engine.get_tensor_mode, 0), (engine.get_tensor_dtype, b"images"),
                           (trt.nptype, 0)):
        with pytest.raises(TypeError):
            call(argument)
    with pytest.raises(TypeError):
        trt.Runtime(object())
    with pytest.raises(TypeError):
        trt.Logger(2)
