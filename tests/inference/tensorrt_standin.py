"""STAND-IN for the ``tensorrt`` Python module (NOT TensorRT), as strict as the real bindings, for CPU tests.

``make_module("10.x")`` or ``make_module("11.x")`` returns a fresh module of that major version. Every
class has ``__slots__`` (a pybind11 class has no ``__dict__``), so assigning an attribute the
version does not have raises AttributeError, as TensorRT does; enums are real enum classes, so a
member the version removed raises AttributeError and an ``int`` where an enum is expected raises
TypeError. Which behaviour was checked against which source:

- pybind11 argument conversion (TensorRT ``python/src/infer/pyCore.cpp``, ``pyFoundationalTypes.cpp``):
  a wrong argument type raises TypeError ("incompatible function arguments"); ``Dims`` converts
  implicitly from any sequence of integers (``implicitly_convertible<std::vector<int32_t>, Dims>``),
  so a float, a float element, a nested or float array, a str or a bare int is a TypeError, while
  a tuple, a list or an integer numpy vector is accepted; pybind11 passes ``None`` for a pointer
  argument as nullptr.
- ``IOptimizationProfile.set_shape`` (pyCore.cpp ``opt_profile_set_shape``): calls ``setDimensions``
  for min, opt, max in turn and raises RuntimeError("Shape provided for opt is inconsistent with
  other shapes.") when one fails: ranks differ, a dimension is negative, or min <= opt <= max fails.
- ``IBuilderConfig.add_optimization_profile`` (C++ ``addOptimizationProfile``): the profile's index,
  or -1 when the profile is not valid; ``None`` arrives as nullptr and gets -1. A profile that does
  not fit the network (a missing input, another rank, a range wider than a static dimension) fails
  at ``build_serialized_network``, which returns None (TensorRT logs the error).
- ``IExecutionContext`` (C++ ``setInputShape``/``setTensorAddress``/``enqueueV3``, all returning
  bool, bound as is): ``set_input_shape`` returns False for an unknown name, an output, another rank
  or a shape outside the profile; ``set_tensor_address`` returns False for an unknown name or a null
  input address; ``execute_async_v3(stream_handle: int)`` returns False until every input shape and
  every I/O address is set (enqueueV3's documented precondition: an output needs an address or an
  IOutputAllocator). This stand-in's reading, not checked against a real run: a null *output*
  address is accepted by ``set_tensor_address`` and then fails ``execute_async_v3``; a stream handle
  that is not a live stream makes ``execute_async_v3`` return False. Pointer alignment is not checked.
- ``Runtime.deserialize_cuda_engine`` returns None (TensorRT logs why) for bytes that are not an
  engine and for an engine built by another TensorRT version (engines are not portable across
  versions unless built version-compatible, which streamd does not do).
- ``ICudaEngine`` (C++ doc comments of NvInferRuntime.h, 10.x): ``num_io_tensors``;
  ``get_tensor_name(index)`` (None out of range: a null ``char const*``); ``get_tensor_mode``
  (``TensorIOMode.NONE`` for an unknown name); ``get_tensor_dtype`` (``DataType.FLOAT`` for an
  unknown name); ``get_tensor_shape`` (``Dims{-1, {}}`` for an unknown name, whose length Python
  cannot take: ValueError here).
- Versions (docs.nvidia.com "Removed Python APIs and Replacements" 10.x -> 11.x, 11.4.0 and latest;
  the Python Builder pages of 8.4, 10.x and 11.0; the 10.x IBuilderConfig page):
  ``IBuilderConfig.max_workspace_size`` and ``Builder.max_batch_size`` are listed in neither 10 nor 11
  (implicit batch went in 10.0); ``BuilderFlag.FP16/INT8/BF16/FP8/OBEY_PRECISION_CONSTRAINTS``,
  ``IBuilderConfig.int8_calibrator`` (with ``IInt8EntropyCalibrator2``) and ``Builder.platform_has_*``
  are 10 only; ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is present but deprecated and ignored
  on 10, gone on 11, where ``STRONGLY_TYPED`` is deprecated, ignored and numbered 0 (every network is
  strongly typed). ``create_network`` returns None for flag bits the version does not define and the
  builder returns None for a precision flag on a strongly typed network (TensorRT logs an error in
  both; the None is this stand-in's reading, not checked against a real run).

Not TensorRT's checks, but what a real run would show as a crash, corrupt data or compute-sanitizer
report; the stand-in raises :class:`MemoryMisuseError` instead (at the call, or at the synchronise
that would report the CUDA error):
- "Device" memory is host memory (``host_cuda()``): every buffer is registered, and
  ``execute_async_v3`` checks that each bound address lies in a live device buffer large enough for
  the tensor's shape and dtype; copies check both ends the same way (the host end must be pinned:
  streamd's rule of no pageable copies on the per-frame path);
- each buffer remembers the dtype of what was last written into it (a copy carries the dtype of
  the pinned view it came from; the engine writes its outputs' dtypes): an input of another dtype,
  an input never written, or an output copied into a view of another dtype is refused;
- work is asynchronous: copies and ``execute_async_v3`` are queued on their stream and run only
  when that stream is synchronised (or closed, or a buffer is freed: cudaFree synchronises), so a
  result read before its stream was synchronised is still zeros, and a missing sync fails a test.
  ``host_cuda().log`` records every enqueue and synchronise as ``(call, stream_ptr, ...)``.

The engine computes ``output[b].flat[i] = 2 * input[b].flat[i] + 1`` (first input, in the tensors'
dtypes) for the first values, so data flow through the buffers is checked too. TensorRT calls are
also logged in ``engine.calls`` for order checks.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import json
import weakref
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np

MAGIC = b"STANDIN-TRT-ENGINE\n"


class MemoryMisuseError(RuntimeError):
    """What a real GPU would turn into an illegal access, corrupt data or a sanitizer report."""


class _Enum(enum.Enum):
    """A pybind11 enum: ``int(member)`` works, but an int is not a member."""

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value


class TensorIOMode(_Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(_Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
# onnx.TensorProto element type -> DataType
_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
         2: DataType.UINT8, 7: DataType.INT64}


def _require(value: object, kind: type | tuple[type, ...], what: str) -> None:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise TypeError(f"{what}(): incompatible function arguments, got {type(value).__name__}")


def nptype(data_type: DataType) -> type:
    _require(data_type, DataType, "nptype")
    return _NP[data_type]


def _dims(value: object, what: str) -> tuple[int, ...]:
    """pybind11's conversion of a Python object to Dims: a sequence of integers, nothing else."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"{what}(): incompatible function arguments, {type(value).__name__} is not a Dims")
    items = list(value)
    for item in items:
        if isinstance(item, (float, np.floating, bool)) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{what}(): incompatible function arguments, dimension {item!r} is not an int")
    return tuple(int(d) for d in items)


class Dims(tuple):
    """TensorRT returns Dims objects that iterate like tuples."""

    __slots__ = ()


class ILogger:
    class Severity(_Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    __slots__ = ()


class Logger(ILogger):
    __slots__ = ("min_severity",)
    INTERNAL_ERROR = ILogger.Severity.INTERNAL_ERROR
    ERROR = ILogger.Severity.ERROR
    WARNING = ILogger.Severity.WARNING
    INFO = ILogger.Severity.INFO
    VERBOSE = ILogger.Severity.VERBOSE

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        _require(min_severity, ILogger.Severity, "Logger")
        self.min_severity = min_severity


# ---- "device" memory and streams (host memory, asynchronous by queue) ---------------------------------

_BUFFERS: weakref.WeakSet = weakref.WeakSet()
_STREAMS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_STREAM_IDS = itertools.count(0x5EED)


class _HostBuffer:
    """Host memory standing in for pinned (``kind="pinned"``) or device memory; ``ptr`` is a real address."""

    __slots__ = ("__weakref__", "_array", "content", "freed", "kind", "nbytes", "ptr")

    def __init__(self, shape: int | tuple[int, ...], dtype: object = np.uint8, kind: str = "pinned") -> None:
        self._array = np.zeros(shape, dtype=dtype)
        self.nbytes = self._array.nbytes
        self.ptr = self._array.__array_interface__["data"][0]
        self.kind = kind
        self.freed = False
        # dtype of what was last written (a copy carries its source's; the engine writes its outputs').
        self.content: np.dtype | None = self._array.dtype if kind == "pinned" else None
        _BUFFERS.add(self)

    @property
    def array(self) -> np.ndarray:
        if self.freed:
            raise MemoryMisuseError("PinnedBuffer.array: use after free")
        return self._array

    def view(self, shape: tuple[int, ...], dtype: object) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes > self.nbytes:
            raise ValueError(f"view {shape} {dtype} needs {nbytes} bytes, buffer holds {self.nbytes}")
        self.content = dtype
        return self.array.reshape(-1).view(np.uint8)[:nbytes].view(dtype).reshape(shape)

    def free(self) -> None:
        if not self.freed:
            synchronize_all()  # cudaFree / cudaFreeHost synchronise the device
        self.freed = True


def _buffer(address: int, nbytes: int, kind: str, what: str) -> _HostBuffer:
    for buffer in list(_BUFFERS):
        if buffer.ptr <= address < buffer.ptr + max(buffer.nbytes, 1):
            if buffer.freed:
                raise MemoryMisuseError(f"{what}: {address:#x} is in a freed buffer (use after free)")
            if buffer.kind != kind:
                raise MemoryMisuseError(f"{what}: {address:#x} is {buffer.kind} memory, {kind} memory expected")
            if address + nbytes > buffer.ptr + buffer.nbytes:
                raise MemoryMisuseError(f"{what}: {nbytes} bytes at {address:#x} overrun the {buffer.nbytes}-byte "
                                   f"buffer at {buffer.ptr:#x}")
            return buffer
    raise MemoryMisuseError(f"{what}: {address:#x} is not in any allocated {kind} buffer")


class _HostStream:
    """A CUDA stream: enqueued work runs, in order, only when the stream is synchronised."""

    __slots__ = ("__weakref__", "closed", "log", "pending", "ptr")

    def __init__(self, log: list | None = None) -> None:
        self.ptr = next(_STREAM_IDS)
        self.closed = False
        self.pending: list[Callable[[], None]] = []
        self.log = log if log is not None else []
        _STREAMS[self.ptr] = self

    def enqueue(self, entry: tuple, work: Callable[[], None]) -> None:
        if self.closed:
            raise MemoryMisuseError(f"{entry[0]} on destroyed stream {self.ptr:#x}")
        self.log.append(entry)
        self.pending.append(work)

    def _run(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    def synchronize(self) -> None:
        self.log.append(("synchronize", self.ptr))
        self._run()

    def close(self) -> None:
        # cudaStreamDestroy returns at once; the device still completes the queued work.
        self._run()
        self.closed = True


def synchronize_all() -> None:
    """cudaDeviceSynchronize: every stream's queued work runs."""
    for stream in list(_STREAMS.values()):
        stream._run()


def _stream(stream_ptr: object, what: str) -> _HostStream:
    _require(stream_ptr, int, what)
    stream = _STREAMS.get(stream_ptr)
    if stream is None or stream.closed:
        raise MemoryMisuseError(f"{what}: {stream_ptr:#x} is not a live stream (cudaErrorInvalidResourceHandle)")
    return stream


def host_cuda() -> SimpleNamespace:
    """CUDA operations on host memory, with the names the TensorRT backend takes from streamd.cuda.

    ``log`` lists every enqueue and synchronise on this namespace's streams, in call order.
    """
    log: list[tuple] = []

    def copy(kind: str, dst_kind: str, src_kind: str) -> Callable[[int, int, int, int], None]:
        def enqueue(dst: int, src: int, nbytes: int, stream_ptr: int) -> None:
            stream = _stream(stream_ptr, kind)
            _require(nbytes, int, kind)
            target = _buffer(dst, nbytes, dst_kind, f"{kind} destination")
            source = _buffer(src, nbytes, src_kind, f"{kind} source")

            def work() -> None:
                if dst_kind == "pinned" and source.content is not None and target.content != source.content:
                    raise MemoryMisuseError(f"{kind}: {source.content} data copied into a {target.content} view")
                ctypes.memmove(dst, src, nbytes)
                target.content = source.content

            stream.enqueue((kind, stream_ptr, nbytes), work)
        return enqueue

    def device_buffer(nbytes: int) -> _HostBuffer:
        return _HostBuffer((nbytes,), np.uint8, kind="device")

    return SimpleNamespace(PinnedBuffer=_HostBuffer, DeviceBuffer=device_buffer, Stream=lambda: _HostStream(log),
                           copy_htod_async=copy("copy_htod", "device", "pinned"),
                           copy_dtoh_async=copy("copy_dtoh", "pinned", "device"), use_device=lambda device: None,
                           device_name=lambda device: "Stand-in GPU", compute_capability=lambda device: (9, 0), log=log)


# ---- runtime side: engine and execution context ----------------------------------------------------------

def _volume(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


class ExecutionContext:
    __slots__ = ("addresses", "calls", "engine", "shapes")

    def __init__(self, engine: CudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.calls = engine.calls

    def set_input_shape(self, name: str, shape: object) -> bool:
        _require(name, str, "set_input_shape")
        shape = _dims(shape, "set_input_shape")
        self.calls.append(("set_input_shape", name, shape))
        spec = self.engine.io.get(name)
        if spec is None or spec["mode"] != "input":
            return False
        minimum, _, maximum = spec["profile"]
        if len(shape) != len(minimum) or any(not lo <= d <= hi for d, lo, hi in zip(shape, minimum, maximum)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        _require(name, str, "get_tensor_shape")
        spec = self.engine.io.get(name)
        if spec is None:
            raise ValueError(f"get_tensor_shape: no tensor '{name}' (nbDims -1)")
        if spec["mode"] == "input":
            return Dims(self.shapes.get(name, spec["shape"]))
        batch = next(iter(self.shapes.values()), (-1,))[0]
        return Dims((batch, *spec["shape"][1:]))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        _require(name, str, "set_tensor_address")
        _require(memory, int, "set_tensor_address")
        self.calls.append(("set_tensor_address", name))
        spec = self.engine.io.get(name)
        if spec is None or (memory == 0 and spec["mode"] == "input"):
            return False
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _require(stream_handle, int, "execute_async_v3")
        self.calls.append(("execute_async_v3", stream_handle))
        io = self.engine.io
        inputs = [n for n, s in io.items() if s["mode"] == "input"]
        if any(n not in self.shapes for n in inputs) or set(self.addresses) != set(io):
            return False
        if any(self.addresses[n] == 0 for n in io):
            return False  # a null output address needs an IOutputAllocator, which this stand-in has none of
        stream = _STREAMS.get(stream_handle)
        if stream is None or stream.closed:
            return False  # TensorRT logs cudaErrorInvalidResourceHandle
        tensors = {}
        for name in io:
            shape = tuple(self.get_tensor_shape(name))
            dtype = np.dtype(nptype(DataType[io[name]["dtype"]]))
            buffer = _buffer(self.addresses[name], _volume(shape) * dtype.itemsize, "device",
                             f"execute_async_v3 tensor '{name}' {shape} {dtype}")
            tensors[name] = (shape, dtype, buffer)
        stream.enqueue(("execute_async_v3", stream_handle), lambda: self._compute(inputs[0], tensors))
        return True

    def _compute(self, source_name: str, tensors: dict) -> None:
        for name, (_, dtype, buffer) in tensors.items():
            if self.engine.io[name]["mode"] == "input" and buffer.content != dtype:
                raise MemoryMisuseError(f"execute_async_v3: input '{name}' is {dtype}, its buffer holds "
                                   f"{buffer.content or 'nothing written yet'}")
        shape, dtype, _ = tensors[source_name]
        source = _view(self.addresses[source_name], shape, dtype).reshape(shape[0], -1)
        for name, (out_shape, out_dtype, buffer) in tensors.items():
            if self.engine.io[name]["mode"] == "output":
                out = _view(self.addresses[name], out_shape, out_dtype).reshape(out_shape[0], -1)
                count = out.shape[1]
                out[...] = (2 * source[:, :count].astype(np.float64) + 1).astype(out_dtype)
                buffer.content = out_dtype


def _view(address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = _volume(shape) * dtype.itemsize
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(address), dtype=dtype).reshape(shape)


class CudaEngine:
    __slots__ = ("calls", "io")

    def __init__(self, description: dict) -> None:
        self.io: dict[str, dict] = description["io"]
        self.calls: list[tuple] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str | None:
        _require(index, int, "get_tensor_name")
        names = list(self.io)
        return names[index] if 0 <= index < len(names) else None

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        _require(name, str, "get_tensor_mode")
        spec = self.io.get(name)
        if spec is None:
            return TensorIOMode.NONE
        return TensorIOMode.INPUT if spec["mode"] == "input" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Dims:
        _require(name, str, "get_tensor_shape")
        if name not in self.io:
            raise ValueError(f"get_tensor_shape: no tensor '{name}' (nbDims -1)")
        return Dims(self.io[name]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        _require(name, str, "get_tensor_dtype")
        spec = self.io.get(name)
        return DataType[spec["dtype"]] if spec is not None else DataType.FLOAT

    def create_execution_context(self) -> ExecutionContext:
        return ExecutionContext(self)


class Runtime:
    __slots__ = ("logger",)

    def __init__(self, logger: ILogger) -> None:
        _require(logger, ILogger, "Runtime")
        self.logger = logger

    version: str | None = None  # set per module by make_module

    def deserialize_cuda_engine(self, serialized: bytes) -> CudaEngine | None:
        _require(serialized, (bytes, bytearray, memoryview), "deserialize_cuda_engine")
        data = bytes(serialized)
        if not data.startswith(MAGIC):
            return None  # the real runtime logs an error and returns None
        description = json.loads(data[len(MAGIC):])
        built_by = description.get("version")
        if built_by is not None and self.version is not None and built_by != self.version:
            return None  # an engine only loads in the TensorRT version that built it (TensorRT logs why)
        return CudaEngine(description)


def serialize_engine(io: dict, version: str | None = None) -> bytes:
    """An engine blob this stand-in deserializes; ``io``: name -> mode/shape/dtype/profile; ``version``:
    the TensorRT version that built it (None: any stand-in loads it)."""
    return MAGIC + json.dumps({"io": io, **({"version": version} if version else {})}).encode()


# ---- builder side, per major version ---------------------------------------------------------------------

def _enum(name: str, members: dict[str, int]) -> type[_Enum]:
    return _Enum(name, members)


def make_module(version: str = "10.9.0") -> SimpleNamespace:
    """A fresh ``tensorrt`` stand-in of the given version (10.x has weak typing and calibrators, 11.x not).

    Test hooks (not TensorRT): ``parser_errors`` (the parser fails with these), ``fail_build`` (the
    builder returns None); records: ``builds``, ``parsed_paths``, ``last_network``, ``last_config``,
    ``last_network_flags``, ``calibration`` (what the builder asked a legacy calibrator).
    """
    major = int(version.split(".", maxsplit=1)[0])
    if major < 10:
        raise ValueError("the stand-in models TensorRT 10 and 11 only")
    ten = major == 10
    builder_flag = _enum("BuilderFlag", {
        "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 5, "DISABLE_TIMING_CACHE": 6, "TF32": 7, "SPARSE_WEIGHTS": 8,
        **({"FP16": 0, "INT8": 1, "OBEY_PRECISION_CONSTRAINTS": 10, "PREFER_PRECISION_CONSTRAINTS": 11,
            "FP8": 16, "BF16": 19} if ten else {})})
    creation_flag = _enum("NetworkDefinitionCreationFlag", (
        {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_AOT_PYTHON_PLUGINS": 2, "PREFER_JIT_PYTHON_PLUGINS": 3}
        if ten else {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 1, "PREFER_JIT_PYTHON_PLUGINS": 2}))
    memory_pool = _enum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "DLA_LOCAL_DRAM": 2,
                                           "DLA_GLOBAL_DRAM": 3, "TACTIC_DRAM": 4})
    device_type = _enum("DeviceType", {"GPU": 0, "DLA": 1})
    precision_flags = {builder_flag[n] for n in ("FP16", "INT8", "FP8", "BF16") if n in builder_flag.__members__}

    class _Initialised:
        """A pybind11 trampoline base: a Python subclass must call the base ``__init__``."""

        __slots__ = ("_initialised",)

        def __init__(self) -> None:
            self._initialised = True

    def _require_initialised(value: object, base: type, what: str) -> None:
        _require(value, base, what)
        if not getattr(value, "_initialised", False):
            raise TypeError(f"{what}: {base.__name__}.__init__() must be called when overriding __init__")

    class IProgressMonitor(_Initialised):
        __slots__ = ()

    class IInt8Calibrator(_Initialised):
        __slots__ = ()

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        __slots__ = ()

    class ITensor:
        __slots__ = ("dtype", "name", "shape")

        def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType) -> None:
            self.name, self.shape, self.dtype = name, Dims(shape), dtype

    class INetworkDefinition:
        __slots__ = ("flags", "inputs", "outputs", "weight_dtypes")

        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.weight_dtypes: dict[str, DataType] = {}

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, index: int) -> ITensor | None:
            _require(index, int, "get_input")
            return self.inputs[index] if 0 <= index < len(self.inputs) else None

        def get_output(self, index: int) -> ITensor | None:
            _require(index, int, "get_output")
            return self.outputs[index] if 0 <= index < len(self.outputs) else None

    class OnnxParser:
        __slots__ = ("errors", "network")

        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            _require(network, INetworkDefinition, "OnnxParser")
            _require(logger, ILogger, "OnnxParser")
            self.network = network
            self.errors: list[str] = []

        def parse(self, model: bytes) -> bool:
            import onnx  # noqa: PLC0415

            _require(model, (bytes, bytearray, memoryview), "parse")
            return self._load(lambda: onnx.load_from_string(bytes(model)))

        def parse_from_file(self, model: str) -> bool:
            import onnx  # noqa: PLC0415

            _require(model, str, "parse_from_file")
            module.parsed_paths.append(model)
            return self._load(lambda: onnx.load(model))  # external data next to the file resolves, as in TensorRT

        def _load(self, load: Callable[[], object]) -> bool:
            if module.parser_errors:
                self.errors.extend(module.parser_errors)
                return False
            try:
                model = load()
            except Exception as error:  # the real parser reports, never raises
                self.errors.append(str(error))
                return False
            module.parsed_models.append(model)
            graph = model.graph
            initializers = {t.name for t in graph.initializer}

            def tensor(value: object) -> ITensor:
                kind = value.type.tensor_type
                dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in kind.shape.dim)
                return ITensor(value.name, dims, _ONNX.get(kind.elem_type, DataType.FLOAT))

            self.network.inputs = [tensor(t) for t in graph.input if t.name not in initializers]
            self.network.outputs = [tensor(t) for t in graph.output]
            self.network.weight_dtypes = {t.name: _ONNX.get(t.data_type, DataType.FLOAT) for t in graph.initializer}
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            _require(index, int, "get_error")
            return self.errors[index]

    class IOptimizationProfile:
        __slots__ = ("partial", "shapes")

        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
            self.partial: set[str] = set()  # inputs whose set_shape failed after min (or opt) was stored

        def set_shape(self, input: str, min: object, opt: object, max: object) -> None:  # noqa: A002 - TensorRT's names
            _require(input, str, "set_shape")
            shapes = [_dims(min, "set_shape"), _dims(opt, "set_shape"), _dims(max, "set_shape")]
            for index, which in enumerate(("min", "opt", "max")):
                shape = shapes[index]
                earlier = shapes[:index]
                if (any(d < 0 for d in shape) or any(len(e) != len(shape) for e in earlier)
                        or any(any(lo > d for lo, d in zip(e, shape)) for e in earlier)):
                    if index:
                        self.partial.add(input)  # setDimensions(kMIN) succeeded: the profile is now invalid
                    raise RuntimeError(f"Shape provided for {which} is inconsistent with other shapes.")
            self.shapes[input] = tuple(shapes)
            self.partial.discard(input)

        def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
            _require(input, str, "get_shape")
            return [Dims(s) for s in self.shapes.get(input, ())]

    config_slots = ("DLA_core", "_default_device_type", "_progress_monitor", "flag_set", "pools", "profiles")

    class IBuilderConfig:
        __slots__ = (*config_slots, "_int8_calibrator") if ten else config_slots

        def __init__(self) -> None:
            self.flag_set: set = set()
            self.profiles: list[IOptimizationProfile] = []
            self.pools: dict = {}
            self._progress_monitor = None
            self._default_device_type = device_type.GPU
            self.DLA_core = -1
            if ten:
                self._int8_calibrator = None

        @property
        def flags(self) -> int:
            return sum(1 << int(flag) for flag in self.flag_set)

        def set_flag(self, flag: object) -> None:
            _require(flag, builder_flag, "set_flag")
            self.flag_set.add(flag)

        def get_flag(self, flag: object) -> bool:
            _require(flag, builder_flag, "get_flag")
            return flag in self.flag_set

        def set_memory_pool_limit(self, pool: object, pool_size: int) -> None:
            _require(pool, memory_pool, "set_memory_pool_limit")
            _require(pool_size, int, "set_memory_pool_limit")
            if pool_size < 0:
                raise TypeError("set_memory_pool_limit(): incompatible function arguments, size is negative")
            self.pools[pool] = pool_size

        def add_optimization_profile(self, profile: IOptimizationProfile | None) -> int:
            if profile is None:
                return -1  # nullptr: TensorRT's parameter check fails
            _require(profile, IOptimizationProfile, "add_optimization_profile")
            if profile.partial:
                return -1  # IOptimizationProfile::isValid(): min set without opt/max
            self.profiles.append(profile)
            return len(self.profiles) - 1

        @property
        def num_optimization_profiles(self) -> int:
            return len(self.profiles)

        @property
        def progress_monitor(self) -> IProgressMonitor | None:
            return self._progress_monitor

        @progress_monitor.setter
        def progress_monitor(self, monitor: IProgressMonitor | None) -> None:
            if monitor is not None:
                _require_initialised(monitor, IProgressMonitor, "progress_monitor")
            self._progress_monitor = monitor

        @property
        def default_device_type(self) -> object:
            return self._default_device_type

        @default_device_type.setter
        def default_device_type(self, value: object) -> None:
            _require(value, device_type, "default_device_type")
            self._default_device_type = value

    if ten:
        def _get_calibrator(self: IBuilderConfig) -> IInt8Calibrator | None:
            return self._int8_calibrator

        def _set_calibrator(self: IBuilderConfig, calibrator: IInt8Calibrator | None) -> None:
            if calibrator is not None:
                _require_initialised(calibrator, IInt8Calibrator, "int8_calibrator")
            self._int8_calibrator = calibrator

        IBuilderConfig.int8_calibrator = property(_get_calibrator, _set_calibrator)

    def _fits(network: INetworkDefinition, profile: IOptimizationProfile | None) -> bool:
        """Whether ``profile`` covers every input: its rank, its static dimensions, a range for dynamic ones."""
        for tensor in network.inputs:
            shapes = profile.shapes.get(tensor.name) if profile is not None else None
            if shapes is None:
                if any(d < 0 for d in tensor.shape):
                    return False  # a dynamic input needs a profile
                continue
            for shape in shapes:
                if len(shape) != len(tensor.shape) or any(s != d for s, d in zip(shape, tensor.shape) if d >= 0):
                    return False
        return profile is None or set(profile.shapes) <= {t.name for t in network.inputs}

    def _calibrate(calibrator: IInt8Calibrator, network: INetworkDefinition) -> None:
        """What TensorRT 10 asks an implicit-quantization calibrator, in its order."""
        record = module.calibration = {"batch_size": calibrator.get_batch_size(),
                                       "cache_before": calibrator.read_calibration_cache(), "batches": []}
        _require(record["batch_size"], int, "get_batch_size")
        names = [t.name for t in network.inputs]
        while (batch := calibrator.get_batch(names)) is not None:
            if len(batch) != len(names) or not all(isinstance(p, int) and p for p in batch):
                raise TypeError(f"get_batch must return one device pointer (int) per input {names}, got {batch!r}")
            record["batches"].append(list(batch))
        calibrator.write_calibration_cache(b"TRT-calibration")

    class Builder:
        __slots__ = ("logger",)

        def __init__(self, logger: ILogger) -> None:
            _require(logger, ILogger, "Builder")
            self.logger = logger

        if ten:  # removed in 11: strongly typed networks only
            platform_has_tf32 = platform_has_fast_fp16 = platform_has_fast_int8 = property(lambda self: True)

        def create_network(self, flags: int = 0) -> INetworkDefinition | None:
            _require(flags, int, "create_network")
            if flags < 0 or flags >= 1 << 32:
                raise TypeError("create_network(): incompatible function arguments, flags is not a uint32")
            module.last_network_flags = flags
            if flags & ~sum(1 << int(member) for member in creation_flag):
                return None  # flag bits this version does not define: TensorRT logs an error
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
            _require(network, INetworkDefinition, "build_serialized_network")
            _require(config, IBuilderConfig, "build_serialized_network")
            module.builds += 1
            module.last_config = config
            module.last_network = network
            strongly_typed = not ten or bool(network.flags & (1 << int(creation_flag.STRONGLY_TYPED)))
            if module.fail_build or (strongly_typed and config.flag_set & precision_flags):
                return None  # TensorRT logs: precision flags are not allowed on a strongly typed network
            profile = config.profiles[0] if config.profiles else None
            if not _fits(network, profile):
                return None  # TensorRT logs which input the profile does not fit
            calibrator = config.int8_calibrator if ten else None
            if calibrator is not None and builder_flag.INT8 in config.flag_set:
                _calibrate(calibrator, network)
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.step_complete("Building engine", 0)
                monitor.step_complete("Building engine", 1)
                monitor.phase_finish("Building engine")
            io = {}
            for t in network.inputs:
                shapes = profile.shapes[t.name] if profile is not None and t.name in profile.shapes else (t.shape,) * 3
                io[t.name] = {"mode": "input", "shape": list(t.shape), "dtype": t.dtype.name,
                              "profile": [list(s) for s in shapes]}
            for t in network.outputs:
                io[t.name] = {"mode": "output", "shape": list(t.shape), "dtype": t.dtype.name}
            return serialize_engine(io, version)

    class VersionedRuntime(Runtime):
        __slots__ = ()

    VersionedRuntime.version = version
    VersionedRuntime.__name__ = VersionedRuntime.__qualname__ = "Runtime"

    module = SimpleNamespace(
        __name__="tensorrt_standin", __version__=version, ILogger=ILogger, Logger=Logger, Runtime=VersionedRuntime,
        TensorIOMode=TensorIOMode, DataType=DataType, Dims=Dims, nptype=nptype, Builder=Builder,
        OnnxParser=OnnxParser, IProgressMonitor=IProgressMonitor, IBuilderConfig=IBuilderConfig,
        INetworkDefinition=INetworkDefinition, IOptimizationProfile=IOptimizationProfile, ITensor=ITensor,
        ICudaEngine=CudaEngine, IExecutionContext=ExecutionContext,
        BuilderFlag=builder_flag, NetworkDefinitionCreationFlag=creation_flag, MemoryPoolType=memory_pool,
        DeviceType=device_type, builds=0, parsed_paths=[], parsed_models=[], parser_errors=[], fail_build=False,
        calibration=None, last_network_flags=None, last_network=None, last_config=None)
    if ten:
        module.IInt8Calibrator = IInt8Calibrator
        module.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return module
