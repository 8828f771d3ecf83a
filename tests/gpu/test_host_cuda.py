"""The host build (tests/gpu/host_cuda.py) itself: strict where a GPU would fault, faithful where the kernels
depend on it (fp16 rounding, atomics' order not being cell order). No GPU involved."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from streamd.cuda import memory, nvrtc, runtime
from streamd.cuda.stream import Stream
from tests.gpu.host_cuda import HostCudaError, compile_so

pytestmark = pytest.mark.host_kernels

OFF_BY_ONE = r"""
extern "C" __global__ void fill(float* __restrict__ out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.f;  // one past the end
}
"""

TO_HALF = r"""
extern "C" __global__ void to_half(const float* src, unsigned short* dst, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned short h;
    const float v = src[i];
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    dst[i] = h;
}
"""


def upload(array: np.ndarray) -> memory.DeviceBuffer:
    buffer = memory.DeviceBuffer(array.nbytes)
    cudart, _, _ = runtime.bindings()
    runtime.check(cudart.cudaMemcpy(buffer.ptr, array.ctypes.data, array.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
    return buffer


def download(buffer: memory.DeviceBuffer, shape: tuple[int, ...], dtype) -> np.ndarray:
    out = np.empty(shape, dtype)
    cudart, _, _ = runtime.bindings()
    runtime.check(cudart.cudaMemcpy(out.ctypes.data, buffer.ptr, out.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    return out


def test_copies_out_of_bounds_or_after_free_raise(host_cuda) -> None:
    stream = Stream()
    device = memory.DeviceBuffer(64)
    pinned = memory.PinnedBuffer((128,), np.uint8)
    memory.copy_htod_async(device.ptr, pinned.ptr, 64, stream.ptr)
    with pytest.raises(HostCudaError, match="out of bounds"):
        memory.copy_htod_async(device.ptr, pinned.ptr, 65, stream.ptr)
    with pytest.raises(HostCudaError, match="out of bounds"):
        memory.copy_htod_async(device.ptr + 32, pinned.ptr, 40, stream.ptr)
    with pytest.raises(HostCudaError, match="out of bounds"):  # reading past a pinned buffer's end
        memory.copy_htod_async(device.ptr, pinned.ptr + 100, 64, stream.ptr)
    with pytest.raises(HostCudaError, match="out of bounds"):
        memory.memset_async(device.ptr, 0, 65, stream.ptr)
    with pytest.raises(HostCudaError, match="pinned memory, expected device"):
        memory.copy_dtoh_async(pinned.ptr, pinned.ptr, 8, stream.ptr)  # a host pointer as the device side
    device.free()
    with pytest.raises(HostCudaError, match="use after free"):
        memory.copy_dtoh_async(pinned.ptr, device.ptr, 8, stream.ptr)
    with pytest.raises(HostCudaError, match="use after free"):
        memory.memset_async(device.ptr, 0, 4, stream.ptr)
    pinned.free()
    stream.close()
    with pytest.raises(HostCudaError, match="destroyed"):
        stream.synchronize()


def test_fresh_device_memory_is_not_zero(host_cuda) -> None:
    buffer = memory.DeviceBuffer(16)
    assert (download(buffer, (4,), np.int32) == -1).all()  # cudaMalloc does not zero; a missed memset shows
    buffer.free()


def test_kernel_writing_past_an_allocation_raises(host_cuda) -> None:
    module = nvrtc.load_module(OFF_BY_ONE, "off_by_one", ("--fmad=false",))
    kernel = nvrtc.Kernel(module, "fill", (ctypes.c_void_p, ctypes.c_int))
    out = memory.DeviceBuffer(100 * 4)
    kernel.launch((1, 1, 1), (128, 1, 1), 0, (out.ptr, 99))  # in bounds
    with pytest.raises(HostCudaError, match="out-of-bounds write"):
        kernel.launch((1, 1, 1), (128, 1, 1), 0, (out.ptr, 100))


def test_launch_arguments_must_match_the_kernel(host_cuda) -> None:
    module = nvrtc.load_module(OFF_BY_ONE, "off_by_one", ("--fmad=false",))
    with pytest.raises(HostCudaError, match="do not match"):
        nvrtc.Kernel(module, "fill", (ctypes.c_void_p, ctypes.c_float))
    with pytest.raises(HostCudaError, match="do not match"):
        nvrtc.Kernel(module, "fill", (ctypes.c_void_p,))
    kernel = nvrtc.Kernel(module, "fill", (ctypes.c_void_p, ctypes.c_int))
    out = memory.DeviceBuffer(16)
    with pytest.raises(HostCudaError, match="n \\(c_int\\)"):
        kernel.launch((1, 1, 1), (4, 1, 1), 0, (out.ptr, 2.0))
    with pytest.raises(HostCudaError, match="n \\(c_int\\)"):
        kernel.bind((1, 1, 1), (4, 1, 1), (out.ptr, 2**31))
    with pytest.raises(HostCudaError, match="argument out"):  # pageable host memory is not device memory
        kernel.launch((1, 1, 1), (4, 1, 1), 0, (np.zeros(4, np.float32).ctypes.data, 2))
    out.free()
    with pytest.raises(HostCudaError, match="use after free"):
        kernel.launch((1, 1, 1), (4, 1, 1), 0, (out.ptr, 2))
    with pytest.raises(HostCudaError, match="out of CUDA's limits"):
        kernel.launch((1, 1, 1), (2048, 1, 1), 0, (0, 2))


def test_unmodelled_source_refuses_to_build(host_cuda) -> None:
    with pytest.raises(HostCudaError, match="inline PTX"):
        compile_so(OFF_BY_ONE.replace("out[i] = 1.f;", 'asm("trap;");'), "trap")
    with pytest.raises(HostCudaError, match="host build failed"):
        compile_so(OFF_BY_ONE.replace("out[i] = 1.f;", "__syncthreads();"), "sync")
    with pytest.raises(HostCudaError, match="not modelled"):
        compile_so(OFF_BY_ONE, "fmad", ("--fmad=true",))


def test_f16_store_rounds_like_numpy(host_cuda) -> None:
    """The host replacement of ``cvt.rn.f16.f32``: round to nearest even, as numpy's float16 cast."""
    rng = np.random.default_rng(0)
    edges = np.array([0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 65536.0, 1e30, np.inf, -np.inf,
                      2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 3 * 2.0 ** -26, 2.0 ** -30,
                      1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1e-45], np.float32)
    values = np.concatenate((edges, -edges, rng.integers(0, 2**32, 200_000, dtype=np.uint32).view(np.float32),
                             rng.normal(0, 300, 100_000).astype(np.float32)))
    values = values[~np.isnan(values)]
    module = nvrtc.load_module(TO_HALF, "to_half", ("--fmad=false",))
    kernel = nvrtc.Kernel(module, "to_half", (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int))
    src = upload(values)
    dst = memory.DeviceBuffer(values.size * 2)
    kernel.launch(((values.size + 255) // 256, 1, 1), (256, 1, 1), 0, (src.ptr, dst.ptr, values.size))
    got = download(dst, values.shape, np.uint16)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got, expected)
    for buffer in (src, dst):
        buffer.free()


def test_compaction_is_not_in_cell_order(host_cuda) -> None:
    """Atomics run in the (permuted) thread order: records come back out of cell order, as on a GPU, so the
    decoders' sort by cell is exercised; in order, they would already be sorted."""
    from streamd.gpu.postprocess import HEADER_BYTES, GpuYoloxDecoder

    decoder = GpuYoloxDecoder("ultralytics-transposed", 320, 320, 4, 0.5, 0.45)
    raw = np.zeros((1, decoder.cells, 8), np.float32)
    raw[0, :, 4] = np.random.default_rng(1).random(decoder.cells)
    output = upload(raw)
    area = memory.DeviceBuffer(decoder.device_area_nbytes)
    host_area = decoder.new_host_area()
    cells = {}
    for schedule in ("permuted", "in-order"):
        host_cuda.schedule = schedule
        memory.memset_async(area.ptr, 0, 4, 0)
        decoder.launch(output.ptr, area.ptr, 0)
        decoder.copy_back(area.ptr, host_area, 0)
        count = int(host_area.array[:1].view(np.int32)[0])
        assert count == int((raw[0, :, 4] > 0.5).sum()) > decoder.host_capacity
        cells[schedule] = download(area, (decoder.device_area_nbytes // 4,), np.float32)[
            HEADER_BYTES // 4:HEADER_BYTES // 4 + count * 8].reshape(count, 8)[:, 6]
        assert sorted(cells[schedule]) == list(np.flatnonzero(raw[0, :, 4] > 0.5))
    assert (np.diff(cells["in-order"]) > 0).all()
    assert not (np.diff(cells["permuted"]) > 0).all()
    for buffer in (host_area, area, output):
        buffer.free()
    decoder.close()
