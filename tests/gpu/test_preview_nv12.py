"""The preview's download of an NVDEC-style NV12 picture in device memory (cudaMemcpy2D, every
step-th row) equals the same picture thinned from host memory (tests/preview/test_snapshot.py
checks that one against OpenCV). Written on a machine without a GPU: run with tests/gpu."""

from __future__ import annotations

import numpy as np

from streamd.cuda import runtime
from streamd.cuda.memory import DeviceBuffer
from streamd.preview.snapshot import nv12_download
from streamd.sources.device_image import DeviceNV12
from tests.preview.support import host_copy_2d


def test_device_nv12_download_equals_the_host_path() -> None:
    runtime.use_device(0)
    width, height, pitch = 1920, 1080, 2048  # a pitched surface, as decoders make them
    rng = np.random.default_rng(0)
    luma = rng.integers(16, 235, (height, pitch), np.uint8)
    chroma = rng.integers(16, 240, (height // 2, pitch), np.uint8)
    device_luma, device_chroma = DeviceBuffer(luma.nbytes), DeviceBuffer(chroma.nbytes)
    cudart, _, _ = runtime.bindings()
    try:
        for buffer, host in ((device_luma, luma), (device_chroma, chroma)):
            runtime.check(cudart.cudaMemcpy(buffer.ptr, host.ctypes.data, host.nbytes,
                                            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy(test NV12)")
        on_device = DeviceNV12(device_luma.ptr, device_chroma.ptr, width, height, pitch, pitch, device=0)
        on_host = DeviceNV12(luma.ctypes.data, chroma.ctypes.data, width, height, pitch, pitch)
        from_device = nv12_download(on_device, 640)  # the real cudaMemcpy2D copier
        from_host = nv12_download(on_host, 640, host_copy_2d)
        assert from_device.shape == (360, 640, 3)
        assert np.array_equal(from_device, from_host)
    finally:
        device_luma.free()
        device_chroma.free()
