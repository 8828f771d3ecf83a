"""STAND-IN for the ``tensorrt`` Python module (NOT TensorRT), used by CPU tests of the TensorRT backend.

It enforces the parts of the real API contract the backend relies on, strictly:
- I/O is addressed by tensor name (``str``); an unknown name makes the boolean calls return False,
  as TensorRT does, and a wrong argument type raises TypeError, as pybind11 does;
- ``execute_async_v3(stream_handle: int)`` returns False unless every input shape was set with
  ``set_input_shape`` and every I/O tensor has an address from ``set_tensor_address``;
- shapes outside the optimization profile are refused (False);
- ``BuilderFlag.FP16`` exists only for major version 10; version 11 networks are strongly typed.
- the builder refuses (returns None) a strongly typed network (``STRONGLY_TYPED`` on 10, every
  network on 11) with a precision flag (FP16/INT8), and ``create_network`` returns None for flag
  bits the version does not define (11 has no ``EXPLICIT_BATCH``); the parser records the ONNX's tensor types (inputs,
  outputs, weights) so tests see what TensorRT would type the network as.

"Device" memory is host memory here (see ``HostCuda``): the engine computes
``output[b, i] = 2 * input[b].flat[i] + 1`` for the first ``N`` input values, so data flow through
the backend's buffers is checked too. Every call is logged in ``calls`` for order checks.
"""

from __future__ import annotations

import ctypes
import enum
import json
from types import SimpleNamespace

import numpy as np

MAGIC = b"STANDIN-TRT-ENGINE\n"


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32}


def nptype(data_type: DataType) -> type:
    return _NP[data_type]


class Logger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    WARNING = Severity.WARNING
    ERROR = Severity.ERROR
    INFO = Severity.INFO

    def __init__(self, severity: Severity = Severity.WARNING) -> None:
        self.severity = severity


def _require(value: object, kind: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{what}: incompatible function arguments, got {type(value).__name__}")


class Dims(tuple):
    """TensorRT returns Dims objects that iterate like tuples."""


class ExecutionContext:
    def __init__(self, engine: CudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.calls = engine.calls

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        _require(name, str, "set_input_shape name")
        self.calls.append(("set_input_shape", name, tuple(shape)))
        spec = self.engine.io.get(name)
        if spec is None or spec["mode"] != "input":
            return False
        minimum, _, maximum = spec["profile"]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(minimum) or any(not lo <= d <= hi for d, lo, hi in zip(shape, minimum, maximum)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        _require(name, str, "get_tensor_shape name")
        spec = self.engine.io[name]
        if spec["mode"] == "input":
            return Dims(self.shapes.get(name, spec["shape"]))
        batch = next(iter(self.shapes.values()), (-1,))[0]
        return Dims((batch, *spec["shape"][1:]))

    def set_tensor_address(self, name: str, address: int) -> bool:
        _require(name, str, "set_tensor_address name")
        _require(address, int, "set_tensor_address memory")
        self.calls.append(("set_tensor_address", name))
        if name not in self.engine.io or address == 0:
            return False
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _require(stream_handle, int, "execute_async_v3 stream_handle")
        self.calls.append(("execute_async_v3", stream_handle))
        inputs = [n for n, s in self.engine.io.items() if s["mode"] == "input"]
        if any(n not in self.shapes for n in inputs) or set(self.addresses) != set(self.engine.io):
            return False
        source_name = inputs[0]
        source_shape = self.shapes[source_name]
        source = _view(self.addresses[source_name], source_shape, np.float32)
        for name, spec in self.engine.io.items():
            if spec["mode"] == "output":
                shape = tuple(self.get_tensor_shape(name))
                out = _view(self.addresses[name], shape, np.float32)
                count = int(np.prod(shape[1:]))
                out.reshape(shape[0], -1)[...] = 2 * source.reshape(shape[0], -1)[:, :count] + 1
        return True


def _view(address: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(address), dtype=dtype).reshape(shape)


class CudaEngine:
    def __init__(self, description: dict) -> None:
        self.io: dict[str, dict] = description["io"]
        self.calls: list[tuple] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str:
        _require(index, int, "get_tensor_name index")
        return list(self.io)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        _require(name, str, "get_tensor_mode name")
        spec = self.io.get(name)
        if spec is None:
            return TensorIOMode.NONE
        return TensorIOMode.INPUT if spec["mode"] == "input" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Dims:
        _require(name, str, "get_tensor_shape name")
        return Dims(self.io[name]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        _require(name, str, "get_tensor_dtype name")
        return DataType[self.io[name]["dtype"]]

    def create_execution_context(self) -> ExecutionContext:
        return ExecutionContext(self)


class Runtime:
    def __init__(self, logger: Logger) -> None:
        _require(logger, Logger, "Runtime logger")

    def deserialize_cuda_engine(self, serialized: bytes) -> CudaEngine | None:
        _require(serialized, (bytes, bytearray, memoryview), "deserialize_cuda_engine")
        data = bytes(serialized)
        if not data.startswith(MAGIC):
            return None  # the real runtime logs an error and returns None
        return CudaEngine(json.loads(data[len(MAGIC):]))


def serialize_engine(io: dict) -> bytes:
    """An engine blob this stand-in deserializes; ``io``: name -> mode/shape/dtype/profile."""
    return MAGIC + json.dumps({"io": io}).encode()


def make_module(version: str = "10.9.0") -> SimpleNamespace:
    """A fresh ``tensorrt`` stand-in of the given version (10.x has weak-typing flags, 11.x does not)."""
    major = int(version.split(".", maxsplit=1)[0])
    builder_flags = {"TF32": 0, "FP16": 1, "INT8": 2} if major < 11 else {"TF32": 0}
    creation_flags = {"STRONGLY_TYPED": 1} if major >= 11 else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}

    class IProgressMonitor:
        def __init__(self) -> None:
            self.initialised = True

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[SimpleNamespace] = []
            self.outputs: list[SimpleNamespace] = []
            self.weight_dtypes: dict[str, DataType] = {}

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> SimpleNamespace:
            return self.inputs[index]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[str] = []

        def parse(self, model: bytes) -> bool:
            import onnx  # noqa: PLC0415

            _require(model, (bytes, bytearray, memoryview), "parse model")
            try:
                graph = onnx.load_from_string(bytes(model)).graph
            except Exception as error:  # the real parser reports, never raises
                self.errors.append(str(error))
                return False
            return self._populate(graph)

        def parse_from_file(self, model: str) -> bool:
            import onnx  # noqa: PLC0415

            _require(model, str, "parse_from_file model")
            module.parsed_paths.append(model)
            try:
                graph = onnx.load(model).graph  # external data next to the file resolves, as in TensorRT
            except Exception as error:  # the real parser reports, never raises
                self.errors.append(str(error))
                return False
            return self._populate(graph)

        def _populate(self, graph: object) -> bool:
            def dtype(elem_type: int) -> DataType:
                return DataType.HALF if elem_type == 10 else DataType.FLOAT

            for tensor in graph.input:
                dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in tensor.type.tensor_type.shape.dim)
                self.network.inputs.append(SimpleNamespace(name=tensor.name, shape=dims,
                                                           dtype=dtype(tensor.type.tensor_type.elem_type)))
            for tensor in graph.output:
                dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in tensor.type.tensor_type.shape.dim)
                self.network.outputs.append(SimpleNamespace(name=tensor.name, shape=dims,
                                                            dtype=dtype(tensor.type.tensor_type.elem_type)))
            self.network.weight_dtypes = {t.name: dtype(t.data_type) for t in graph.initializer}
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            return self.errors[index]

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, minimum: tuple, optimum: tuple, maximum: tuple) -> None:
            _require(name, str, "set_shape name")
            self.shapes[name] = (tuple(minimum), tuple(optimum), tuple(maximum))

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags: set[int] = set()
            self.profiles: list[Profile] = []
            self.progress_monitor = None
            self.pools: dict = {}

        def set_flag(self, flag: int) -> None:
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool: object, size: int) -> None:
            self.pools[pool] = size

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger: Logger) -> None:
            _require(logger, Logger, "Builder logger")
            module.builds = getattr(module, "builds", 0)

        def create_network(self, flags: int = 0) -> Network | None:
            _require(flags, int, "create_network flags")
            module.last_network_flags = flags
            known = sum(1 << int(bit) for bit in vars(module.NetworkDefinitionCreationFlag).values())
            if flags & ~known:
                return None  # flag bits this version does not define: TensorRT logs an error
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
            module.builds += 1
            module.last_config = config
            module.last_network = network
            strongly_typed = major >= 11 or bool(network.flags & (1 << creation_flags["STRONGLY_TYPED"]))
            precision_flags = {builder_flags[name] for name in ("FP16", "INT8") if name in builder_flags}
            if strongly_typed and config.flags & precision_flags:
                return None  # TensorRT logs: precision flags are not allowed on a strongly typed network
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.step_complete("Building engine", 0)
                monitor.step_complete("Building engine", 1)
                monitor.phase_finish("Building engine")
            if not config.profiles:
                return None
            profile = config.profiles[0].shapes
            io = {t.name: {"mode": "input", "shape": list(t.shape), "dtype": t.dtype.name,
                           "profile": [list(s) for s in profile[t.name]]} for t in network.inputs}
            for t in network.outputs:
                io[t.name] = {"mode": "output", "shape": list(t.shape), "dtype": t.dtype.name}
            return serialize_engine(io)

    module = SimpleNamespace(
        __name__="tensorrt_standin", __version__=version, Logger=Logger, Runtime=Runtime,
        TensorIOMode=TensorIOMode, DataType=DataType, nptype=nptype, Builder=Builder, OnnxParser=OnnxParser,
        IProgressMonitor=IProgressMonitor,
        BuilderFlag=SimpleNamespace(**builder_flags),
        NetworkDefinitionCreationFlag=SimpleNamespace(**creation_flags),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        builds=0, parsed_paths=[])
    return module


class _HostBuffer:
    """Host memory standing in for pinned or device memory; ``ptr`` is a real address."""

    def __init__(self, shape: int | tuple[int, ...], dtype: object = np.uint8) -> None:
        self._array = np.zeros(shape, dtype=dtype)
        self.nbytes = self._array.nbytes
        self.ptr = self._array.__array_interface__["data"][0]
        self.freed = False

    @property
    def array(self) -> np.ndarray:
        return self._array

    def view(self, shape: tuple[int, ...], dtype: object) -> np.ndarray:
        dtype = np.dtype(dtype)
        return self._array.reshape(-1).view(np.uint8)[:int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)

    def free(self) -> None:
        self.freed = True


class _HostStream:
    def __init__(self) -> None:
        self.ptr = 0x5EED
        self.closed = False

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def host_cuda() -> SimpleNamespace:
    """CUDA operations on host memory, with the names the TensorRT backend takes from streamd.cuda."""
    def copy(dst: int, src: int, nbytes: int, stream_ptr: int) -> None:
        _require(stream_ptr, int, "stream")
        ctypes.memmove(dst, src, nbytes)

    def device_buffer(nbytes: int) -> _HostBuffer:
        return _HostBuffer((nbytes,), np.uint8)

    return SimpleNamespace(PinnedBuffer=_HostBuffer, DeviceBuffer=device_buffer, Stream=_HostStream,
                           copy_htod_async=copy, copy_dtoh_async=copy, use_device=lambda device: None,
                           device_name=lambda device: "Stand-in GPU", compute_capability=lambda device: (9, 0))
