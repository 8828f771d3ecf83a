"""TensorRT engine building from the ONNX this tool writes. ``tensorrt`` is imported lazily: the
rest of the tool (and its tests) runs without it.

Paths, by TensorRT version:
- INT8, TRT >= 10: the Q/DQ ONNX parsed into a *strongly typed* network: the Q/DQ nodes say which
  tensors are int8, the rest stays in the ONNX's float type. This is the only INT8 path on TRT 11
  (implicit calibration and ``BuilderFlag.INT8/FP16`` were removed there).
- FP16: TRT 11 is always strongly typed, so the ONNX itself is converted to float16 first (I/O kept
  float32); on TRT <= 10 the float ONNX is built weakly typed with ``BuilderFlag.FP16``.
- FP32: the float ONNX, strongly typed where the flag exists.
- Legacy INT8 (``--legacy-calibrator``, TRT <= 10 only, for DLA on JetPack 6): the *float* ONNX with
  ``BuilderFlag.INT8`` and an ``IInt8EntropyCalibrator2`` fed with the same preprocessed images,
  its calibration cache read and written at ``calibration_cache_path``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from streamd.quantize.calibration import ImageSet
from streamd.quantize.errors import EngineBuildError, QuantizeError, TensorRTUnavailableError

logger = logging.getLogger(__name__)

WORKSPACE_BYTES_DEFAULT = 1 << 30


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as error:  # also raised when libnvinfer is missing behind the bindings
        raise TensorRTUnavailableError(
            f"TensorRT does not import here ({error}); the ONNX model is written all the same: build the engine on "
            "the target (JetPack or `pip install tensorrt`) with `tools/quantize.py ... --engine` or "
            "`trtexec --onnx=OUT.onnx --stronglyTyped --saveEngine=OUT.engine`") from error
    return trt


def tensorrt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


@dataclass(frozen=True)
class EngineOptions:
    precision: str  # int8 | fp16 | fp32
    workspace_bytes: int = WORKSPACE_BYTES_DEFAULT
    legacy_calibrator: bool = False
    dla_core: int | None = None


def _parse(trt, builder, trt_logger, onnx_path: Path, strongly_typed: bool):
    major = tensorrt_major(trt)
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # implicit batch was the default
    # TRT 11 networks are always strongly typed; the flag is deprecated there and ignored.
    if strongly_typed and major == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    if network is None:
        raise EngineBuildError("TensorRT builder.create_network returned None")
    parser = trt.OnnxParser(network, trt_logger)
    # parse_from_file resolves external weight files next to the model, parse(bytes) does not.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    return network, parser



def _to_float16_onnx(float_onnx: Path, workdir: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(float_onnx)), keep_io_types=True)
    path = workdir / "float16.onnx"
    onnx.save(model, str(path))
    return path


class _CudaGateway:
    """The few cuda.bindings runtime calls the legacy calibrator needs, every result checked."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6 layout
            except ImportError as error:
                raise TensorRTUnavailableError(f"the legacy calibrator needs cuda-python: {error}") from error
        self._cudart = cudart

    def check(self, result, call: str):
        error, *values = result
        if int(error) != 0:
            raise EngineBuildError(f"{call} failed: {self._cudart.cudaGetErrorName(error)[1]}")
        return values[0] if len(values) == 1 else values

    def malloc(self, nbytes: int) -> int:
        return int(self.check(self._cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))

    def copy_to_device(self, device_ptr: int, host: np.ndarray) -> None:
        self.check(self._cudart.cudaMemcpy(device_ptr, host.ctypes.data, host.nbytes,
                                           self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy H2D")

    def free(self, device_ptr: int) -> None:
        self.check(self._cudart.cudaFree(device_ptr), "cudaFree")


def _make_entropy_calibrator(trt, inputs: np.ndarray, input_name: str, cache_path: Path):
    """An ``IInt8EntropyCalibrator2`` over preprocessed inputs (batch 1), caching to ``cache_path``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cuda = _CudaGateway()
            self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
            self.index = 0
            self.device_ptr = self.cuda.malloc(self.inputs[0:1].nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.index >= self.inputs.shape[0]:
                return None
            if list(names) != [input_name]:
                raise EngineBuildError(f"calibrator asked for {list(names)}, it feeds '{input_name}'")
            self.cuda.copy_to_device(self.device_ptr, np.ascontiguousarray(self.inputs[self.index:self.index + 1]))
            self.index += 1
            return [self.device_ptr]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

        def free(self) -> None:
            if self.device_ptr:
                self.cuda.free(self.device_ptr)
                self.device_ptr = 0

    return EntropyCalibrator()


def build_engine(options: EngineOptions, engine_path: Path, qdq_onnx: Path | None, float_onnx: Path,
                 calibration_inputs: np.ndarray | None = None, input_name: str = "images",
                 calibration_cache_path: Path | None = None) -> dict:
    """Build and write one engine; returns what was done (for the report). Raises
    :class:`TensorRTUnavailableError` / :class:`EngineBuildError` / :class:`QuantizeError`."""
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    if options.legacy_calibrator and major >= 11:
        raise QuantizeError(f"--legacy-calibrator needs TensorRT <= 10 (IInt8EntropyCalibrator2 was removed in "
                            f"11), this is {trt.__version__}: use the default Q/DQ path")
    builder = trt.Builder(trt_logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    calibrator = None
    with tempfile.TemporaryDirectory(prefix="streamd-trt-") as workdir:
        if options.precision == "int8" and not options.legacy_calibrator:
            if qdq_onnx is None:
                raise QuantizeError("the strongly typed INT8 engine needs the Q/DQ ONNX")
            source, strongly_typed = qdq_onnx, True
        elif options.precision == "int8":
            if calibration_inputs is None or calibration_cache_path is None:
                raise QuantizeError("the legacy INT8 calibrator needs calibration images and a cache path")
            source, strongly_typed = float_onnx, False
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)  # layers without an int8 kernel fall back to fp16
            calibrator = _make_entropy_calibrator(trt, calibration_inputs, input_name, calibration_cache_path)
            config.int8_calibrator = calibrator
        elif options.precision == "fp16" and major >= 11:
            source, strongly_typed = _to_float16_onnx(float_onnx, Path(workdir)), True
        elif options.precision == "fp16":
            source, strongly_typed = float_onnx, False
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            source, strongly_typed = float_onnx, major >= 10
        if options.dla_core is not None:
            if strongly_typed and major >= 11:
                logger.warning("DLA on TensorRT %s: check the DLA support of strongly typed networks",
                               trt.__version__)
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = options.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        network, _parser = _parse(trt, builder, trt_logger, source, strongly_typed)
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.free()
        if serialized is None:
            raise EngineBuildError(f"TensorRT {trt.__version__} failed to build the {options.precision} engine "
                                   f"from {source} (see the TensorRT log above)")
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        engine_path.write_bytes(bytes(serialized))
    return {"path": str(engine_path), "tensorrt": str(trt.__version__), "precision": options.precision,
            "strongly_typed": strongly_typed, "legacy_calibrator": options.legacy_calibrator,
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
