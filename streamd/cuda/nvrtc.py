"""Run-time compiled kernels: NVRTC -> CUBIN -> cuModuleLoadData -> cuLaunchKernel.

A kernel source is compiled once per (source, options, architecture) and cached in the process, and
on disk under ``$STREAMD_KERNEL_CACHE`` (default ``~/.cache/streamd/kernels``) so a restart does not
pay NVRTC's ~100 ms again.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from streamd.cuda import driver
from streamd.cuda.runtime import CudaError, bindings, check, compute_capability, use_device

log = logging.getLogger(__name__)

_modules: dict[tuple[str, int], object] = {}  # (source key, device) -> CUmodule
_lock = threading.Lock()


def _cache_dir() -> Path:
    return Path(os.environ.get("STREAMD_KERNEL_CACHE", Path.home() / ".cache" / "streamd" / "kernels"))


def _nvrtc_check(result: tuple, call: str, program: object | None = None) -> object:
    _, _, nvrtc = bindings()
    error = result[0]
    if int(error) == 0:
        return result[1] if len(result) == 2 else None
    detail = ""
    if program is not None:
        size_result = nvrtc.nvrtcGetProgramLogSize(program)
        if int(size_result[0]) == 0 and size_result[1] > 1:
            log_buffer = b" " * size_result[1]
            nvrtc.nvrtcGetProgramLog(program, log_buffer)
            detail = log_buffer.decode(errors="replace").strip()
    raise CudaError(call, nvrtc.nvrtcGetErrorString(error)[1].decode(), detail)


def compile_cubin(source: str, name: str, options: Sequence[str], arch: str) -> bytes:
    """NVRTC-compile ``source`` to a CUBIN for ``arch`` (e.g. ``sm_90``); compile errors carry the log."""
    _, _, nvrtc = bindings()
    program = _nvrtc_check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []),
                           "nvrtcCreateProgram")
    try:
        flags = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        _nvrtc_check(nvrtc.nvrtcCompileProgram(program, len(flags), flags), f"nvrtcCompileProgram({name})", program)
        size = _nvrtc_check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * int(size)
        _nvrtc_check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def load_module(source: str, name: str, options: Sequence[str] = (), device: int = 0) -> object:
    """The loaded CUmodule for ``source`` on ``device``, compiling at most once per process."""
    use_device(device)
    major, minor = compute_capability(device)
    arch = f"sm_{major}{minor}"
    key = hashlib.sha256("\0".join((source, arch, *options)).encode()).hexdigest()[:32]
    with _lock:
        # A CUmodule belongs to the context it was loaded in: two GPUs of one architecture share the
        # compiled CUBIN (the disk cache) but each needs its own module (else CUDA_ERROR_INVALID_HANDLE).
        module = _modules.get((key, device))
        if module is not None:
            return module
        cache_path = _cache_dir() / f"{name}-{arch}-{key}.cubin"
        cubin = None
        if cache_path.is_file():
            cubin = cache_path.read_bytes()
        if cubin is None:
            log.info("compiling kernel %s for %s with NVRTC", name, arch)
            cubin = compile_cubin(source, name, options, arch)
            try:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                temporary = cache_path.with_suffix(f".tmp{os.getpid()}")
                temporary.write_bytes(cubin)
                temporary.replace(cache_path)
            except OSError as error:  # a read-only home only costs the next start a compile
                log.warning("cannot cache kernel at %s: %s", cache_path, error)
        _, cuda_driver, _ = bindings()
        module = check(cuda_driver.cuModuleLoadData(cubin), f"cuModuleLoadData({name})")
        _modules[(key, device)] = module
        return module


class Kernel:
    """One ``extern "C"`` kernel with a fixed argument list; arguments are packed once, updated in place.

    ``arg_types`` are ctypes types in the kernel's parameter order (``ctypes.c_void_p`` for pointers).
    Packing into preallocated ctypes storage keeps a launch to one cuLaunchKernel call. A caller that
    launches with the same few argument sets over and over (one per pipeline slot) keeps a
    :meth:`bind` result per set, and a launch is then the driver call alone.
    """

    def __init__(self, module: object, function_name: str, arg_types: Sequence[type]) -> None:
        _, cuda_driver, _ = bindings()
        self.name = function_name
        self._function = check(cuda_driver.cuModuleGetFunction(module, function_name.encode()),
                               f"cuModuleGetFunction({function_name})")
        self._function_ptr = int(self._function)
        self._arg_types = tuple(arg_types)
        self._values = [t() for t in arg_types]
        self._pointers = (ctypes.c_void_p * len(arg_types))(*(ctypes.addressof(v) for v in self._values))
        self._pointers_address = ctypes.addressof(self._pointers)

    def launch(self, grid: tuple[int, int, int], block: tuple[int, int, int], stream_ptr: int,
               args: Sequence[int | float], shared_bytes: int = 0) -> None:
        if len(args) != len(self._values):
            raise ValueError(f"kernel {self.name} takes {len(self._values)} arguments, got {len(args)}")
        for slot, value in zip(self._values, args):
            slot.value = value
        _launch(self._function_ptr, grid, block, shared_bytes, stream_ptr, self._pointers_address, self.name)

    def bind(self, grid: tuple[int, int, int], block: tuple[int, int, int], args: Sequence[int | float],
             shared_bytes: int = 0) -> BoundLaunch:
        """Launch geometry and arguments packed once, into storage of their own."""
        if len(args) != len(self._arg_types):
            raise ValueError(f"kernel {self.name} takes {len(self._arg_types)} arguments, got {len(args)}")
        return BoundLaunch(self, grid, block, args, shared_bytes)


class BoundLaunch:
    """A kernel with its arguments fixed: ``launch(stream_ptr)`` is one cuLaunchKernel."""

    def __init__(self, kernel: Kernel, grid: tuple[int, int, int], block: tuple[int, int, int],
                 args: Sequence[int | float], shared_bytes: int) -> None:
        self.name = kernel.name
        self._values = [t(v) for t, v in zip(kernel._arg_types, args)]
        self._pointers = (ctypes.c_void_p * len(args))(*(ctypes.addressof(v) for v in self._values))
        grid, block = tuple(int(v) for v in grid), tuple(int(v) for v in block)
        self._call = (driver.function("cuLaunchKernel"), kernel._function_ptr, *grid, *block, shared_bytes,
                      ctypes.addressof(self._pointers))

    def launch(self, stream_ptr: int) -> None:
        launch_kernel, function, gx, gy, gz, bx, by, bz, shared, params = self._call
        code = launch_kernel(function, gx, gy, gz, bx, by, bz, shared, stream_ptr, params, None)
        if code:
            driver.fail(code, f"cuLaunchKernel({self.name})")


def _launch(function_ptr: int, grid: tuple[int, int, int], block: tuple[int, int, int], shared_bytes: int,
            stream_ptr: int, params_address: int, name: str) -> None:
    code = driver.function("cuLaunchKernel")(function_ptr, grid[0], grid[1], grid[2], block[0], block[1],
                                             block[2], shared_bytes, stream_ptr, params_address, None)
    if code:
        driver.fail(code, f"cuLaunchKernel({name})")
