"""Checked access to the CUDA runtime and driver APIs of cuda-python.

cuda-python returns ``(err, *results)`` from every call; :func:`check` unwraps that tuple and raises
:class:`CudaError` naming the call and the error (``cudaErrorMemoryAllocation``), so no result code
is ever dropped.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from streamd.errors import StreamdError


class CudaError(StreamdError):
    """A CUDA runtime, driver or NVRTC call failed; ``error_name`` is CUDA's name for the error."""

    def __init__(self, call: str, error_name: str, detail: str = "") -> None:
        message = f"CUDA call {call} failed with {error_name}"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.call = call
        self.error_name = error_name


class _Bindings:
    """cuda.bindings modules, imported on first use (cuda-python is optional)."""

    def __init__(self) -> None:
        self._modules: tuple[ModuleType, ModuleType, ModuleType] | None = None
        self._lock = threading.Lock()

    def get(self) -> tuple[ModuleType, ModuleType, ModuleType]:
        if self._modules is None:
            with self._lock:
                if self._modules is None:
                    try:
                        from cuda.bindings import driver, nvrtc  # noqa: PLC0415 - optional dependency
                        from cuda.bindings import runtime as cudart  # noqa: PLC0415
                    except ImportError as error:
                        raise CudaError("import cuda.bindings", "ImportError",
                                        f"{error}; install cuda-python (pip install cuda-bindings) "
                                        "to use the GPU path") from error
                    self._modules = (cudart, driver, nvrtc)
        return self._modules


_BINDINGS = _Bindings()


def bindings() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(runtime, driver, nvrtc) modules of cuda.bindings."""
    return _BINDINGS.get()


def _error_name(error: Any) -> str:
    cudart, driver, nvrtc = bindings()
    try:
        if isinstance(error, cudart.cudaError_t):
            return cudart.cudaGetErrorName(error)[1].decode()
        if isinstance(error, driver.CUresult):
            err, name = driver.cuGetErrorName(error)
            return name.decode() if int(err) == 0 else str(error)
        if isinstance(error, nvrtc.nvrtcResult):
            return nvrtc.nvrtcGetErrorString(error)[1].decode()
    except Exception:  # naming the error must never hide it
        pass
    return str(error)


def check(result: Any, call: str = "CUDA call") -> Any:
    """Unwrap ``(err, *values)``: raise CudaError unless err is success; return None, a value or a tuple."""
    if not isinstance(result, tuple):
        result = (result,)
    error, values = result[0], result[1:]
    if int(error) != 0:
        raise CudaError(call, _error_name(error))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_count() -> int:
    """Visible CUDA devices; 0 when the driver reports no device (CudaError when cuda-python is missing)."""
    cudart, _, _ = bindings()
    error, count = cudart.cudaGetDeviceCount()
    if int(error) != 0:
        # cudaErrorNoDevice / cudaErrorInsufficientDriver mean "no usable GPU", not a bug.
        return 0
    return int(count)


_thread_state = threading.local()


def use_device(device: int = 0) -> None:
    """Make ``device``'s primary context current on this thread (the runtime does it lazily,
    driver calls such as cuLaunchKernel need it done first). Cheap after the first call."""
    if getattr(_thread_state, "device", None) == device:
        return
    cudart, _, _ = bindings()
    check(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")
    check(cudart.cudaFree(0), "cudaFree(0) (context initialisation)")
    _thread_state.device = device


def device_name(device: int = 0) -> str:
    cudart, _, _ = bindings()
    properties = check(cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = properties.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()


def compute_capability(device: int = 0) -> tuple[int, int]:
    cudart, _, _ = bindings()
    attribute = cudart.cudaDeviceAttr
    major = check(cudart.cudaDeviceGetAttribute(attribute.cudaDevAttrComputeCapabilityMajor, device),
                  "cudaDeviceGetAttribute(ComputeCapabilityMajor)")
    minor = check(cudart.cudaDeviceGetAttribute(attribute.cudaDevAttrComputeCapabilityMinor, device),
                  "cudaDeviceGetAttribute(ComputeCapabilityMinor)")
    return int(major), int(minor)


def last_launch_error(call: str) -> None:
    """Raise if a preceding kernel launch on this thread failed (cudaGetLastError clears it)."""
    cudart, _, _ = bindings()
    error = cudart.cudaGetLastError()
    check(error, call)
