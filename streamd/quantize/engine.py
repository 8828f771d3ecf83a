"""TensorRT engine building from the ONNX this tool writes. ``tensorrt`` is imported lazily: the
rest of the tool (and its tests) runs without it.

TensorRT is imported and its version read by ``streamd.inference.tensorrt_import``; CUDA is reached
through ``streamd.cuda``. The network, builder config, optimization profile, progress monitor and
serialization are the daemon's (``streamd.inference.tensorrt_build``, one path for TensorRT 10 and
11): int8 from the Q/DQ ONNX strongly typed, fp16 converted to float16 (I/O float32) on TRT 11 and
``BuilderFlag.FP16`` on TRT 10, fp32 strongly typed. Its BackendError becomes
:class:`EngineBuildError` (exit code 4) here.
What stays here is the tool's own:
- Legacy INT8 (``--legacy-calibrator``, TRT <= 10 only, for DLA on JetPack 6): the *float* ONNX with
  ``BuilderFlag.INT8`` (+ FP16) and an ``IInt8EntropyCalibrator2`` fed with the same preprocessed
  images, its calibration cache read and written at ``calibration_cache_path``;
- DLA (``--dla-core``, GPU fallback on), the report entry and the exit codes.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamd.cuda.runtime import CudaError
from streamd.errors import BackendError
from streamd.inference import tensorrt_import
from streamd.inference.tensorrt_build import (
    DEFAULT_WORKSPACE_BYTES,
    PRECISIONS,
    NetworkPlan,
    onnx_input_profile,
    plan_network,
    serialize_network,
)
from streamd.quantize.calibration import ImageSet
from streamd.quantize.errors import EngineBuildError, QuantizeError, TensorRTUnavailableError

logger = logging.getLogger(__name__)


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` saying how to get it."""
    try:
        return tensorrt_import.import_tensorrt()
    except BackendError as error:  # also raised when libnvinfer is missing behind the bindings
        raise TensorRTUnavailableError(
            f"TensorRT does not import here ({error.__cause__ or error}); the ONNX model is written all the same: "
            "build the engine on the target (JetPack or `pip install tensorrt`) with `tools/quantize.py ... --engine` "
            "or `trtexec --onnx=OUT.onnx --stronglyTyped --saveEngine=OUT.engine`") from error


@dataclass(frozen=True)
class EngineOptions:
    precision: str  # int8 | fp16 | fp32
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    legacy_calibrator: bool = False
    dla_core: int | None = None


class _DeviceInput:
    """The legacy calibrator's device input (one batch), through ``streamd.cuda``: every call checked there."""

    def __init__(self, nbytes: int) -> None:
        from streamd.cuda import memory, stream  # noqa: PLC0415 - cuda-python is optional

        try:
            self._buffer = memory.DeviceBuffer(nbytes)
            self._stream = stream.Stream()
        except CudaError as error:
            if error.error_name == "ImportError":
                raise TensorRTUnavailableError(f"the legacy calibrator needs cuda-python: {error}") from error
            raise EngineBuildError(str(error)) from error
        self._copy = memory.copy_htod_async
        self.ptr: int = self._buffer.ptr

    def copy_from(self, host: np.ndarray) -> None:
        """Copy ``host`` (contiguous) to the device buffer and wait for it: TensorRT reads it next."""
        self._copy(self.ptr, host.ctypes.data, host.nbytes, self._stream.ptr)
        self._stream.synchronize()

    def free(self) -> None:
        self._stream.close()
        self._buffer.free()


def _make_entropy_calibrator(trt, inputs: np.ndarray, input_name: str, cache_path: Path):
    """An ``IInt8EntropyCalibrator2`` over preprocessed inputs (batch 1), caching to ``cache_path``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
            self.index = 0
            self.device: _DeviceInput | None = _DeviceInput(self.inputs[0:1].nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.index >= self.inputs.shape[0]:
                return None
            if list(names) != [input_name]:
                raise EngineBuildError(f"calibrator asked for {list(names)}, it feeds '{input_name}'")
            self.device.copy_from(np.ascontiguousarray(self.inputs[self.index:self.index + 1]))
            self.index += 1
            return [self.device.ptr]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

        def free(self) -> None:
            if self.device is not None:
                self.device.free()
                self.device = None

    return EntropyCalibrator()


def build_engine(options: EngineOptions, engine_path: Path, qdq_onnx: Path | None, float_onnx: Path,
                 calibration_inputs: np.ndarray | None = None, input_name: str = "images",
                 calibration_cache_path: Path | None = None) -> dict:
    """Build and write one engine; returns what was done (for the report). Raises
    :class:`TensorRTUnavailableError` / :class:`EngineBuildError` / :class:`QuantizeError`."""
    trt = import_tensorrt()
    major = tensorrt_import.major_version(trt)
    if options.precision not in PRECISIONS:
        raise QuantizeError(f"precision '{options.precision}' is not one of {PRECISIONS}")
    if options.legacy_calibrator and major >= 11:
        raise QuantizeError(f"--legacy-calibrator needs TensorRT <= 10 (IInt8EntropyCalibrator2 was removed in "
                            f"11), this is {trt.__version__}: use the default Q/DQ path")
    legacy = options.precision == "int8" and options.legacy_calibrator
    if options.precision == "int8" and not legacy and qdq_onnx is None:
        raise QuantizeError("the strongly typed INT8 engine needs the Q/DQ ONNX")
    if legacy and (calibration_inputs is None or calibration_cache_path is None):
        raise QuantizeError("the legacy INT8 calibrator needs calibration images and a cache path")
    calibrator = None

    def configure(config) -> None:
        nonlocal calibrator
        if legacy:
            calibrator = _make_entropy_calibrator(trt, calibration_inputs, input_name, calibration_cache_path)
            config.int8_calibrator = calibrator
        if options.dla_core is not None:
            if plan.strongly_typed and major >= 11:
                logger.warning("DLA on TensorRT %s: check the DLA support of strongly typed networks",
                               trt.__version__)
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = options.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    with tempfile.TemporaryDirectory(prefix="streamd-trt-") as workdir:
        try:
            if legacy:
                # Layers without an int8 kernel fall back to fp16.
                plan = NetworkPlan(float_onnx, strongly_typed=False, builder_flags=("INT8", "FP16"))
            else:
                plan = plan_network(trt, qdq_onnx if options.precision == "int8" else float_onnx,
                                    options.precision, Path(workdir))
            profile = onnx_input_profile(plan.onnx_path, max_batch=1)
            label = "legacy-calibrated int8" if legacy else options.precision
            try:
                serialized = serialize_network(trt, plan, profile, options.workspace_bytes, configure, label)
            finally:
                if calibrator is not None:
                    calibrator.free()
        except (BackendError, CudaError) as error:
            raise EngineBuildError(str(error)) from error
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        engine_path.write_bytes(serialized)
    source = plan.onnx_path
    return {"path": str(engine_path), "tensorrt": str(trt.__version__), "precision": options.precision,
            "strongly_typed": plan.strongly_typed, "legacy_calibrator": options.legacy_calibrator,
            "source_onnx": str(float_onnx if options.precision == "fp16" else source)}


def build_engine_for_report(args: argparse.Namespace, float_onnx: Path, calibration: ImageSet,
                            input_name: str) -> tuple[dict, int]:
    """The CLI's engine step: build, or say why not. Returns (report entry, exit code or 0).

    The ONNX output is already written when this runs, so a missing TensorRT costs only the engine.
    """
    options = EngineOptions(args.precision, args.workspace_mib << 20, args.legacy_calibrator, args.dla_core)
    cache_path = args.engine.with_suffix(args.engine.suffix + ".calib")
    try:
        built = build_engine(options, args.engine, args.output if args.precision == "int8" else None,
                             float_onnx, calibration.inputs, input_name, cache_path)
    except QuantizeError as error:
        return {"path": str(args.engine), "status": "not built", "error": str(error)}, error.exit_code
    return {**built, "status": "built"}, 0
