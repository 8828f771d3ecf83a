"""Build TensorRT engines from ONNX, and cache them keyed by everything that makes an engine invalid.

This is the one ONNX -> network + builder config -> serialized engine path of the project: the
daemon's TensorRT backend and ``streamd quantize --engine`` (``streamd/quantize/engine.py``)
both build through :func:`serialize_network`.

The cache key holds the TensorRT version, the GPU's name and compute capability, the precision, the
input profile and the ONNX file's SHA-256. A cached engine whose recorded key differs in any field is
rebuilt (the log says which fields changed), with the builder's progress reported as it goes.

Precision by TensorRT version (:func:`plan_network`):
- int8: only a model with QuantizeLinear/DequantizeLinear nodes, parsed into a strongly typed network
  (implicit calibration is deprecated in 10 and removed in 11);
- fp16: on 10 the float ONNX, weakly typed with ``BuilderFlag.FP16``; 11 removed that flag and
  builds every network strongly typed, so the float ONNX is converted to float16 first with its
  inputs and outputs kept float32 (an ONNX that already holds float16 tensors is parsed as it is);
- fp32: the float ONNX, strongly typed.
Network flags: ``EXPLICIT_BATCH`` below 10 only (ignored from 10 on), ``STRONGLY_TYPED`` on 10 only
(11 networks are always strongly typed and ignore the deprecated flag). The ONNX is parsed with
``parse_from_file`` so external weight files next to it resolve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from streamd.errors import BackendError
from streamd.inference.tensorrt_import import major_version

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_BYTES = 1 << 30
# name -> (min, opt, max) shape; every dimension explicit.
Profile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
_ONNX_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_PROTOBUF_LIMIT = 1 << 31


@dataclass(frozen=True)
class EngineKey:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: str  # canonical JSON of the input profile
    onnx_sha256: str

    def differences(self, other: EngineKey) -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in mine if mine[k] != theirs[k]]


@dataclass(frozen=True)
class NetworkPlan:
    """What TensorRT parses and how: the ONNX file, strong typing, weak-typing builder flags by name."""

    onnx_path: Path
    strongly_typed: bool
    builder_flags: tuple[str, ...] = ()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def profile_text(profile: Profile) -> str:
    return json.dumps({name: [list(s) for s in shapes] for name, shapes in sorted(profile.items())},
                      separators=(",", ":"))


def onnx_input_profile(onnx_path: Path, max_batch: int, opt_batch: int = 1) -> Profile:
    """Batch 1..max_batch (opt ``opt_batch``, clamped to that range) for every input of the ONNX model,
    other dimensions as exported. The daemon passes opt = max_batch: with many cameras batches run full."""
    import onnx  # noqa: PLC0415 - only needed when building from ONNX

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    profile = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        dims = [d.dim_value if d.dim_value > 0 else None for d in tensor.type.tensor_type.shape.dim]
        if any(d is None for d in dims[1:]):
            raise BackendError(f"ONNX input '{tensor.name}' {dims} has dynamic non-batch dimensions; export it "
                               "with a fixed input size")
        rest = tuple(dims[1:])
        if dims[0] is not None and dims[0] != 1:
            profile[tensor.name] = ((dims[0], *rest),) * 3
        else:
            # A static batch of 1 stays 1 (TensorRT rejects a profile wider than a static dimension).
            top = max_batch if dims[0] is None else 1
            optimum = min(max(1, opt_batch), top)
            profile[tensor.name] = ((1, *rest), (optimum, *rest), (top, *rest))
    return profile


def network_flags(trt: ModuleType, strongly_typed: bool) -> int:
    """``create_network`` flags for this TensorRT version."""
    major = major_version(trt)
    creation = trt.NetworkDefinitionCreationFlag
    flags = 0
    if major < 10:
        flags |= 1 << int(creation.EXPLICIT_BATCH)  # implicit batch was the default before 10
    if strongly_typed and major == 10:
        flags |= 1 << int(creation.STRONGLY_TYPED)
    # 11: every network is strongly typed; STRONGLY_TYPED is deprecated and ignored, so it is not passed.
    return flags


def onnx_has_quantization(onnx_path: Path) -> bool:
    import onnx  # noqa: PLC0415 - only needed when building

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def onnx_has_float16(onnx_path: Path) -> bool:
    """Whether the model already holds float16 inputs, outputs or weights (e.g. ModelOpt AutoCast output)."""
    import onnx  # noqa: PLC0415 - only needed when building

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    io = [*graph.input, *graph.output]
    return (any(t.type.tensor_type.elem_type == _ONNX_FLOAT16 for t in io)
            or any(t.data_type == _ONNX_FLOAT16 for t in graph.initializer))


def to_float16_onnx(float_onnx: Path, workdir: Path) -> Path:
    """``float_onnx`` converted to float16 in ``workdir``, inputs and outputs kept float32 (what the
    daemon's GPU preprocessing and decoder exchange with the engine)."""
    import onnx  # noqa: PLC0415 - only needed when building

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415
    except ImportError as error:
        raise BackendError(f"fp16 on TensorRT 11 converts the ONNX to float16 with onnxruntime, which does not "
                           f"import: {error}") from error
    try:
        model = convert_float_to_float16(onnx.load(str(float_onnx)), keep_io_types=True)
        path = Path(workdir) / f"{float_onnx.stem}-float16.onnx"
        large = sum(len(t.raw_data) for t in model.graph.initializer) > _PROTOBUF_LIMIT - (64 << 20)
        # Above protobuf's 2 GiB the weights go to a file next to it; parse_from_file resolves them.
        onnx.save(model, str(path), save_as_external_data=large, location=f"{path.name}.data")
    except Exception as error:  # onnx/onnxruntime raise many types; say which step failed
        raise BackendError(f"converting {float_onnx} to float16 for TensorRT failed: {error}") from error
    return path


def plan_network(trt: ModuleType, onnx_path: Path, precision: str, workdir: Path) -> NetworkPlan:
    """Which ONNX to parse and how, for ``precision`` on this TensorRT (conversions are written to ``workdir``)."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision '{precision}' is not one of {PRECISIONS}")
    onnx_path = Path(onnx_path)
    if precision == "int8":
        if not onnx_has_quantization(onnx_path):
            raise BackendError(f"precision 'int8' needs a model with QuantizeLinear/DequantizeLinear nodes; "
                               f"{onnx_path.name} has none (implicit calibration is deprecated in TensorRT 10 "
                               "and removed in 11): quantize it first (streamd quantize), or use fp32/fp16")
        return NetworkPlan(onnx_path, strongly_typed=True)
    if precision == "fp16":
        if hasattr(trt.BuilderFlag, "FP16"):
            # TensorRT 10: weak typing, the FP16 flag lets the builder pick fp16 kernels.
            return NetworkPlan(onnx_path, strongly_typed=False, builder_flags=("FP16",))
        if onnx_has_float16(onnx_path):
            log.info("%s already holds float16 tensors: built as it is", onnx_path)
            return NetworkPlan(onnx_path, strongly_typed=True)
        log.info("TensorRT %s builds strongly typed networks only: converting %s to float16 (I/O kept float32)",
                 trt.__version__, onnx_path.name)
        return NetworkPlan(to_float16_onnx(onnx_path, workdir), strongly_typed=True)
    return NetworkPlan(onnx_path, strongly_typed=True)


def _progress_monitor_class(trt: ModuleType) -> type | None:
    """An IProgressMonitor that logs phases and steps (None where the module has none)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class LogProgress(base):
        def __init__(self) -> None:
            base.__init__(self)
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._started[phase_name] = time.monotonic()
            log.info("TensorRT build: %s started (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            log.debug("TensorRT build: %s step %d", phase_name, step)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            seconds = time.monotonic() - self._started.pop(phase_name, time.monotonic())
            log.info("TensorRT build: %s finished in %.1f s", phase_name, seconds)

    return LogProgress


def _builder_flag(trt: ModuleType, name: str) -> object:
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise BackendError(f"TensorRT {trt.__version__} has no BuilderFlag.{name} (removed in TensorRT 11: "
                           "strongly typed networks only)")
    return flag


def serialize_network(trt: ModuleType, plan: NetworkPlan, profile: Profile,
                      workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                      configure: Callable[[object], None] | None = None, label: str = "") -> bytes:
    """Parse ``plan.onnx_path`` and build a serialized engine; every failure raises BackendError naming it.

    ``configure(config)`` runs last on the builder config (the quantize tool's DLA and calibrator).
    """
    onnx_path = Path(plan.onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise BackendError("TensorRT Builder could not be created (no CUDA device, or a driver mismatch?)")
    network = builder.create_network(network_flags(trt, plan.strongly_typed))
    if network is None:
        raise BackendError("TensorRT Builder.create_network returned None")
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external weight files next to the model, parse(bytes) does not.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors or 'no parser error recorded'}")
    config = builder.create_builder_config()
    if config is None:
        raise BackendError("TensorRT Builder.create_builder_config returned None")
    if not isinstance(workspace_bytes, int) or workspace_bytes < 0:  # a size_t: the bindings raise TypeError
        raise BackendError(f"TensorRT workspace must be a whole number of bytes >= 0, got {workspace_bytes!r}")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(_builder_flag(trt, name))
    optimization_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if tensor.name not in profile:
            raise BackendError(f"no input profile for tensor '{tensor.name}'; profile has {sorted(profile)}")
        minimum, optimum, maximum = profile[tensor.name]
        try:
            optimization_profile.set_shape(tensor.name, minimum, optimum, maximum)
        except (RuntimeError, TypeError) as error:  # the bindings raise, naming neither tensor nor shapes
            raise BackendError(f"TensorRT IOptimizationProfile.set_shape('{tensor.name}', min={minimum}, "
                               f"opt={optimum}, max={maximum}) failed: {error} (every dimension must be an int "
                               "and min <= opt <= max)") from error
    if config.add_optimization_profile(optimization_profile) < 0:
        raise BackendError(f"TensorRT rejected the optimization profile {profile_text(profile)}")
    monitor_class = _progress_monitor_class(trt)
    if monitor_class is not None:
        config.progress_monitor = monitor_class()
    if configure is not None:
        configure(config)
    what = label or ("strongly typed" if plan.strongly_typed else "weakly typed " + "+".join(plan.builder_flags))
    log.info("building TensorRT %s engine from %s (%s); this can take minutes", trt.__version__, onnx_path, what)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT {trt.__version__} failed to build the {what} engine from {onnx_path} "
                           "(see the TensorRT log above)")
    return bytes(serialized)


def build_engine(trt: ModuleType, onnx_path: Path, precision: str, profile: Profile,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 configure: Callable[[object], None] | None = None) -> bytes:
    """Build a serialized ``precision`` engine from ``onnx_path``; every failure raises BackendError."""
    with tempfile.TemporaryDirectory(prefix="streamd-trt-") as workdir:
        plan = plan_network(trt, Path(onnx_path), precision, Path(workdir))
        return serialize_network(trt, plan, profile, workspace_bytes, configure, label=precision)


class EngineCache:
    """``<dir>/<onnx stem>-<precision>.engine`` plus a JSON sidecar recording its EngineKey."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def paths(self, onnx_path: Path, precision: str) -> tuple[Path, Path]:
        base = self.directory / f"{onnx_path.stem}-{precision}"
        return base.with_suffix(".engine"), base.with_suffix(".json")

    def load(self, onnx_path: Path, key: EngineKey) -> bytes | None:
        engine_path, key_path = self.paths(onnx_path, key.precision)
        if not (engine_path.is_file() and key_path.is_file()):
            log.info("no cached TensorRT engine at %s", engine_path)
            return None
        try:
            recorded = json.loads(key_path.read_text())
            cached_key = EngineKey(**recorded["key"])
        except (ValueError, KeyError, TypeError) as error:
            log.warning("unreadable engine cache record %s (%s): rebuilding", key_path, error)
            return None
        differences = key.differences(cached_key)
        if differences:
            log.warning("cached engine %s is stale (%s): rebuilding", engine_path, "; ".join(differences))
            return None
        data = engine_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != recorded.get("engine_sha256"):
            log.warning("cached engine %s is damaged (checksum mismatch): rebuilding", engine_path)
            return None
        return data

    def store(self, onnx_path: Path, key: EngineKey, data: bytes) -> Path:
        engine_path, key_path = self.paths(onnx_path, key.precision)
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = engine_path.with_suffix(".engine.tmp")
        temporary.write_bytes(data)
        temporary.replace(engine_path)
        key_path.write_text(json.dumps({"key": asdict(key), "engine_sha256": hashlib.sha256(data).hexdigest()},
                                       indent=2))
        return engine_path


def ensure_engine(trt: ModuleType, onnx_path: Path, precision: str, profile: Profile, gpu_name: str,
                  compute_capability: tuple[int, int], cache: EngineCache,
                  workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> bytes:
    """The cached engine for this key, or a freshly built (and cached) one."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"model file {onnx_path} does not exist")
    key = EngineKey(str(trt.__version__), gpu_name, f"{compute_capability[0]}.{compute_capability[1]}",
                    precision, profile_text(profile), file_sha256(onnx_path))
    data = cache.load(onnx_path, key)
    if data is not None:
        return data
    started = time.monotonic()
    data = build_engine(trt, onnx_path, precision, profile, workspace_bytes)
    path = cache.store(onnx_path, key, data)
    log.info("TensorRT engine built in %.1f s and cached at %s", time.monotonic() - started, path)
    return data
