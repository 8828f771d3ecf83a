"""Build TensorRT engines from ONNX, and cache them keyed by everything that makes an engine invalid.

The cache key holds the TensorRT version, the GPU's name and compute capability, the precision, the
input profile and the ONNX file's SHA-256. A cached engine whose recorded key differs in any field is
rebuilt (the log says which fields changed), with the builder's progress reported as it goes.

TensorRT 10 and 11 differ in how precision is chosen: 10 still has weak typing
(``BuilderFlag.FP16``); 11 removed those flags and builds every network strongly typed, so fp16
there means an ONNX already converted to fp16 (e.g. ModelOpt AutoCast) and int8 means Q/DQ nodes.
The builder decides by what the installed module offers, not by parsing version strings alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from streamd.errors import BackendError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_BYTES = 1 << 30
# name -> (min, opt, max) shape; every dimension explicit.
Profile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def profile_text(profile: Profile) -> str:
    return json.dumps({name: [list(s) for s in shapes] for name, shapes in sorted(profile.items())},
                      separators=(",", ":"))


def major_version(trt: ModuleType) -> int:
    return int(str(trt.__version__).split(".")[0])


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


def build_engine(trt: ModuleType, onnx_path: Path, precision: str, profile: Profile,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> bytes:
    """Parse the ONNX file and build a serialized engine; every TensorRT failure raises BackendError."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision '{precision}' is not one of {PRECISIONS}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weak_fp16 = getattr(trt.BuilderFlag, "FP16", None)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if precision == "int8" and not onnx_has_quantization(onnx_path):
        raise BackendError(f"precision 'int8' needs a model with QuantizeLinear/DequantizeLinear nodes; "
                           f"{onnx_path.name} has none (implicit calibration is deprecated in TensorRT 10 and "
                           "removed in 11): quantize it first, or use fp32/fp16")
    if precision == "int8":
        # Implicit calibration is deprecated in 10 and gone in 11: only Q/DQ models, strongly typed.
        flags = 1 << int(strongly_typed) if strongly_typed is not None else 0
    elif precision == "fp16" and weak_fp16 is not None:
        flags = 0  # TensorRT 10: weak typing, the FP16 flag lets the builder pick fp16 kernels
    else:
        # fp32 anywhere, or fp16 on TensorRT 11: the network's own types decide.
        flags = 1 << int(strongly_typed) if (strongly_typed is not None and major_version(trt) >= 11) else 0
    network = builder.create_network(flags)
    if network is None:
        raise BackendError("TensorRT Builder.create_network returned None")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        if weak_fp16 is not None:
            config.set_flag(weak_fp16)
        elif not _network_has_half_inputs_or_weights(trt, network):
            raise BackendError(f"TensorRT {trt.__version__} builds strongly typed networks only: fp16 needs an "
                               f"fp16 ONNX (convert {onnx_path.name} with ModelOpt AutoCast), or use fp32")
    optimization_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if tensor.name not in profile:
            raise BackendError(f"no input profile for tensor '{tensor.name}'; profile has {sorted(profile)}")
        minimum, optimum, maximum = profile[tensor.name]
        optimization_profile.set_shape(tensor.name, minimum, optimum, maximum)
    if config.add_optimization_profile(optimization_profile) < 0:
        raise BackendError(f"TensorRT rejected the optimization profile {profile_text(profile)}")
    monitor_class = _progress_monitor_class(trt)
    if monitor_class is not None:
        config.progress_monitor = monitor_class()
    log.info("building TensorRT %s engine from %s (%s); this can take minutes", trt.__version__, onnx_path,
             precision)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} ({precision}); see its log above")
    return bytes(serialized)


def onnx_has_quantization(onnx_path: Path) -> bool:
    import onnx  # noqa: PLC0415 - only needed when building

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def _network_has_half_inputs_or_weights(trt: ModuleType, network: object) -> bool:
    half = trt.DataType.HALF
    return any(network.get_input(i).dtype == half for i in range(network.num_inputs))


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
