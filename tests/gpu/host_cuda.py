"""HOST BUILD of the CUDA kernels (NOT a GPU): the kernel sources of ``streamd.gpu.kernels`` compiled by g++
and run on the CPU under a host implementation of what ``streamd.cuda`` calls, for CPU-only test runs.

What it is. :func:`compile_so` takes a kernel source as NVRTC would get it and compiles it unchanged after a
shim header (``SHIM``): ``__global__``/``__device__``/``__forceinline__`` become plain C++; ``blockIdx``,
``blockDim``, ``threadIdx``, ``gridDim`` are globals; ``__fmul_rn``/``__fadd_rn``/``__fsub_rn`` are plain float
operations (g++ never contracts them: ``-ffp-contract=off``); ``__float2int_rn`` is ``nearbyintf`` (round half
to even); ``atomicAdd`` on an int is fetch-and-add; ``min``/``max`` take ints. One source line is replaced:
the fp16 store's ``asm("cvt.rn.f16.f32 ...")`` becomes a host round-to-nearest-even conversion
(``streamd_host_f32_to_f16``); any other ``asm`` refuses to build. For each ``extern "C" __global__`` kernel
(its parameters read from the preprocessed source) a generated ``extern "C"`` launcher takes the grid, the
block, a schedule and the kernel's arguments, and runs every thread of every block, one after the other.

:class:`HostCuda` then stands in for cuda-python under the real ``streamd.cuda`` modules: ``runtime.bindings()``
returns host versions of the runtime, driver and NVRTC modules, ``driver.function`` host versions of the
libcuda calls, ``nvrtc.compile_cubin`` the g++ build above, ``nvrtc.Kernel`` a subclass that checks arguments.
So ``memory.DeviceBuffer``/``PinnedBuffer``, ``copy_*_async``, ``memset_async``, ``nvrtc.load_module``/``Kernel``/
``BoundLaunch`` and ``stream.Stream``/``Event`` run their own code, and the decoders and letterbox classes of
``streamd.gpu`` run unchanged on top. Device memory is numpy-allocated host memory whose address is the
pointer; copies are ``ctypes.memmove``; a launch calls the compiled launcher; every call completes before it
returns.

Strict where the real thing would fault or misbehave (a :class:`HostCudaError` is raised):
- a kernel created with ctypes argument types other than its declared parameters', or launched with a value
  its ctypes type would silently truncate (an int out of range, a float for an int);
- a pointer argument that is not null and not inside a live device (or pinned) allocation;
- a copy or memset that reaches outside a device allocation, or touches one already freed (freed memory is
  never reused within a test, so a stale pointer cannot land in a newer buffer);
- a kernel that writes into the 256-byte red zones around a device allocation (checked after every launch;
  a write farther out is not caught, and may corrupt the test process);
- dynamic shared memory, ``__syncthreads``, ``__shared__``, other intrinsics: the build fails, nothing is
  emulated silently.
New device allocations are filled with 0xFF bytes (NaN as float32, -1 as int32), as cudaMalloc gives no
zeroed memory, so a counter nobody zeroed shows.

Not modelled: NVRTC itself (its options are checked, not applied: only ``--fmad=false`` and ``-std=`` are
accepted), the GPU's memory spaces and caches, concurrency (threads run one at a time, so races and missing
fences cannot show; kernel reads outside an allocation are not caught, only writes), streams and events
(everything is synchronous), the device's fp16 instruction (replaced as above), and where CUDA's arithmetic
differs from x86's: a float-to-int cast of NaN or of a value out of range (CUDA saturates; x86 gives INT_MIN),
the last bit of double ``exp`` (glibc's, not libdevice's; rounded to float it hardly ever shows). Atomics
happen in the order threads run: blocks, and threads within a block, run in a permuted (deterministic) order
by default, so compaction order is not cell order and the host's sort is exercised, but it is one order, not
a GPU's.
"""

# ruff: noqa: N802, N815 - the stand-ins carry cuda-python's own names (cudaMalloc, cudaMemcpyKind, ...)

from __future__ import annotations

import bisect
import ctypes
import enum
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamd.cuda import driver, nvrtc, runtime
from streamd.cuda.runtime import CudaError

SHIM = r"""
// Host shim: CUDA C built by g++ for the host (tests/gpu/host_cuda.py). Not a GPU.
#include <math.h>
#include <stddef.h>
#include <string.h>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline int __float2int_rn(float v) { return (int)nearbyintf(v); }  // default mode: half to even
static inline int atomicAdd(int* address, int value) { const int old = *address; *address = old + value; return old; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
// cvt.rn.f16.f32: round to nearest even; overflow to infinity, subnormals kept.
static inline unsigned short streamd_host_f32_to_f16(float value) {
    unsigned int f;
    memcpy(&f, &value, 4);
    const unsigned int sign = (f >> 16) & 0x8000u, magnitude = f & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);
    if (magnitude >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);
    if (magnitude < 0x38800000u) return (unsigned short)(sign | (unsigned int)nearbyintf(fabsf(value) * 16777216.0f));
    unsigned int h = (magnitude >> 13) - (112u << 10);
    const unsigned int rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return (unsigned short)(sign | h);
}
static unsigned long long streamd_host_gcd(unsigned long long a, unsigned long long b) {
    while (b) { const unsigned long long t = a % b; a = b; b = t; }
    return a;
}
// A step coprime with n (not 1 where n > 2): i -> (i * step + offset) % n visits 0..n-1 once each.
static unsigned long long streamd_host_step(unsigned long long n, unsigned long long seed) {
    if (n <= 2) return 1;
    unsigned long long s = (seed * 2654435761ull + 0x9e3779b97f4a7c15ull) % n;
    while (s < 2 || streamd_host_gcd(s, n) != 1) s = (s + 1) % n;
    return s;
}
static inline unsigned long long streamd_host_visit(unsigned long long i, unsigned long long n,
                                                    unsigned long long step, unsigned long long offset) {
    return (unsigned long long)(((unsigned __int128)i * step + offset) % n);
}
"""

_LAUNCHER = r"""
extern "C" __attribute__((visibility("default"))) void streamd_host_launch_{name}(
        unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz,
        unsigned long long order{params}) {{
    gridDim = dim3{{gx, gy, gz}};
    blockDim = dim3{{bx, by, bz}};
    const unsigned long long blocks = (unsigned long long)gx * gy * gz, threads = (unsigned long long)bx * by * bz;
    const unsigned long long block_step = order ? streamd_host_step(blocks, order) : 1;
    const unsigned long long thread_step = order ? streamd_host_step(threads, order >> 7) : 1;
    for (unsigned long long i = 0; i < blocks; ++i) {{
        const unsigned long long b = streamd_host_visit(i, blocks, block_step, order);
        blockIdx = uint3{{(unsigned int)(b % gx), (unsigned int)(b / gx % gy), (unsigned int)(b / gx / gy)}};
        for (unsigned long long j = 0; j < threads; ++j) {{
            const unsigned long long t = streamd_host_visit(j, threads, thread_step, order >> 3);
            threadIdx = uint3{{(unsigned int)(t % bx), (unsigned int)(t / bx % by), (unsigned int)(t / bx / by)}};
            {name}({arguments});
        }}
    }}
}}
"""

_F16_STORE_PTX = 'asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));'
_F16_STORE_HOST = "h = streamd_host_f32_to_f16(v);"
CXX_FLAGS = ("-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden")
_CUBIN_PREFIX = b"streamd-host-build:"
RED_ZONE = 256  # bytes of canary before and after each device allocation
ALIGNMENT = 256  # cudaMalloc's
_CANARY = 0xA5
_POISON = 0xFF
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_SCALARS = {"int": ctypes.c_int, "unsigned int": ctypes.c_uint, "unsigned": ctypes.c_uint, "float": ctypes.c_float,
            "double": ctypes.c_double, "long long": ctypes.c_longlong, "unsigned long long": ctypes.c_ulonglong}


class HostCudaError(CudaError):
    """A call the host build refuses, where a GPU would fault, misread or fail."""

    def __init__(self, call: str, detail: str, error_name: str = "host build") -> None:
        super().__init__(call, error_name, detail)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its declaration as written, its name and the ctypes type a launch passes."""

    declaration: str
    name: str
    ctype: type

    @property
    def is_pointer(self) -> bool:
        return self.ctype is ctypes.c_void_p


def _param(declaration: str) -> Param:
    declaration = " ".join(declaration.split())
    match = re.fullmatch(r"(.*?)(\w+)", declaration)
    if match is None or not match.group(1).strip():
        raise HostCudaError("host build", f"cannot read the kernel parameter {declaration!r}")
    type_text, name = match.group(1), match.group(2)
    if "&" in type_text:
        raise HostCudaError("host build", f"a kernel parameter cannot be a reference: {declaration!r}")
    if "*" in type_text:
        return Param(declaration, name, ctypes.c_void_p)
    base = " ".join(w for w in type_text.split() if w not in ("const", "volatile", "__restrict__"))
    if base not in _SCALARS:
        raise HostCudaError("host build", f"kernel parameter {declaration!r}: type {base!r} is not supported")
    return Param(declaration, name, _SCALARS[base])


def _compiler() -> str:
    compiler = shutil.which("g++")
    if compiler is None:
        raise HostCudaError("host build", "g++ not found (Debian package g++)")
    return compiler


def kernel_signatures(source: str) -> dict[str, tuple[Param, ...]]:
    """Each ``extern "C" __global__`` kernel's parameters, read from the preprocessed source (macros expanded)."""
    result = subprocess.run([_compiler(), "-E", "-P", "-x", "c++", "-std=c++17", "-"], input=source, text=True,
                            capture_output=True, check=False)
    if result.returncode:
        raise HostCudaError("host build", f"preprocessing failed:\n{result.stderr}")
    kernels = {}
    for match in _KERNEL.finditer(result.stdout):
        params = [p for p in match.group(2).split(",") if p.strip() and p.strip() != "void"]
        kernels[match.group(1)] = tuple(_param(p) for p in params)
    if not kernels:
        raise HostCudaError("host build", 'no extern "C" __global__ kernel in the source')
    return kernels


def host_source(source: str) -> str:
    """The source as g++ compiles it: the one fp16 PTX store replaced; any other inline PTX refused."""
    text = source.replace(_F16_STORE_PTX, _F16_STORE_HOST)
    if re.search(r"\basm\s*\(", text):
        raise HostCudaError("host build", "inline PTX (asm) the host build has no replacement for")
    return text


def _check_options(options: Sequence[str]) -> None:
    for option in options:
        if option == "--fmad=false" or option.startswith("-std="):
            continue
        raise HostCudaError("host build", f"NVRTC option {option!r} is not modelled (only --fmad=false, -std=)")


def cache_dir() -> Path:
    return Path(os.environ.get("STREAMD_HOST_KERNEL_CACHE", Path(tempfile.gettempdir()) / "streamd-host-kernels"))


def _compiler_version() -> str:
    return subprocess.run([_compiler(), "--version"], text=True, capture_output=True, check=True).stdout


def compile_so(source: str, name: str, options: Sequence[str] = ()) -> Path:
    """The shared library for ``source`` (built once per source, shim and compiler; cached on disk), with a
    ``.json`` beside it naming each kernel's parameters."""
    _check_options(options)
    body = host_source(source)
    key = hashlib.sha256("\0".join((SHIM, _LAUNCHER, body, " ".join(CXX_FLAGS), _compiler_version())).encode()
                         ).hexdigest()[:24]
    directory = cache_dir()
    library = directory / f"{name}-{key}.so"
    sidecar = library.with_suffix(".json")
    if library.is_file() and sidecar.is_file():
        return library
    kernels = kernel_signatures(source)
    launchers = []
    for kernel, params in kernels.items():
        launchers.append(_LAUNCHER.format(name=kernel, params="".join(f", {p.declaration}" for p in params),
                                          arguments=", ".join(p.name for p in params)))
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        cpp = Path(work) / f"{name}.cpp"
        cpp.write_text(SHIM + body + "\n".join(launchers))
        built = Path(work) / f"{name}.so"
        result = subprocess.run([_compiler(), *CXX_FLAGS, str(cpp), "-o", str(built)], capture_output=True,
                                text=True, check=False)
        if result.returncode:
            raise HostCudaError(f"g++ ({name})", f"the host build failed:\n{result.stderr}")
        (Path(work) / "sidecar.json").write_text(json.dumps(
            {kernel: [p.declaration for p in params] for kernel, params in kernels.items()}))
        os.replace(built, library)
        os.replace(Path(work) / "sidecar.json", sidecar)
    return library


class HostLibrary:
    """A loaded host build: each kernel's launcher with its ctypes signature."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._library = ctypes.CDLL(str(path))
        declarations = json.loads(path.with_suffix(".json").read_text())
        self.kernels: dict[str, tuple[tuple[Param, ...], object]] = {}
        for kernel, params in declarations.items():
            parsed = tuple(_param(p) for p in params)
            launcher = getattr(self._library, f"streamd_host_launch_{kernel}")
            launcher.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_ulonglong] + [p.ctype for p in parsed]
            launcher.restype = None
            self.kernels[kernel] = (parsed, launcher)


_LIBRARIES: dict[Path, HostLibrary] = {}


def load_library(path: Path) -> HostLibrary:
    if path not in _LIBRARIES:
        _LIBRARIES[path] = HostLibrary(path)
    return _LIBRARIES[path]


def compile_cubin(source: str, name: str, options: Sequence[str], arch: str) -> bytes:
    """``nvrtc.compile_cubin``'s place: a host build, named by a reference the host ``cuModuleLoadData`` reads."""
    return _CUBIN_PREFIX + str(compile_so(source, name, options)).encode()


# ---- memory ---------------------------------------------------------------------------------------------------


@dataclass
class Allocation:
    kind: str  # "device" or "pinned"
    start: int
    nbytes: int
    backing: np.ndarray | None  # None once freed memory is released at the end of the test
    low: int  # red zones: backing[low:start - base] and backing[start - base + nbytes:high]
    freed: bool = False

    @property
    def end(self) -> int:
        return self.start + self.nbytes

    def red_zones_intact(self) -> bool:
        if self.backing is None or self.kind != "device":
            return True
        offset = self.start - self.backing.ctypes.data
        before = self.backing[offset - RED_ZONE:offset]
        after = self.backing[offset + self.nbytes:offset + self.nbytes + RED_ZONE]
        return bool((before == _CANARY).all() and (after == _CANARY).all())


class HostMemory:
    """Device and pinned allocations in host memory, with bounds and lifetime checks."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._allocations: dict[int, Allocation] = {}

    def allocate(self, nbytes: int, kind: str) -> int:
        if nbytes <= 0:
            raise HostCudaError(f"allocate({kind})", f"{nbytes} bytes")
        backing = np.empty(nbytes + 2 * RED_ZONE + ALIGNMENT, np.uint8)
        base = backing.ctypes.data
        start = (base + RED_ZONE + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        backing[:] = _CANARY
        backing[start - base:start - base + nbytes] = _POISON if kind == "device" else 0
        allocation = Allocation(kind, start, nbytes, backing, start - base - RED_ZONE)
        bisect.insort(self._starts, start)
        self._allocations[start] = allocation
        return start

    def find(self, ptr: int) -> Allocation | None:
        """The allocation holding ``ptr`` (freed ones included), or None."""
        index = bisect.bisect_right(self._starts, ptr) - 1
        if index < 0:
            return None
        allocation = self._allocations[self._starts[index]]
        return allocation if ptr < allocation.end else None

    def free(self, ptr: int, kind: str, call: str) -> None:
        allocation = self._allocations.get(ptr)
        if allocation is None or allocation.kind != kind:
            raise HostCudaError(call, f"0x{ptr:x} is not the start of a {kind} allocation")
        if allocation.freed:
            raise HostCudaError(call, f"0x{ptr:x} was freed already")
        self._check_red_zones(allocation, call)
        allocation.freed = True
        if allocation.backing is not None:  # poisoned; kept (never reused) until the test ends
            offset = allocation.start - allocation.backing.ctypes.data
            allocation.backing[offset:offset + allocation.nbytes] = _POISON

    def check_range(self, ptr: int, nbytes: int, call: str, kinds: tuple[str, ...] = ("device",),
                    unknown_ok: bool = False) -> None:
        """``nbytes`` from ``ptr`` lie in one live allocation of ``kinds`` (or in memory this does not know,
        where ``unknown_ok``: pageable host memory, whose bounds are not known)."""
        allocation = self.find(ptr)
        if allocation is None:
            if unknown_ok:
                return
            raise HostCudaError(call, f"0x{ptr:x} is not in any {' or '.join(kinds)} allocation")
        if allocation.freed:
            raise HostCudaError(call, f"use after free: 0x{ptr:x} lies in a {allocation.kind} allocation of "
                                      f"{allocation.nbytes} bytes that was freed")
        if allocation.kind not in kinds:
            raise HostCudaError(call, f"0x{ptr:x} is {allocation.kind} memory, expected {' or '.join(kinds)}")
        offset = ptr - allocation.start
        if nbytes < 0 or offset + nbytes > allocation.nbytes:
            raise HostCudaError(call, f"{nbytes} bytes at offset {offset} of a {allocation.kind} allocation of "
                                      f"{allocation.nbytes} bytes: out of bounds")

    def kind_of(self, ptr: int) -> str | None:
        allocation = self.find(ptr)
        return None if allocation is None or allocation.freed else allocation.kind

    def check_red_zones_all(self, call: str) -> None:
        for allocation in self._allocations.values():
            if not allocation.freed:
                self._check_red_zones(allocation, call)

    @staticmethod
    def _check_red_zones(allocation: Allocation, call: str) -> None:
        if not allocation.red_zones_intact():
            raise HostCudaError(call, f"memory just outside the device allocation 0x{allocation.start:x} "
                                      f"({allocation.nbytes} bytes) was written: an out-of-bounds write")

    def live(self) -> list[Allocation]:
        return [a for a in self._allocations.values() if not a.freed]

    def release(self) -> list[Allocation]:
        """Drop freed memory; the live allocations (leaks) are returned, and kept by the caller."""
        leaked = self.live()
        for allocation in self._allocations.values():
            if allocation.freed:
                allocation.backing = None
        self._allocations.clear()
        self._starts.clear()
        return leaked


# ---- cuda-python stand-ins ------------------------------------------------------------------------------------


class _Error(enum.IntEnum):
    success = 0


class _MemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class _DeviceAttr(enum.IntEnum):
    cudaDevAttrComputeCapabilityMajor = 75
    cudaDevAttrComputeCapabilityMinor = 76


class _Handle:
    """An opaque handle with ``int()``, as cuda-python's are."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


class _Runtime:
    """The calls of ``cuda.bindings.runtime`` streamd makes, on host memory; each returns ``(err, *values)``."""

    cudaError_t = _Error
    cudaMemcpyKind = _MemcpyKind
    cudaDeviceAttr = _DeviceAttr
    cudaStreamNonBlocking = 1
    cudaEventDefault = 0
    cudaEventDisableTiming = 2

    def __init__(self, device: HostCuda) -> None:
        self._device = device

    def cudaGetErrorName(self, error: object) -> tuple:
        return 0, str(error).encode()

    def cudaGetDeviceCount(self) -> tuple:
        return 0, 1

    def cudaSetDevice(self, device: int) -> tuple:
        if device != 0:
            raise HostCudaError(f"cudaSetDevice({device})", "the host build has one device, 0")
        return (0,)

    def cudaDeviceGetAttribute(self, attribute: _DeviceAttr, device: int) -> tuple:
        return 0, 0  # compute capability 0.0: "sm_00", a name no GPU's kernel cache uses

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        return 0, _Properties()

    def cudaGetLastError(self) -> tuple:
        return (0,)

    def cudaMalloc(self, nbytes: int) -> tuple:
        return 0, self._device.memory.allocate(int(nbytes), "device")

    def cudaFree(self, ptr: int) -> tuple:
        if int(ptr) != 0:  # cudaFree(0) initialises the context
            self._device.memory.free(int(ptr), "device", "cudaFree")
        return (0,)

    def cudaMallocHost(self, nbytes: int) -> tuple:
        return 0, self._device.memory.allocate(int(nbytes), "pinned")

    def cudaFreeHost(self, ptr: int) -> tuple:
        self._device.memory.free(int(ptr), "pinned", "cudaFreeHost")
        return (0,)

    def cudaMemcpy(self, dst: int, src: int, nbytes: int, kind: _MemcpyKind) -> tuple:
        self._device.copy(int(dst), int(src), int(nbytes), _MemcpyKind(kind), "cudaMemcpy")
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: _MemcpyKind, stream_ptr: int) -> tuple:
        self._device.check_stream(int(stream_ptr), "cudaMemcpyAsync")
        self._device.copy(int(dst), int(src), int(nbytes), _MemcpyKind(kind), "cudaMemcpyAsync")
        return (0,)

    def cudaMemsetAsync(self, ptr: int, value: int, nbytes: int, stream_ptr: int) -> tuple:
        self._device.check_stream(int(stream_ptr), "cudaMemsetAsync")
        self._device.memory.check_range(int(ptr), int(nbytes), f"cudaMemsetAsync({nbytes} bytes)")
        ctypes.memset(int(ptr), int(value) & 0xFF, int(nbytes))
        return (0,)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple:
        return 0, _Handle(self._device.new_handle("stream"))

    def cudaStreamSynchronize(self, stream_ptr: int) -> tuple:
        self._device.check_stream(int(stream_ptr), "cudaStreamSynchronize")
        return (0,)

    def cudaStreamDestroy(self, stream_ptr: int) -> tuple:
        self._device.close_handle(int(stream_ptr), "stream", "cudaStreamDestroy")
        return (0,)

    def cudaEventCreateWithFlags(self, flags: int) -> tuple:
        return 0, _Handle(self._device.new_handle("event"))

    def cudaEventDestroy(self, event_ptr: int) -> tuple:
        self._device.close_handle(int(event_ptr), "event", "cudaEventDestroy")
        return (0,)


class _Properties:
    name = b"host build (g++), not a GPU"


class _DriverResult(enum.IntEnum):
    CUDA_SUCCESS = 0


class _DriverModule:
    """``cuda.bindings.driver``'s module calls: a host build is the module, its launchers the functions."""

    CUresult = _DriverResult

    def __init__(self, device: HostCuda) -> None:
        self._device = device

    def cuGetErrorName(self, error: object) -> tuple:
        return 0, str(error).encode()

    def cuModuleLoadData(self, image: bytes) -> tuple:
        if not image.startswith(_CUBIN_PREFIX):
            raise HostCudaError("cuModuleLoadData", "not a host build (a CUBIN from another cache?)")
        path = Path(image[len(_CUBIN_PREFIX):].decode())
        if not path.is_file():
            raise HostCudaError("cuModuleLoadData", f"the host build {path} is gone")
        return 0, _Handle(self._device.register_module(load_library(path)))

    def cuModuleGetFunction(self, module: _Handle, name: bytes) -> tuple:
        return 0, _Handle(self._device.function_handle(int(module), name.decode()))


class _NvrtcModule:
    class nvrtcResult(enum.IntEnum):  # noqa: N801
        NVRTC_SUCCESS = 0

    def nvrtcGetErrorString(self, error: object) -> tuple:
        return 0, str(error).encode()


@dataclass
class _Function:
    name: str
    params: tuple[Param, ...]
    launcher: object


class _CheckedKernel(nvrtc.Kernel):
    """``nvrtc.Kernel`` whose argument types must be the kernel's declared ones, and whose values must fit them
    (ctypes would silently truncate an int out of range; the GPU would read the wrong bytes)."""

    device: HostCuda  # set by HostCuda.install on the subclass it makes

    def __init__(self, module: object, function_name: str, arg_types: Sequence[type]) -> None:
        super().__init__(module, function_name, arg_types)
        params = self.device.functions[self._function_ptr].params
        declared = [p.ctype for p in params]
        if len(declared) != len(arg_types) or any(
                ctypes.sizeof(a) != ctypes.sizeof(d) or a._type_ != d._type_ for a, d in zip(arg_types, declared)):
            raise HostCudaError(f"Kernel({function_name})", "argument types "
                                f"{[t.__name__ for t in arg_types]} do not match the kernel's parameters "
                                f"{[f'{p.name}: {p.ctype.__name__}' for p in params]}")
        self._params = params

    def launch(self, grid: tuple[int, int, int], block: tuple[int, int, int], stream_ptr: int,
               args: Sequence[int | float], shared_bytes: int = 0) -> None:
        _check_values(self.name, self._params, args)
        super().launch(grid, block, stream_ptr, args, shared_bytes)

    def bind(self, grid: tuple[int, int, int], block: tuple[int, int, int], args: Sequence[int | float],
             shared_bytes: int = 0) -> nvrtc.BoundLaunch:
        _check_values(self.name, self._params, args)
        return super().bind(grid, block, args, shared_bytes)


_INT_RANGES = {ctypes.c_int: (-2**31, 2**31 - 1), ctypes.c_uint: (0, 2**32 - 1),
               ctypes.c_longlong: (-2**63, 2**63 - 1), ctypes.c_ulonglong: (0, 2**64 - 1),
               ctypes.c_void_p: (0, 2**64 - 1)}


def _check_values(name: str, params: tuple[Param, ...], args: Sequence[int | float]) -> None:
    if len(args) != len(params):
        raise HostCudaError(f"launch {name}", f"{len(args)} arguments for {len(params)} parameters")
    for param, value in zip(params, args):
        if param.ctype in _INT_RANGES:
            if value is None and param.is_pointer:
                continue
            low, high = _INT_RANGES[param.ctype]
            if not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
                raise HostCudaError(f"launch {name}", f"{param.name} ({param.ctype.__name__}) = {value!r}")
        elif not isinstance(value, (int, float, np.integer, np.floating)):
            raise HostCudaError(f"launch {name}", f"{param.name} ({param.ctype.__name__}) = {value!r}")


class HostCuda:
    """One test's host device: memory, streams, events, loaded host builds. ``install`` patches it in."""

    def __init__(self, schedule: str = "permuted") -> None:
        if schedule not in ("permuted", "in-order"):
            raise ValueError(f"schedule is 'permuted' or 'in-order', not {schedule!r}")
        self.schedule = schedule
        self.memory = HostMemory()
        self.functions: dict[int, _Function] = {}
        self.launches = 0
        self._modules: dict[int, HostLibrary] = {}
        self._handles: dict[int, str] = {}
        self._closed: set[int] = set()
        self._next_handle = 0x1000
        self._driver_functions = {
            "cuEventRecord": self._event_record, "cuEventQuery": self._event_query,
            "cuEventSynchronize": self._event_synchronize, "cuEventElapsedTime": self._event_elapsed,
            "cuStreamWaitEvent": self._stream_wait_event, "cuMemcpyHtoDAsync_v2": self._memcpy_htod,
            "cuMemcpyDtoHAsync_v2": self._memcpy_dtoh, "cuLaunchKernel": self._launch,
            "cuGraphLaunch": self._graph_launch, "cuPointerGetAttribute": self._pointer_attribute,
            "cuGetErrorName": self._error_name}

    def install(self, monkeypatch: pytest.MonkeyPatch, kernel_cache: Path) -> None:
        """Make ``streamd.cuda`` use this host device until ``monkeypatch`` is undone."""
        import threading  # noqa: PLC0415

        monkeypatch.setattr(runtime._BINDINGS, "_modules", (_Runtime(self), _DriverModule(self), _NvrtcModule()))
        monkeypatch.setattr(runtime, "_thread_state", threading.local())
        monkeypatch.setattr(driver, "function", self._driver_function)
        monkeypatch.setattr(nvrtc, "_modules", {})
        monkeypatch.setattr(nvrtc, "compile_cubin", compile_cubin)
        monkeypatch.setattr(nvrtc, "Kernel", type("HostCheckedKernel", (_CheckedKernel,), {"device": self}))
        monkeypatch.setenv("STREAMD_KERNEL_CACHE", str(kernel_cache))

    def release(self) -> list[Allocation]:
        """End of the test: freed memory is dropped; leaked allocations are returned (the caller keeps them)."""
        return self.memory.release()

    # handles
    def new_handle(self, kind: str) -> int:
        self._next_handle += 0x10
        self._handles[self._next_handle] = kind
        return self._next_handle

    def close_handle(self, handle: int, kind: str, call: str) -> None:
        self.check_handle(handle, kind, call)
        del self._handles[handle]
        self._closed.add(handle)

    def check_handle(self, handle: int, kind: str, call: str) -> None:
        if self._handles.get(handle) != kind:
            state = "destroyed" if handle in self._closed else "unknown"
            raise HostCudaError(call, f"{kind} 0x{handle:x} is {state}")

    def check_stream(self, stream_ptr: int, call: str) -> None:
        if stream_ptr != 0:  # 0: the legacy default stream
            self.check_handle(stream_ptr, "stream", call)

    # modules and launches
    def register_module(self, library: HostLibrary) -> int:
        handle = self.new_handle("module")
        self._modules[handle] = library
        return handle

    def function_handle(self, module: int, name: str) -> int:
        self.check_handle(module, "module", f"cuModuleGetFunction({name})")
        library = self._modules[module]
        if name not in library.kernels:
            raise HostCudaError(f"cuModuleGetFunction({name})", f"no kernel {name} in {library.path.name}")
        handle = self.new_handle("function")
        self.functions[handle] = _Function(name, *library.kernels[name])
        return handle

    def _launch(self, function_ptr: int, gx: int, gy: int, gz: int, bx: int, by: int, bz: int, shared_bytes: int,
                stream_ptr: int, params_address: int, extra: object) -> int:
        function = self.functions.get(int(function_ptr))
        if function is None:
            raise HostCudaError("cuLaunchKernel", f"0x{function_ptr:x} is not a loaded kernel")
        call = f"cuLaunchKernel({function.name})"
        self.check_stream(int(stream_ptr), call)
        if min(gx, gy, gz, bx, by, bz) < 1 or bx * by * bz > 1024 or gy > 65535 or gz > 65535 or bz > 64:
            raise HostCudaError(call, f"grid ({gx}, {gy}, {gz}) block ({bx}, {by}, {bz}) out of CUDA's limits")
        if shared_bytes or extra is not None:
            raise HostCudaError(call, "dynamic shared memory and extra launch options are not modelled")
        slots = (ctypes.c_void_p * len(function.params)).from_address(params_address)
        values = []
        for param, slot in zip(function.params, slots):
            value = param.ctype.from_address(slot).value
            if param.is_pointer and value:
                self.memory.check_range(value, 0, f"{call}: argument {param.name}", ("device", "pinned"))
            values.append(value)
        self.launches += 1
        order = 0 if self.schedule == "in-order" else self.launches * 0x9E3779B1 + 12345
        function.launcher(gx, gy, gz, bx, by, bz, order, *values)
        self.memory.check_red_zones_all(f"after {call}")
        return 0

    # copies
    def copy(self, dst: int, src: int, nbytes: int, kind: _MemcpyKind, call: str) -> None:
        call = f"{call}({kind.name}, {nbytes} bytes)"
        if kind == _MemcpyKind.cudaMemcpyDefault:
            raise HostCudaError(call, "cudaMemcpyDefault is not modelled: name the direction")
        device_src = kind in (_MemcpyKind.cudaMemcpyDeviceToHost, _MemcpyKind.cudaMemcpyDeviceToDevice)
        device_dst = kind in (_MemcpyKind.cudaMemcpyHostToDevice, _MemcpyKind.cudaMemcpyDeviceToDevice)
        self._check_side(src, nbytes, device_src, f"{call} source")
        self._check_side(dst, nbytes, device_dst, f"{call} destination")
        ctypes.memmove(dst, src, nbytes)

    def _check_side(self, ptr: int, nbytes: int, device: bool, call: str) -> None:
        if device:
            self.memory.check_range(ptr, nbytes, call)
        else:  # host: pinned memory is checked, pageable memory (numpy arrays) cannot be
            self.memory.check_range(ptr, nbytes, call, ("pinned",), unknown_ok=True)

    def _memcpy_htod(self, dst: int, src: int, nbytes: int, stream_ptr: int) -> int:
        self.check_stream(int(stream_ptr), "cuMemcpyHtoDAsync")
        self.copy(int(dst), int(src), int(nbytes), _MemcpyKind.cudaMemcpyHostToDevice, "cuMemcpyHtoDAsync")
        return 0

    def _memcpy_dtoh(self, dst: int, src: int, nbytes: int, stream_ptr: int) -> int:
        self.check_stream(int(stream_ptr), "cuMemcpyDtoHAsync")
        self.copy(int(dst), int(src), int(nbytes), _MemcpyKind.cudaMemcpyDeviceToHost, "cuMemcpyDtoHAsync")
        return 0

    # events and the rest of driver.function's table
    def _driver_function(self, symbol: str) -> object:
        if symbol not in self._driver_functions:
            raise HostCudaError(symbol, "not modelled by the host build")
        return self._driver_functions[symbol]

    def _event_record(self, event_ptr: int, stream_ptr: int) -> int:
        self.check_handle(int(event_ptr), "event", "cuEventRecord")
        self.check_stream(int(stream_ptr), "cuEventRecord")
        return 0

    def _event_query(self, event_ptr: int) -> int:
        self.check_handle(int(event_ptr), "event", "cuEventQuery")
        return 0  # everything completes when enqueued

    def _event_synchronize(self, event_ptr: int) -> int:
        self.check_handle(int(event_ptr), "event", "cuEventSynchronize")
        return 0

    def _event_elapsed(self, *args: object) -> int:
        raise HostCudaError("cuEventElapsedTime", "the host build keeps no device time")

    def _stream_wait_event(self, stream_ptr: int, event_ptr: int, flags: int) -> int:
        self.check_stream(int(stream_ptr), "cuStreamWaitEvent")
        self.check_handle(int(event_ptr), "event", "cuStreamWaitEvent")
        return 0

    def _graph_launch(self, *args: object) -> int:
        raise HostCudaError("cuGraphLaunch", "CUDA graphs are not modelled by the host build")

    def _pointer_attribute(self, value_address: int, attribute: int, ptr: int) -> int:
        kind = self.memory.kind_of(int(ptr))
        if kind is None:
            return driver.CUDA_ERROR_INVALID_VALUE
        ctypes.c_uint.from_address(value_address).value = (
            driver.CU_MEMORYTYPE_DEVICE if kind == "device" else driver.CU_MEMORYTYPE_HOST)
        return 0

    def _error_name(self, code: int, name_address: object) -> int:
        return 1  # never reached: the host build raises HostCudaError with the detail instead of codes
