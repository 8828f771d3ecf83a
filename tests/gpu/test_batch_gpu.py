"""Batched GPU path: one letterbox launch for NV12 and BGR frames of different sizes (bit-exact with
cv2.cvtColor + the CPU Preprocessor), the stand-in engine at several batch sizes, and the
BatchGpuDetector against the single-frame GpuDetector (same detections)."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from streamd.frame import Frame
from streamd.sources.device_image import DeviceNV12
from streamd.yolox.preprocess import CONVENTIONS, YOLOX, Preprocessor
from tests.support import VTEST, YOLOX_NANO, require_shared

NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the stand-in engine needs torch")


def upload(array: np.ndarray):
    from streamd.cuda import memory, runtime

    buffer = memory.DeviceBuffer(array.nbytes)
    cudart, _, _ = runtime.bindings()
    contiguous = np.ascontiguousarray(array)
    runtime.check(cudart.cudaMemcpy(buffer.ptr, contiguous.ctypes.data, array.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
    return buffer


def download(ptr: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    from streamd.cuda import runtime

    out = np.empty(shape, dtype)
    cudart, _, _ = runtime.bindings()
    runtime.check(cudart.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                  "cudaMemcpy")
    return out


def random_nv12(rng, width: int, height: int) -> np.ndarray:
    """A smooth-ish picture in NV12 (random planes would make every pixel an edge case, which is fine too)."""
    return rng.integers(0, 256, (height + height // 2, width), dtype=np.uint8)


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_batched_letterbox_matches_cvtcolor_and_cpu_letterbox(convention: str, kernel_backend: str) -> None:
    from streamd.cuda.stream import Stream
    from streamd.gpu.batch_preprocess import FrameSurface, GpuBatchLetterbox

    rng = np.random.default_rng(7)
    preprocessor = Preprocessor(CONVENTIONS[convention], 416, 416)
    stream = Stream()
    buffers, surfaces, expected = [], [], []
    for width, height in ((1920, 1080), (1280, 720), (640, 360), (350, 200)):
        nv12 = random_nv12(rng, width, height)
        buffer = upload(nv12)
        buffers.append(buffer)
        surfaces.append(FrameSurface.nv12(buffer.ptr, buffer.ptr + width * height, width, height, width))
        expected.append(preprocessor(cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12))[0][0].copy())
    for width, height in ((768, 576), (1001, 703)):
        bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = upload(bgr)
        buffers.append(buffer)
        surfaces.append(FrameSurface.bgr(buffer.ptr, width, height))
        expected.append(preprocessor(bgr)[0][0].copy())
    kernel = GpuBatchLetterbox(CONVENTIONS[convention], 416, 416, max_batch=8)
    from streamd.cuda import memory

    output = memory.DeviceBuffer(8 * kernel.output_nbytes_per_frame)
    memory.memset_async(output.ptr, 0xFF, output.nbytes, stream.ptr)  # poison: unwritten values show as NaN
    geometries = kernel.launch(surfaces, output.ptr, stream)
    stream.synchronize()
    got = download(output.ptr, (len(surfaces), 3, 416, 416), np.float32)
    for index, reference in enumerate(expected):
        np.testing.assert_array_equal(got[index], reference, err_msg=f"frame {index}")
    assert [g.frame_width for g in geometries] == [1920, 1280, 640, 350, 768, 1001]
    for buffer in (output, *buffers):
        buffer.free()
    kernel.close()
    stream.close()


@NEEDS_TORCH
def test_standin_engine_batches_equal_batch_one() -> None:
    require_shared(YOLOX_NANO)
    from streamd.cuda import memory
    from streamd.cuda.stream import Stream
    from tests.gpu.standin_engine import TorchGraphEngine

    engine = TorchGraphEngine(YOLOX_NANO, max_batch=4)
    assert engine.inputs[0].shape == (None, 3, 416, 416)
    spec_in, spec_out = engine.inputs[0], engine.outputs[0]
    frames = np.random.default_rng(0).integers(0, 256, (4, 3, 416, 416)).astype(np.float32)
    device_in = upload(frames)
    out_nbytes = 3549 * 85 * 4
    device_out = memory.DeviceBuffer(4 * out_nbytes)
    stream = Stream()
    engine.set_input_shapes(engine.static_shapes(4))
    engine.enqueue({spec_in.name: device_in.ptr, spec_out.name: device_out.ptr}, stream.ptr)
    stream.synchronize()
    batched = download(device_out.ptr, (4, 3549, 85), np.float32)
    engine.set_input_shapes(engine.static_shapes(1))
    for index in range(4):
        engine.enqueue({spec_in.name: device_in.ptr + index * frames[0].nbytes, spec_out.name: device_out.ptr},
                       stream.ptr)
        stream.synchronize()
        np.testing.assert_allclose(download(device_out.ptr, (3549, 85), np.float32), batched[index], atol=1e-4)
    for buffer in (device_out, device_in):
        buffer.free()
    stream.close()
    engine.close()


@NEEDS_TORCH
def test_batch_detector_equals_single_frame_detector() -> None:
    require_shared(YOLOX_NANO, VTEST)
    from streamd.gpu.batch_detector import BatchGpuDetector
    from streamd.gpu.detector import GpuDetector
    from tests.gpu.standin_engine import TorchGraphEngine

    capture = cv2.VideoCapture(str(VTEST))
    images = []
    for index in range(60):
        ok, image = capture.read()
        assert ok
        if index % 10 == 0:
            images.append(image if index % 20 else cv2.resize(image, (1280, 720)))
    capture.release()
    # NV12 versions of two of them: the batched detector reads them on the GPU, the single one their cvtColor.
    nv12_host = [cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420) for image in images[:2]]
    nv12_host = [np.concatenate((i420[:image.shape[0]],
                                 np.stack((i420[image.shape[0]:image.shape[0] * 5 // 4].reshape(-1),
                                           i420[image.shape[0] * 5 // 4:].reshape(-1)), 1).reshape(
                                     image.shape[0] // 2, image.shape[1])))
                 for i420, image in zip(nv12_host, images[:2])]
    buffers = [upload(nv12) for nv12 in nv12_host]
    released = []
    device_images = [DeviceNV12(b.ptr, b.ptr + im.shape[0] * im.shape[1], im.shape[1], im.shape[0], im.shape[1],
                                im.shape[1], release=lambda i=i: released.append(i))
                     for i, (b, im) in enumerate(zip(buffers, images[:2]))]
    host_equivalents = [cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12) for nv12 in nv12_host]
    frames = [Frame(f"s{i}", i, 0.0, 0.0, image) for i, image in enumerate(device_images + images)]
    references = [Frame(f"s{i}", i, 0.0, 0.0, image) for i, image in enumerate(host_equivalents + images)]
    single = GpuDetector(TorchGraphEngine(YOLOX_NANO), YOLOX, 80, 0.3, 0.45, slots=1)
    batched = BatchGpuDetector(TorchGraphEngine(YOLOX_NANO, max_batch=8), YOLOX, 80, 0.3, 0.45, max_batch=8)
    try:
        expected = [result for frame in references for result in single.submit(frame)] + single.drain()
        got = batched.submit_batch(frames)
        assert [r.frame for r in got] == frames
        total = 0
        for want, have in zip(expected, got):
            assert np.array_equal(want.detections.class_ids, have.detections.class_ids)
            np.testing.assert_allclose(have.detections.boxes_xyxy, want.detections.boxes_xyxy, atol=1.0)
            total += len(have.detections)
        assert total > 0
    finally:
        single.close()
        batched.close()
        for buffer in buffers:
            buffer.free()
