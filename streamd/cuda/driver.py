"""The per-frame CUDA calls, straight into the driver library (libcuda) through ctypes.

cuda.bindings costs a few microseconds of Python per call: every handle given as an int is wrapped
in a new handle object and every result becomes an enum member (``_fast_enum`` in profiles). A frame
makes about fifteen such calls (copies, event records and queries, kernel and graph launches), which
was a large part of the pipeline's ~0.3 ms host budget. A ctypes call with fixed ``argtypes`` takes
ints directly and returns an int, under a microsecond. Set-up and rare calls (allocation, stream
and event creation, NVRTC) stay on cuda.bindings; both talk to the same driver and context, since
the runtime's primary context is the one ``runtime.use_device`` makes current.

Handles are plain ints: a ``cudaStream_t``/``cudaEvent_t`` is the driver's ``CUstream``/``CUevent``.
"""

from __future__ import annotations

import ctypes
import os
import threading

from streamd.cuda.runtime import CudaError

CUDA_SUCCESS = 0
CUDA_ERROR_INVALID_VALUE = 1
CUDA_ERROR_NOT_READY = 600
CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2
# CUmemorytype: host (page-locked), device, array, unified (managed)
CU_MEMORYTYPE_HOST, CU_MEMORYTYPE_DEVICE, CU_MEMORYTYPE_UNIFIED = 1, 2, 4

_p, _u, _sz, _f32p = ctypes.c_void_p, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float)
# Exported names of the current ABI (the ``_v2`` copies take 64-bit device pointers).
_SIGNATURES = {
    "cuEventRecord": (_p, _p),
    "cuEventQuery": (_p,),
    "cuEventSynchronize": (_p,),
    "cuEventElapsedTime": (_f32p, _p, _p),
    "cuStreamWaitEvent": (_p, _p, _u),
    "cuMemcpyHtoDAsync_v2": (ctypes.c_uint64, _p, _sz, _p),
    "cuMemcpyDtoHAsync_v2": (_p, ctypes.c_uint64, _sz, _p),
    "cuLaunchKernel": (_p, _u, _u, _u, _u, _u, _u, _u, _p, _p, _p),
    "cuGraphLaunch": (_p, _p),
    "cuPointerGetAttribute": (_p, ctypes.c_int, ctypes.c_uint64),
    "cuGetErrorName": (ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)),
}


class _Driver:
    """The driver library's functions, loaded on first use (cuda-python loads the same library)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, object] | None = None

    def get(self) -> dict[str, object]:
        if self._functions is None:
            with self._lock:
                if self._functions is None:
                    self._functions = self._load()
        return self._functions

    @staticmethod
    def _load() -> dict[str, object]:
        name = "nvcuda.dll" if os.name == "nt" else "libcuda.so.1"
        try:
            library = ctypes.CDLL(name)
        except OSError as error:
            raise CudaError(f"load {name}", "OSError", str(error)) from error
        functions = {}
        for symbol, argtypes in _SIGNATURES.items():
            function = getattr(library, symbol)
            function.argtypes = argtypes
            function.restype = ctypes.c_int
            functions[symbol] = function
        return functions


_DRIVER = _Driver()


def function(symbol: str):
    """The ctypes function for ``symbol`` (hot paths keep it to skip the lookup)."""
    return _DRIVER.get()[symbol]


def error_name(code: int) -> str:
    name = ctypes.c_char_p()
    if function("cuGetErrorName")(code, ctypes.byref(name)) == CUDA_SUCCESS and name.value:
        return name.value.decode()
    return f"CUresult {code}"


def fail(code: int, call: str) -> None:
    """Raise the CudaError for a non-zero CUresult (kept out of line: callers test ``if code``)."""
    raise CudaError(call, error_name(code))


def memory_type(ptr: int) -> int:
    """CU_MEMORYTYPE_* of ``ptr``, or 0 for memory CUDA does not know (pageable host memory)."""
    value = ctypes.c_uint(0)
    code = function("cuPointerGetAttribute")(ctypes.addressof(value), CU_POINTER_ATTRIBUTE_MEMORY_TYPE, ptr)
    if code == CUDA_ERROR_INVALID_VALUE:  # the driver's answer for an address it never saw
        return 0
    if code:
        fail(code, "cuPointerGetAttribute(MEMORY_TYPE)")
    return int(value.value)
