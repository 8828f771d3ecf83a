"""The engine builder against the strict ``tensorrt`` stand-in (``tests/inference/tensorrt_standin.py``,
10.x and 11.x APIs as their bindings define them): which ONNX is parsed, with which network flags and
builder flags, through the daemon's shared builder (``streamd.inference.tensorrt_build``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamd.quantize import engine as engine_step
from streamd.quantize.engine import EngineOptions, build_engine
from streamd.quantize.errors import EngineBuildError, QuantizeError
from tests.inference import tensorrt_standin as standin


def _flags(trt) -> set[str]:
    """The builder flags the last build was configured with, by name."""
    return {flag.name for flag in trt.BuilderFlag if trt.last_config.get_flag(flag)}


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
    trt = standin.make_module(version)
    _install(monkeypatch, trt)
    built = build_engine(EngineOptions("int8"), tmp_path / "m.engine", qdq_path, float_path)
    assert trt.parsed_paths == [str(qdq_path)] and trt.last_network_flags == network_flags
    assert _flags(trt) == set() and (tmp_path / "m.engine").read_bytes().startswith(standin.MAGIC)
    assert built["strongly_typed"] and built["tensorrt"] == version
    profile = trt.last_config.profiles[0]
    assert profile.get_shape("images") == [(1, 3, 64, 64)] * 3  # the daemon's profile, static batch 1


def test_int8_without_qdq_nodes_is_an_engine_build_error(monkeypatch, models, tmp_path):
    float_path, _ = models
    _install(monkeypatch, standin.make_module("11.4.0"))
    with pytest.raises(EngineBuildError, match="QuantizeLinear"):
        build_engine(EngineOptions("int8"), tmp_path / "m.engine", float_path, float_path)


def test_fp16_on_trt11_parses_a_float16_onnx(monkeypatch, models, tmp_path):
    float_path, _ = models
    trt = standin.make_module("11.4.0")
    _install(monkeypatch, trt)
    build_engine(EngineOptions("fp16"), tmp_path / "m.engine", None, float_path)
    parsed = trt.parsed_models[-1]
    weights = [i for i in parsed.graph.initializer if i.name.endswith(".w")]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert parsed.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [t.dtype for t in trt.last_network.inputs] == [trt.DataType.FLOAT]
    assert _flags(trt) == set() and trt.last_network_flags == 0


def test_fp16_on_trt10_is_weakly_typed_with_the_fp16_flag(monkeypatch, models, tmp_path):
    float_path, _ = models
    trt = standin.make_module("10.13.0")
    _install(monkeypatch, trt)
    build_engine(EngineOptions("fp16", dla_core=0), tmp_path / "m.engine", None, float_path)
    assert trt.parsed_paths == [str(float_path)] and trt.last_network_flags == 0
    assert _flags(trt) == {"FP16", "GPU_FALLBACK"}
    assert trt.last_config.default_device_type == trt.DeviceType.DLA and trt.last_config.DLA_core == 0


def test_legacy_calibrator_needs_trt10(monkeypatch, models, tmp_path):
    float_path, _ = models
    _install(monkeypatch, standin.make_module("11.4.0"))
    with pytest.raises(QuantizeError, match="TensorRT <= 10"):
        build_engine(EngineOptions("int8", legacy_calibrator=True), tmp_path / "m.engine", None, float_path,
                     np.zeros((2, 3, 64, 64), np.float32), "images", tmp_path / "calib.cache")


def test_legacy_calibrator_feeds_every_image_and_caches(monkeypatch, models, tmp_path):
    float_path, _ = models
    trt = standin.make_module("10.13.0")
    _install(monkeypatch, trt)
    copies: list[np.ndarray] = []

    class FakeDeviceInput:  # streamd.cuda's buffer, stream and copy, recorded on the host
        def __init__(self, nbytes: int) -> None:
            self.ptr = 4096

        def copy_from(self, host: np.ndarray) -> None:
            copies.append(host.copy())

        def free(self) -> None:
            copies.append(None)

    monkeypatch.setattr(engine_step, "_DeviceInput", FakeDeviceInput)
    inputs = np.arange(2 * 3 * 64 * 64, dtype=np.float32).reshape(2, 3, 64, 64)
    cache = tmp_path / "calib.cache"
    build_engine(EngineOptions("int8", legacy_calibrator=True), tmp_path / "m.engine", None, float_path,
                 inputs, "images", cache)
    assert _flags(trt) == {"INT8", "FP16"} and trt.parsed_paths == [str(float_path)]
    assert trt.last_network_flags == 0  # weakly typed: the only way INT8/FP16 flags are accepted
    assert trt.calibration == {"batch_size": 1, "cache_before": None, "batches": [[4096], [4096]]}
    np.testing.assert_array_equal(copies[1], inputs[1:2])
    assert copies[-1] is None  # device buffer freed after the build
    assert cache.read_bytes() == b"TRT-calibration"


@pytest.mark.parametrize(("parse_ok", "build_ok", "message"),
                         [(False, True, "cannot parse .*In node 3"), (True, False, "failed to build")])
def test_parser_and_builder_failures_name_what_failed(monkeypatch, models, tmp_path, parse_ok, build_ok, message):
    float_path, _ = models
    trt = standin.make_module("11.4.0")
    trt.parser_errors = [] if parse_ok else ["In node 3 (Conv): unsupported"]
    trt.fail_build = not build_ok
    _install(monkeypatch, trt)
    with pytest.raises(EngineBuildError, match=message):
        build_engine(EngineOptions("fp32"), tmp_path / "m.engine", None, float_path)
    assert not (tmp_path / "m.engine").exists()


def test_negative_workspace_is_an_engine_build_error(monkeypatch, models, tmp_path):
    """TensorRT's set_memory_pool_limit takes a size_t (pybind11 raises TypeError for -1 << 20): the
    builder says what is wrong instead (``--workspace-mib -1`` used to end in a TypeError traceback)."""
    float_path, _ = models
    _install(monkeypatch, standin.make_module("10.13.0"))
    with pytest.raises(EngineBuildError, match="workspace"):
        build_engine(EngineOptions("fp32", workspace_bytes=-1 << 20), tmp_path / "m.engine", None, float_path)
