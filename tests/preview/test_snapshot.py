"""The preview's host copies: NV12 device frames downloaded row-thinned (checked against OpenCV's
full-size conversion, with the planes in host memory and cudaMemcpy2D's contract), host frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.preview.snapshot import host_copy, nv12_download, resized, step_for
from streamd.sources.device_image import DeviceNV12
from tests.preview.support import host_copy_2d


def _nv12_planes(bgr: np.ndarray, pitch_pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(luma with pitch, chroma with pitch, the packed NV12 OpenCV makes) for a BGR picture."""
    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = i420[:height * width].reshape(height, width)
    u = i420[height * width:height * width * 5 // 4].reshape(height // 2, width // 2)
    v = i420[height * width * 5 // 4:].reshape(height // 2, width // 2)
    uv = np.stack([u, v], axis=-1).reshape(height // 2, width)
    pitch = width + pitch_pad
    luma = np.zeros((height, pitch), np.uint8)
    luma[:, :width] = y
    chroma = np.zeros((height // 2, pitch), np.uint8)
    chroma[:, :width] = uv
    return luma, chroma, np.concatenate([y, uv]).reshape(height * 3 // 2, width)


@pytest.mark.parametrize(("width", "height", "max_width", "pad"), [
    (1920, 1080, 640, 64),   # step 3
    (1280, 720, 640, 0),     # step 2, no pitch padding
    (640, 480, 640, 128),    # step 1: full size
    (768, 576, 300, 32),     # step 3, width not a multiple
])
def test_nv12_download_is_the_full_conversion_thinned(width: int, height: int, max_width: int, pad: int) -> None:
    rng = np.random.default_rng(0)
    # Smooth colours: a thinned picture shares one chroma sample per 2x2 block of its own pixels, so
    # sharp colour edges would differ from the full conversion by design.
    small = rng.integers(0, 255, (height // 96, width // 96, 3), np.uint8)
    bgr = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    luma, chroma, packed = _nv12_planes(bgr, pad)
    surface = DeviceNV12(luma.ctypes.data, chroma.ctypes.data, width, height, luma.shape[1], chroma.shape[1])
    rows_read = []

    def copy(dst: np.ndarray, src_ptr: int, src_pitch: int, row_bytes: int, rows: int) -> None:
        rows_read.append(rows)
        host_copy_2d(dst, src_ptr, src_pitch, row_bytes, rows)

    picture = nv12_download(surface, max_width, copy)
    step = step_for(width, max_width)
    assert picture.shape[1] <= max_width
    assert picture.shape[:2] == ((height // (2 * step)) * 2, (width // (2 * step)) * 2)
    # Only every step-th row crossed "PCIe".
    assert sum(rows_read) == picture.shape[0] * 3 // 2
    # Exactly NV12 thinned on the host: every step-th luma sample and every step-th chroma pair.
    out_height, out_width = picture.shape[:2]
    y = packed[:height][::step, ::step][:out_height, :out_width]
    uv = packed[height:].reshape(height // 2, width // 2, 2)[::step, ::step][:out_height // 2, :out_width // 2]
    thinned = np.concatenate([y, uv.reshape(out_height // 2, out_width)])
    assert np.array_equal(picture, cv2.cvtColor(thinned, cv2.COLOR_YUV2BGR_NV12))
    # And close to the full-size conversion, thinned.
    full = cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_NV12)
    expected = full[::step, ::step][:picture.shape[0], :picture.shape[1]]
    difference = np.abs(picture.astype(np.int16) - expected.astype(np.int16))
    assert np.percentile(difference, 99) <= 12, np.percentile(difference, 99)
    assert difference.mean() < 2.0


def test_nv12_download_refuses_a_picture_too_small() -> None:
    plane = np.zeros((4, 4), np.uint8)
    surface = DeviceNV12(plane.ctypes.data, plane.ctypes.data, 4, 2, 4, 4)
    with pytest.raises(ValueError, match="too small"):
        nv12_download(surface, 1, host_copy_2d)


def test_host_copies() -> None:
    image = np.full((576, 768, 3), 7, np.uint8)
    small = host_copy(image, 640)
    assert small.shape == (480, 640, 3) and not np.shares_memory(small, image)
    same_size = host_copy(image, 1000)
    assert same_size.shape == image.shape and not np.shares_memory(same_size, image)
    assert resized(image, 1000) is image
