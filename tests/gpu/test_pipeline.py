"""The double-buffered GpuDetector with a fixed-output engine (no torch needed), and with the torch
stand-in engine where torch and the YOLOX-nano model are present."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from streamd.frame import Frame
from streamd.inference.base import TensorSpec
from streamd.yolox.preprocess import YOLOX
from tests.gpu.support import assert_equal_to_cpu_decode
from tests.gpu.test_postprocess import CELLS, HEIGHT, WIDTH, synthetic_output
from tests.support import YOLOX_NANO


class FixedOutputEngine:
    """Engine test double: writes one fixed raw output (device-to-device copy) on the given stream."""

    def __init__(self, raw: np.ndarray) -> None:
        from streamd.cuda import memory, runtime

        self._memory = memory
        self.raw = raw
        self._source = memory.DeviceBuffer(raw.nbytes)
        staging = memory.PinnedBuffer(raw.shape, np.float32)
        staging.array[...] = raw
        cudart, _, _ = runtime.bindings()
        runtime.check(cudart.cudaMemcpy(self._source.ptr, staging.ptr, raw.nbytes,
                                        cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
        staging.free()
        self.calls = 0

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("images", (1, 3, HEIGHT, WIDTH), np.dtype(np.float32))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("output", (1, CELLS, 85), np.dtype(np.float32))]

    def enqueue(self, addresses, stream_ptr: int) -> None:
        self.calls += 1
        self._memory.copy_dtod_async(addresses["output"], self._source.ptr, self.raw.nbytes, stream_ptr)

    def close(self) -> None:
        self._source.free()


def frames(count: int) -> list[Frame]:
    rng = np.random.default_rng(0)
    sizes = [(480, 640), (576, 768), (1080, 1920), (200, 300)]
    return [Frame("s", i, 0.0, time.monotonic(), rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8))
            for i in range(count)]


def run(detector, items: list[Frame]) -> list:
    results = []
    for frame in items:
        results.extend(detector.submit(frame))
    results.extend(detector.drain())
    detector.close()
    detector.close()
    return results


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_results_in_order_and_equal_to_cpu_decode(slots: int) -> None:
    from streamd.gpu.detector import GpuDetector

    raw = synthetic_output(7, 60)
    detector = GpuDetector(FixedOutputEngine(raw), YOLOX, 80, 0.3, 0.45, slots=slots, max_detections=300,
                           max_frame_bytes=640 * 480 * 3)  # smaller than some frames: slots grow
    items = frames(12)
    results = run(detector, items)
    assert [r.frame.index for r in results] == list(range(12))
    assert_equal_to_cpu_decode(results, raw, WIDTH, HEIGHT)
    assert all(result.timings.inference_seconds >= 0.0 for result in results)


def test_pinned_frames_upload_without_copy() -> None:
    from streamd.cuda import memory
    from streamd.gpu.detector import GpuDetector

    raw = synthetic_output(8, 30)
    items = frames(6)
    pool = [memory.PinnedBuffer(f.image.shape, np.uint8) for f in items]
    pinned_items = []
    for buffer, frame in zip(pool, items):
        buffer.array[...] = frame.image
        pinned_items.append(Frame(frame.source_id, frame.index, 0.0, 0.0, buffer.array))
    expected = run(GpuDetector(FixedOutputEngine(raw), YOLOX, 80, 0.3, 0.45), items)
    got = run(GpuDetector(FixedOutputEngine(raw), YOLOX, 80, 0.3, 0.45), pinned_items)
    assert [r.frame.index for r in expected] == [r.frame.index for r in got] == list(range(6))
    assert all(len(r.detections.scores) > 0 for r in expected)  # zip over empty results proves nothing
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a.detections.boxes_xyxy, b.detections.boxes_xyxy)
    for buffer in pool:
        buffer.free()


def test_slow_arrivals_get_their_own_result_at_once() -> None:
    from streamd.gpu.detector import GpuDetector

    detector = GpuDetector(FixedOutputEngine(synthetic_output(9, 20)), YOLOX, 80, 0.3, 0.45, slots=2)
    for frame in frames(4):
        time.sleep(0.05)  # a 20 fps live source: the device idles between frames
        assert [r.frame.index for r in detector.submit(frame)] == [frame.index]
    assert detector.drain() == []
    detector.close()


def _model_path() -> Path | None:
    for candidate in (os.environ.get("STREAMD_TEST_MODEL", ""), str(YOLOX_NANO)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def test_standin_engine_double_buffered_equals_synchronous() -> None:
    pytest.importorskip("torch")
    model = _model_path()
    if model is None:
        pytest.skip("yolox_nano.onnx not found (set STREAMD_TEST_MODEL)")
    from streamd.gpu.detector import GpuDetector
    from tests.gpu.standin_engine import TorchGraphEngine

    items = frames(16)
    single = run(GpuDetector(TorchGraphEngine(model), YOLOX, 80, 0.05, 0.45, slots=1), items)
    double = run(GpuDetector(TorchGraphEngine(model), YOLOX, 80, 0.05, 0.45, slots=2), items)
    assert [r.frame.index for r in single] == [r.frame.index for r in double] == list(range(16))
    for a, b in zip(single, double, strict=True):
        np.testing.assert_array_equal(a.detections.boxes_xyxy, b.detections.boxes_xyxy)
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
