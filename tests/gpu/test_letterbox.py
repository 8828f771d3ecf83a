"""GPU letterbox kernel against the CPU (OpenCV) Preprocessor, every convention: bit-exact for float32; float16
is the float32 result rounded to nearest even. On the GPU and on the host build (``kernel_backend``)."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.yolox.preprocess import CONVENTIONS, Preprocessor

SIZES = [(1920, 1080, 640, 640), (768, 576, 416, 416), (300, 200, 640, 640), (1001, 703, 416, 320), (64, 48, 64, 64)]


def run_kernel(image: np.ndarray, convention_name: str, width: int, height: int, dtype) -> np.ndarray:
    from streamd.cuda import memory
    from streamd.cuda.stream import Stream
    from streamd.gpu.preprocess import GpuLetterbox

    kernel = GpuLetterbox(CONVENTIONS[convention_name], width, height, dtype)
    stream = Stream()
    frame = memory.PinnedBuffer(image.shape, np.uint8)
    frame.array[...] = image
    device_frame = memory.DeviceBuffer(image.nbytes)
    output = memory.DeviceBuffer(kernel.output_nbytes)
    result = memory.PinnedBuffer((1, 3, height, width), dtype)
    memory.memset_async(output.ptr, 0xFF, output.nbytes, stream.ptr)  # poison: unwritten values show as NaN
    memory.copy_htod_async(device_frame.ptr, frame.ptr, image.nbytes, stream.ptr)
    kernel.launch(device_frame.ptr, image.shape[1], image.shape[0], output.ptr, stream.ptr)
    memory.copy_dtoh_async(result.ptr, output.ptr, output.nbytes, stream.ptr)
    stream.synchronize()
    out = result.array.copy()
    for buffer in (result, output, device_frame, frame):
        buffer.free()
    stream.close()
    return out


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}->{s[2]}x{s[3]}")
def test_float32_matches_opencv_reference(size, convention: str, kernel_backend: str) -> None:
    frame_width, frame_height, width, height = size
    rng = np.random.default_rng(frame_width)
    image = rng.integers(0, 256, (frame_height, frame_width, 3), dtype=np.uint8)
    reference, geometry = Preprocessor(CONVENTIONS[convention], width, height)(image)
    got = run_kernel(image, convention, width, height, np.float32)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, reference)
    from streamd.gpu.preprocess import GpuLetterbox

    # The geometry boxes are mapped back through: the CPU preprocessor's (letterbox or stretch).
    assert GpuLetterbox(CONVENTIONS[convention], width, height).geometry(frame_width, frame_height) == geometry


@pytest.mark.parametrize("convention", ["legacy", "yolox"])
def test_float16_within_half_rounding(convention: str, kernel_backend: str) -> None:
    image = np.random.default_rng(3).integers(0, 256, (576, 768, 3), dtype=np.uint8)
    reference, _ = Preprocessor(CONVENTIONS[convention], 416, 416)(image)
    got = run_kernel(image, convention, 416, 416, np.float16)
    np.testing.assert_allclose(got.astype(np.float32), reference, rtol=1e-3, atol=1e-3)
    # Both kernels compute the float32 value alike; the fp16 store rounds it to nearest even, as numpy does.
    np.testing.assert_array_equal(got.view(np.uint16), reference.astype(np.float16).view(np.uint16))
