"""TensorRT backend (TensorRT 10 and 11 Python API).

I/O is discovered and bound by tensor name, never by binding index: ``set_input_shape`` for every
input, ``set_tensor_address`` for every I/O tensor, then ``execute_async_v3(stream)``; every boolean
TensorRT returns is checked and a failure names the tensor and the call.

Two faces:
- :class:`TensorRTEngine`: the device-level engine the GPU pipeline enqueues on its own stream with
  its own device buffers (``streamd.gpu.engine.DeviceEngine``);
- :class:`TensorRTBackend`: the host-level ``InferenceBackend`` (numpy in, numpy out) through pinned
  staging buffers, for ``streamd check``, the bench and layout probing.

CUDA is reached only through ``streamd.cuda`` (or an injected stand-in in CPU tests).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np

from streamd.errors import BackendError
from streamd.inference.base import InferenceBackend, TensorIO, TensorSpec
from streamd.inference.registry import BackendOptions
from streamd.inference.tensorrt_build import EngineCache, ensure_engine, onnx_input_profile
from streamd.inference.tensorrt_import import import_tensorrt

log = logging.getLogger(__name__)

# systemd's CacheDirectory= sets STREAMD_CACHE_DIR in the shipped units (DynamicUser has no home).
DEFAULT_CACHE_DIR = Path(os.environ.get("STREAMD_CACHE_DIR") or Path.home() / ".cache" / "streamd") / "engines"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def default_cuda() -> SimpleNamespace:
    """The CUDA operations the backend uses, from streamd.cuda (tests inject host-memory stand-ins)."""
    from streamd.cuda import memory, runtime, stream  # noqa: PLC0415 - cuda-python is optional

    return SimpleNamespace(PinnedBuffer=memory.PinnedBuffer, DeviceBuffer=memory.DeviceBuffer,
                           Stream=stream.Stream, copy_htod_async=memory.copy_htod_async,
                           copy_dtoh_async=memory.copy_dtoh_async, use_device=runtime.use_device,
                           device_name=runtime.device_name, compute_capability=runtime.compute_capability)


def _dims(shape: object) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


class TensorRTEngine(TensorIO):
    """A deserialized engine and one execution context; ``enqueue`` binds by name and runs on a stream."""

    def __init__(self, trt: ModuleType, engine_bytes: bytes) -> None:
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise BackendError("TensorRT could not deserialize the engine (built by another TensorRT version "
                               "or for another GPU?); delete the cached engine to rebuild it")
        self._engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT create_execution_context returned None (out of device memory?)")
        self._context = context
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(None if d < 0 else d for d in _dims(engine.get_tensor_shape(name)))
            spec = TensorSpec(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(spec)
        self._names = [s.name for s in self._inputs + self._outputs]
        self._bound: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    def set_input_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Set every input's shape (skipped when unchanged); returns the resulting output shapes."""
        for spec in self._inputs:
            if spec.name not in shapes:
                raise BackendError(f"no shape given for TensorRT input '{spec.name}'")
            shape = tuple(int(d) for d in shapes[spec.name])
            if self._shapes.get(spec.name) == shape:
                continue
            if not self._context.set_input_shape(spec.name, shape):
                raise BackendError(f"TensorRT set_input_shape('{spec.name}', {shape}) failed: outside the "
                                   f"engine's optimization profile for {list(spec.shape)}?")
            self._shapes[spec.name] = shape
        return {spec.name: _dims(self._context.get_tensor_shape(spec.name)) for spec in self._outputs}

    def static_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Input shapes with the dynamic batch dimension set to ``batch`` (other dims must be static)."""
        shapes = {}
        for spec in self._inputs:
            dims = [batch if (i == 0 and d is None) else d for i, d in enumerate(spec.shape)]
            if any(d is None for d in dims):
                raise BackendError(f"TensorRT input '{spec.name}' {list(spec.shape)} has dynamic non-batch "
                                   "dimensions: give explicit shapes")
            shapes[spec.name] = tuple(dims)
        return shapes

    def bind(self, addresses: Mapping[str, int]) -> None:
        for name in self._names:
            try:
                address = int(addresses[name])
            except KeyError:
                raise BackendError(f"no device address given for TensorRT tensor '{name}'") from None
            if self._bound.get(name) == address:
                continue
            if not self._context.set_tensor_address(name, address):
                raise BackendError(f"TensorRT set_tensor_address('{name}', {address:#x}) failed")
            self._bound[name] = address

    def enqueue(self, addresses: Mapping[str, int], stream_ptr: int) -> None:
        """Bind every I/O tensor and enqueue on ``stream_ptr``; shapes must have been set (batch 1 by default)."""
        if self._context is None:
            raise BackendError("TensorRT engine is closed")
        if len(self._shapes) != len(self._inputs):
            self.set_input_shapes(self.static_shapes())
        self.bind(addresses)
        if not self._context.execute_async_v3(int(stream_ptr)):
            raise BackendError(f"TensorRT execute_async_v3 failed (tensors {self._names}, shapes {self._shapes})")

    def close(self) -> None:
        # Release in reverse order of creation: context, engine, runtime.
        self._context = None
        self._engine = None
        self._runtime = None


class TensorRTBackend(InferenceBackend):
    """Host-level TensorRT backend: copies numpy inputs through pinned memory, runs, copies outputs back."""

    name = "tensorrt"

    def __init__(self, engine_bytes: bytes = b"", device: int = 0, trt: ModuleType | None = None,
                 cuda: SimpleNamespace | None = None, *, engine: TensorRTEngine | None = None) -> None:
        """``engine``: run an engine its creator keeps and closes (the GPU builder's layout probe)
        instead of deserializing ``engine_bytes``."""
        self._cuda = cuda or default_cuda()
        self._cuda.use_device(device)
        self.device = device
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else TensorRTEngine(trt or import_tensorrt(), engine_bytes)
        self._stream = self._cuda.Stream()
        self._device_buffers: dict[str, object] = {}
        self._host_buffers: dict[str, object] = {}
        self._closed = False

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.engine.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.engine.outputs

    def _buffers(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[object, np.ndarray]:
        """Device and pinned host buffers for ``name`` large enough for ``shape`` (grown, never shrunk)."""
        nbytes = int(np.prod(shape)) * dtype.itemsize
        device = self._device_buffers.get(name)
        if device is None or device.nbytes < nbytes:
            if device is not None:
                device.free()
                self._host_buffers[name].free()
            self._device_buffers[name] = self._cuda.DeviceBuffer(nbytes)
            self._host_buffers[name] = self._cuda.PinnedBuffer((nbytes,), np.uint8)
        host = self._host_buffers[name].view(shape, dtype)
        return self._device_buffers[name], host

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise BackendError("TensorRT backend is closed")
        self._cuda.use_device(self.device)
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise BackendError(f"missing TensorRT inputs {missing}")
        output_shapes = self.engine.set_input_shapes({s.name: feeds[s.name].shape for s in self.inputs})
        addresses, outputs = {}, {}
        stream_ptr = self._stream.ptr
        for spec in self.inputs:
            array = np.asarray(feeds[spec.name], dtype=spec.dtype)
            device, host = self._buffers(spec.name, array.shape, spec.dtype)
            np.copyto(host, array)
            self._cuda.copy_htod_async(device.ptr, host.__array_interface__["data"][0], array.nbytes, stream_ptr)
            addresses[spec.name] = device.ptr
        for spec in self.outputs:
            device, host = self._buffers(spec.name, output_shapes[spec.name], spec.dtype)
            addresses[spec.name] = device.ptr
            outputs[spec.name] = host
        self.engine.enqueue(addresses, stream_ptr)
        for spec in self.outputs:
            host = outputs[spec.name]
            self._cuda.copy_dtoh_async(host.__array_interface__["data"][0], addresses[spec.name], host.nbytes,
                                       stream_ptr)
        self._stream.synchronize()
        return outputs

    def close(self) -> None:
        """Release in reverse order: buffers, stream, engine (when it owns it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for name in list(self._host_buffers):
            self._host_buffers.pop(name).free()
            self._device_buffers.pop(name).free()
        self._stream.close()
        if self._owns_engine:
            self.engine.close()


def load_engine_bytes(options: BackendOptions, trt: ModuleType, cuda: SimpleNamespace) -> bytes:
    path = Path(options.model_path)
    if path.suffix in ENGINE_SUFFIXES:
        if not path.is_file():
            raise BackendError(f"engine file {path} does not exist")
        return path.read_bytes()
    cache = EngineCache(Path(str(options.extra.get("engine_cache_dir", DEFAULT_CACHE_DIR))))
    max_batch = int(options.extra.get("max_batch", 1))
    if max_batch > 1:  # an export with a fixed batch of 1 gets a dynamic one (a graph edit, cached beside engines)
        from streamd.inference.onnx_batch import batch_dynamic_copy  # noqa: PLC0415

        path = batch_dynamic_copy(path, cache.directory)
    profile = onnx_input_profile(path, max_batch, opt_batch=max_batch)
    return ensure_engine(trt, path, options.precision, profile, cuda.device_name(options.device),
                         cuda.compute_capability(options.device), cache,
                         int(options.extra.get("workspace_bytes", 1 << 30)))


def open_backend(options: BackendOptions, trt: ModuleType | None = None,
                 cuda: SimpleNamespace | None = None) -> TensorRTBackend:
    """Registry opener: an engine file is loaded as is; an ONNX file goes through the engine cache."""
    trt = trt or import_tensorrt()
    cuda = cuda or default_cuda()
    cuda.use_device(options.device)
    return TensorRTBackend(load_engine_bytes(options, trt, cuda), options.device, trt, cuda)


def open_engine(options: BackendOptions, trt: ModuleType | None = None,
                cuda: SimpleNamespace | None = None) -> TensorRTEngine:
    """The device-level engine alone (the GPU detector's own; it binds its own device buffers)."""
    trt = trt or import_tensorrt()
    cuda = cuda or default_cuda()
    cuda.use_device(options.device)
    return TensorRTEngine(trt, load_engine_bytes(options, trt, cuda))
