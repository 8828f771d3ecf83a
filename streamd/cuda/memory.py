"""Pinned host and device buffers, and the async copies between them.

Each buffer is one allocation with an explicit, idempotent ``free()``; nothing relies on ``__del__``.
Pinned buffers are viewed as numpy arrays (no copy); device buffers expose
``__cuda_array_interface__`` so torch/cupy can view them without a copy.
"""

from __future__ import annotations

import ctypes
from math import prod

import numpy as np

from streamd.cuda import driver
from streamd.cuda.runtime import CudaError, bindings, check


def _shape_tuple(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)


class PinnedBuffer:
    """Page-locked host memory (cudaMallocHost) seen as a numpy array of ``shape`` and ``dtype``."""

    def __init__(self, shape: int | tuple[int, ...], dtype: np.dtype | type = np.uint8) -> None:
        self.shape = _shape_tuple(shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = max(1, prod(self.shape) * self.dtype.itemsize)
        cudart, _, _ = bindings()
        self.ptr: int = int(check(cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes} bytes)"))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)
        self._array: np.ndarray | None = np.frombuffer(raw, dtype=np.uint8)[
            :prod(self.shape) * self.dtype.itemsize].view(self.dtype).reshape(self.shape)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise CudaError("PinnedBuffer.array", "use after free")
        return self._array

    def view(self, shape: tuple[int, ...], dtype: np.dtype | type | None = None) -> np.ndarray:
        """The first bytes of the buffer as another shape/dtype (for variable frame sizes)."""
        dtype = np.dtype(dtype or self.dtype)
        nbytes = prod(shape) * dtype.itemsize
        if nbytes > self.nbytes:
            raise ValueError(f"view {shape} {dtype} needs {nbytes} bytes, buffer holds {self.nbytes}")
        return self.array.reshape(-1).view(np.uint8)[:nbytes].view(dtype).reshape(shape)

    def contains(self, array: np.ndarray) -> bool:
        """True when ``array``'s memory lies inside this buffer (then no staging copy is needed)."""
        if self._array is None:
            return False
        start = array.__array_interface__["data"][0]
        return self.ptr <= start and start + array.nbytes <= self.ptr + self.nbytes

    def free(self) -> None:
        if self._array is None:
            return
        self._array = None
        cudart, _, _ = bindings()
        check(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")


class DeviceBuffer:
    """Device memory (cudaMalloc) of ``nbytes``; ``shape``/``dtype`` only describe it to other libraries."""

    def __init__(self, nbytes: int, shape: tuple[int, ...] | None = None, dtype: np.dtype | type = np.uint8
                 ) -> None:
        self.nbytes = max(1, int(nbytes))
        self.dtype = np.dtype(dtype)
        self.shape = shape if shape is not None else (self.nbytes // self.dtype.itemsize,)
        cudart, _, _ = bindings()
        self.ptr: int = int(check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes} bytes)"))
        self._freed = False

    @classmethod
    def for_array(cls, shape: tuple[int, ...], dtype: np.dtype | type) -> DeviceBuffer:
        dtype = np.dtype(dtype)
        return cls(prod(shape) * dtype.itemsize, tuple(shape), dtype)

    @property
    def __cuda_array_interface__(self) -> dict:
        if self._freed:
            raise CudaError("DeviceBuffer.__cuda_array_interface__", "use after free")
        return {"shape": tuple(self.shape), "typestr": self.dtype.str, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": None}

    def free(self) -> None:
        if self._freed:
            return
        self._freed = True
        cudart, _, _ = bindings()
        check(cudart.cudaFree(self.ptr), "cudaFree")


# The two per-frame copies go through the driver directly (see streamd.cuda.driver for why).
def copy_htod_async(dst_ptr: int, src_ptr: int, nbytes: int, stream_ptr: int) -> None:
    code = driver.function("cuMemcpyHtoDAsync_v2")(dst_ptr, src_ptr, nbytes, stream_ptr)
    if code:
        driver.fail(code, f"cuMemcpyHtoDAsync({nbytes} bytes)")


def copy_dtoh_async(dst_ptr: int, src_ptr: int, nbytes: int, stream_ptr: int) -> None:
    code = driver.function("cuMemcpyDtoHAsync_v2")(dst_ptr, src_ptr, nbytes, stream_ptr)
    if code:
        driver.fail(code, f"cuMemcpyDtoHAsync({nbytes} bytes)")


def copy_dtod_async(dst_ptr: int, src_ptr: int, nbytes: int, stream_ptr: int) -> None:
    cudart, _, _ = bindings()
    check(cudart.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                                 stream_ptr), f"cudaMemcpyAsync(device->device, {nbytes} bytes)")


def memset_async(ptr: int, value: int, nbytes: int, stream_ptr: int) -> None:
    cudart, _, _ = bindings()
    check(cudart.cudaMemsetAsync(ptr, value, nbytes, stream_ptr), f"cudaMemsetAsync({nbytes} bytes)")


def is_pinned(host: np.ndarray | int) -> bool:
    """True when an array (or a host address) is page-locked memory known to CUDA.

    Asked once per frame for frames not in a slot buffer, so it is one driver call, not
    cudaPointerGetAttributes (which builds a Python attributes object each time).
    """
    ptr = host if isinstance(host, int) else host.__array_interface__["data"][0]
    return driver.memory_type(ptr) in (driver.CU_MEMORYTYPE_HOST, driver.CU_MEMORYTYPE_DEVICE,
                                       driver.CU_MEMORYTYPE_UNIFIED)
