"""The engine builder against a minimal stand-in of the ``tensorrt`` module (10.x and 11.x APIs, as
their bindings document them): which ONNX is parsed, with which network flags and builder flags,
through the daemon's shared builder (``streamd.inference.tensorrt_build``)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamd.quantize import tensorrt_builder
from streamd.quantize.errors import EngineBuildError, QuantizeError
from streamd.quantize.tensorrt_builder import EngineOptions, build_engine


def _fake_tensorrt(version: str, parse_ok: bool = True, build_ok: bool = True) -> types.SimpleNamespace:
    major = int(version.split(".", maxsplit=1)[0])
    log: dict = {"flags": set(), "parsed": None}
    flag_names = ["GPU_FALLBACK"] + (["FP16", "INT8"] if major < 11 else [])

    class Network:
        def __init__(self) -> None:
            self.inputs: list[types.SimpleNamespace] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> types.SimpleNamespace:
            return self.inputs[index]

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict = {}

        def set_shape(self, name: str, minimum, optimum, maximum) -> None:
            self.shapes[name] = (tuple(minimum), tuple(optimum), tuple(maximum))

    class Config:
        def __init__(self) -> None:
            self.int8_calibrator = None

        def add_optimization_profile(self, profile: Profile) -> int:
            log["profile"] = profile.shapes
            return 0

        def set_memory_pool_limit(self, pool, nbytes: int) -> None:
            log["workspace"] = nbytes

        def set_flag(self, flag: str) -> None:
            log["flags"].add(flag)

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags: int):
            log["network_flags"] = flags
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network, config):
            calibrator = config.int8_calibrator
            if calibrator is not None:  # what TensorRT does with an implicit calibrator
                log["batch_size"] = calibrator.get_batch_size()
                log["cache_before"] = calibrator.read_calibration_cache()
                log["batches"] = []
                while (batch := calibrator.get_batch(["images"])) is not None:
                    log["batches"].append(batch)
                calibrator.write_calibration_cache(b"TRT-calibration")
            return b"serialized engine" if build_ok else None

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            log["parsed"] = path
            log["parsed_model"] = onnx.load(path)
            initializers = {t.name for t in log["parsed_model"].graph.initializer}
            self.network.inputs = [types.SimpleNamespace(name=t.name) for t in log["parsed_model"].graph.input
                                   if t.name not in initializers]
            return parse_ok

        def get_error(self, index: int) -> str:
            return "In node 3 (Conv): unsupported"

    class Logger:
        WARNING = 2

        def __init__(self, severity) -> None:
            pass

    class Calibrator:
        def __init__(self) -> None:
            pass

    module = types.SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        BuilderFlag=types.SimpleNamespace(**{name: name for name in flag_names}),
        DeviceType=types.SimpleNamespace(DLA="dla", GPU="gpu"), log=log)
    if major < 11:
        module.IInt8EntropyCalibrator2 = Calibrator
    return module


@pytest.fixture
def models(tiny_conv_model: Path, tmp_path: Path) -> tuple[Path, Path]:
    from streamd.quantize.model import load_model, save_model

    float_path = tmp_path / "float.onnx"
    save_model(load_model(tiny_conv_model).model, float_path)
    return float_path, tmp_path / "qdq.onnx"


def _install(monkeypatch, module) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", module)


def _write_qdq(float_path: Path, qdq_path: Path) -> None:
    """The float model with a QuantizeLinear/DequantizeLinear pair on its input (what the tool writes)."""
    model = onnx.load(str(float_path))
    graph = model.graph
    name = graph.input[0].name
    for node in graph.node:
        node.input[:] = [f"{name}_dq" if i == name else i for i in node.input]
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array(1 / 127, np.float32), "qdq_scale"),
                              onnx.numpy_helper.from_array(np.array(0, np.int8), "qdq_zero")])
    graph.node.insert(0, onnx.helper.make_node("DequantizeLinear", [f"{name}_q", "qdq_scale", "qdq_zero"],
                                               [f"{name}_dq"]))
    graph.node.insert(0, onnx.helper.make_node("QuantizeLinear", [name, "qdq_scale", "qdq_zero"], [f"{name}_q"]))
    onnx.save(model, str(qdq_path))


@pytest.mark.parametrize(("version", "network_flags"), [("11.4.0", 0), ("10.13.0", 1 << 1)])
def test_int8_is_a_strongly_typed_build_of_the_qdq_onnx(monkeypatch, models, tmp_path, version, network_flags):
    float_path, qdq_path = models
    _write_qdq(float_path, qdq_path)
    trt = _fake_tensorrt(version)
    _install(monkeypatch, trt)
    built = build_engine(EngineOptions("int8"), tmp_path / "m.engine", qdq_path, float_path)
    assert trt.log["parsed"] == str(qdq_path) and trt.log["network_flags"] == network_flags
    assert trt.log["flags"] == set() and (tmp_path / "m.engine").read_bytes() == b"serialized engine"
    assert built["strongly_typed"] and built["tensorrt"] == version
    assert trt.log["profile"] == {"images": ((1, 3, 64, 64),) * 3}  # the daemon's profile, static batch 1


def test_int8_without_qdq_nodes_is_an_engine_build_error(monkeypatch, models, tmp_path):
    float_path, _ = models
    _install(monkeypatch, _fake_tensorrt("11.4.0"))
    with pytest.raises(EngineBuildError, match="QuantizeLinear"):
        build_engine(EngineOptions("int8"), tmp_path / "m.engine", float_path, float_path)


def test_fp16_on_trt11_parses_a_float16_onnx(monkeypatch, models, tmp_path):
    float_path, _ = models
    trt = _fake_tensorrt("11.4.0")
    _install(monkeypatch, trt)
    build_engine(EngineOptions("fp16"), tmp_path / "m.engine", None, float_path)
    weights = [i for i in trt.log["parsed_model"].graph.initializer if i.name.endswith(".w")]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert trt.log["parsed_model"].graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert trt.log["flags"] == set() and trt.log["network_flags"] == 0


def test_fp16_on_trt10_is_weakly_typed_with_the_fp16_flag(monkeypatch, models, tmp_path):
    float_path, _ = models
    trt = _fake_tensorrt("10.13.0")
    _install(monkeypatch, trt)
    build_engine(EngineOptions("fp16", dla_core=0), tmp_path / "m.engine", None, float_path)
    assert trt.log["parsed"] == str(float_path) and trt.log["network_flags"] == 0
    assert trt.log["flags"] == {"FP16", "GPU_FALLBACK"}


def test_legacy_calibrator_needs_trt10(monkeypatch, models, tmp_path):
    float_path, _ = models
    _install(monkeypatch, _fake_tensorrt("11.4.0"))
    with pytest.raises(QuantizeError, match="TensorRT <= 10"):
        build_engine(EngineOptions("int8", legacy_calibrator=True), tmp_path / "m.engine", None, float_path,
                     np.zeros((2, 3, 64, 64), np.float32), "images", tmp_path / "calib.cache")


def test_legacy_calibrator_feeds_every_image_and_caches(monkeypatch, models, tmp_path):
    float_path, _ = models
    trt = _fake_tensorrt("10.13.0")
    _install(monkeypatch, trt)
    copies: list[np.ndarray] = []

    class FakeCuda:
        def malloc(self, nbytes: int) -> int:
            return 4096

        def copy_to_device(self, device_ptr: int, host: np.ndarray) -> None:
            copies.append(host.copy())

        def free(self, device_ptr: int) -> None:
            copies.append(None)

    monkeypatch.setattr(tensorrt_builder, "_CudaGateway", FakeCuda)
    inputs = np.arange(2 * 3 * 64 * 64, dtype=np.float32).reshape(2, 3, 64, 64)
    cache = tmp_path / "calib.cache"
    build_engine(EngineOptions("int8", legacy_calibrator=True), tmp_path / "m.engine", None, float_path,
                 inputs, "images", cache)
    assert trt.log["flags"] == {"INT8", "FP16"} and trt.log["parsed"] == str(float_path)
    assert trt.log["batch_size"] == 1 and trt.log["cache_before"] is None
    assert trt.log["batches"] == [[4096], [4096]]
    np.testing.assert_array_equal(copies[1], inputs[1:2])
    assert copies[-1] is None  # device buffer freed after the build
    assert cache.read_bytes() == b"TRT-calibration"


@pytest.mark.parametrize(("parse_ok", "build_ok", "message"),
                         [(False, True, "cannot parse .*In node 3"), (True, False, "failed to build")])
def test_parser_and_builder_failures_name_what_failed(monkeypatch, models, tmp_path, parse_ok, build_ok, message):
    float_path, _ = models
    _install(monkeypatch, _fake_tensorrt("11.4.0", parse_ok, build_ok))
    with pytest.raises(EngineBuildError, match=message):
        build_engine(EngineOptions("fp32"), tmp_path / "m.engine", None, float_path)
    assert not (tmp_path / "m.engine").exists()
