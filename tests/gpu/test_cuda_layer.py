"""streamd.cuda on a real GPU: checked calls, buffers, copies, streams, events."""

from __future__ import annotations

import numpy as np
import pytest


def test_roundtrip_through_device() -> None:
    from streamd.cuda import memory
    from streamd.cuda.stream import Event, Stream, elapsed_seconds

    stream = Stream()
    source = memory.PinnedBuffer((1000, 3), np.float32)
    source.array[...] = np.random.default_rng(0).random((1000, 3), dtype=np.float32)
    back = memory.PinnedBuffer((1000, 3), np.float32)
    back.array[...] = np.nan
    device = memory.DeviceBuffer(source.nbytes)
    start, end = Event(), Event()
    start.record(stream)
    memory.copy_htod_async(device.ptr, source.ptr, source.nbytes, stream.ptr)
    memory.copy_dtoh_async(back.ptr, device.ptr, back.nbytes, stream.ptr)
    end.record(stream)
    end.synchronize()
    assert end.query()
    assert elapsed_seconds(start, end) >= 0.0
    np.testing.assert_array_equal(back.array, source.array)
    assert memory.is_pinned(source.array) and not memory.is_pinned(np.zeros(10))
    for resource in (device, back, source, start, end):
        resource.free() if hasattr(resource, "free") else resource.close()
        resource.free() if hasattr(resource, "free") else resource.close()  # idempotent
    stream.close()
    stream.close()


def test_errors_name_the_cuda_error() -> None:
    from streamd.cuda import memory
    from streamd.cuda.runtime import CudaError

    with pytest.raises(CudaError, match="cudaErrorMemoryAllocation"):
        memory.DeviceBuffer(1 << 50)


def test_nvrtc_compile_error_carries_log() -> None:
    from streamd.cuda import nvrtc
    from streamd.cuda.runtime import CudaError

    with pytest.raises(CudaError, match="NVRTC_ERROR_COMPILATION"):
        nvrtc.load_module('extern "C" __global__ void broken( { }', "broken")
