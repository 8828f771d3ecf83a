"""Mapped page-locked host memory: one allocation the CPU writes and kernels read in place (zero-copy).

``cudaHostAlloc(cudaHostAllocMapped)`` page-locks the memory and maps it into the device's address
space; ``cudaHostGetDevicePointer`` gives the address a kernel uses. On an integrated GPU (Jetson) that
is the same DRAM the device allocates from, so reading it in place removes the upload and its
bandwidth. On a discrete GPU every kernel access crosses PCIe: correct, and slower (measured by
``benchmarks/gpu_zero_copy_check.py``).
"""

from __future__ import annotations

import numpy as np

from streamd.cuda.memory import PinnedBuffer, _shape_tuple
from streamd.cuda.runtime import CudaError, bindings, check

_HOST_ALLOC_MAPPED = 0x02  # cuda_runtime_api.h's cudaHostAllocMapped, if the bindings do not export it


class MappedBuffer(PinnedBuffer):
    """A :class:`PinnedBuffer` allocated mapped: ``array`` for the host, ``device_ptr`` for kernels."""

    def __init__(self, shape: int | tuple[int, ...], dtype: np.dtype | type = np.uint8) -> None:
        # PinnedBuffer.__init__ allocates with cudaMallocHost; this one needs the mapped flag, so the
        # fields are set here in the same way.
        import ctypes  # noqa: PLC0415
        from math import prod  # noqa: PLC0415

        self.shape = _shape_tuple(shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = max(1, prod(self.shape) * self.dtype.itemsize)
        cudart, _, _ = bindings()
        flags = getattr(cudart, "cudaHostAllocMapped", _HOST_ALLOC_MAPPED)
        self.ptr = int(check(cudart.cudaHostAlloc(self.nbytes, flags),
                             f"cudaHostAlloc({self.nbytes} bytes, cudaHostAllocMapped)"))
        try:
            self.device_ptr: int = int(check(cudart.cudaHostGetDevicePointer(self.ptr, 0),
                                             "cudaHostGetDevicePointer"))
        except CudaError:
            check(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            raise
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)
        self._array = np.frombuffer(raw, dtype=np.uint8)[
            :prod(self.shape) * self.dtype.itemsize].view(self.dtype).reshape(self.shape)

    def device_address(self, array: np.ndarray) -> int:
        """The device address of ``array``, which must lie inside this buffer."""
        start = array.__array_interface__["data"][0]
        if not self.contains(array):
            raise ValueError("array is not inside this mapped buffer")
        return self.device_ptr + (start - self.ptr)


class DeviceAlias:
    """A device address of memory owned elsewhere (a mapped buffer), where code expects a DeviceBuffer:
    ``ptr`` and an idempotent ``free()`` that frees nothing."""

    def __init__(self, ptr: int, nbytes: int) -> None:
        self.ptr = int(ptr)
        self.nbytes = int(nbytes)

    def free(self) -> None:
        """The owner frees the memory."""


def device_pointer_of(host_ptr: int) -> int | None:
    """The device address of mapped page-locked host memory at ``host_ptr``; None for memory that is not
    mapped (pageable, or pinned without the mapped flag on a system without unified addressing)."""
    cudart, _, _ = bindings()
    error, device_ptr = cudart.cudaHostGetDevicePointer(host_ptr, 0)
    if int(error) != 0:
        cudart.cudaGetLastError()  # the failed query must not be reported by a later launch check
        return None
    return int(device_ptr)
