"""GPU YOLOX decode against the CPU decoder on the same raw outputs."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.yolox.postprocess import YoloxDecoder

WIDTH = HEIGHT = 416
CELLS = sum((WIDTH // s) * (HEIGHT // s) for s in (8, 16, 32))


def synthetic_output(seed: int, hot_cells: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = np.empty((1, CELLS, 85), np.float32)
    raw[..., :2] = rng.random((1, CELLS, 2)) - 0.5
    raw[..., 2:4] = rng.normal(0.0, 1.0, (1, CELLS, 2))
    raw[..., 4:] = rng.random((1, CELLS, 81)) * 0.2
    hot = rng.choice(CELLS, hot_cells, replace=False)
    raw[0, hot, 4] = rng.uniform(0.5, 1.0, hot_cells)
    raw[0, hot, 5 + rng.integers(0, 80, hot_cells)] = rng.uniform(0.4, 1.0, hot_cells)
    return raw


def gpu_decode(raw: np.ndarray, score: float, capacity: int, layout: str = "yolox"):
    from streamd.cuda import memory
    from streamd.cuda.stream import Stream
    from streamd.gpu.postprocess import GpuYoloxDecoder

    decoder = GpuYoloxDecoder(layout, WIDTH, HEIGHT, 80, score, 0.45, 300, host_capacity=capacity)
    stream = Stream()
    pinned = memory.PinnedBuffer(raw.shape, np.float32)
    pinned.array[...] = raw
    output = memory.DeviceBuffer(raw.nbytes)
    area = memory.DeviceBuffer(decoder.device_area_nbytes)
    host_area = decoder.new_host_area()
    memory.copy_htod_async(output.ptr, pinned.ptr, raw.nbytes, stream.ptr)
    memory.memset_async(area.ptr, 0, 4, stream.ptr)
    decoder.launch(output.ptr, area.ptr, stream.ptr)
    decoder.copy_back(area.ptr, host_area, stream.ptr)
    stream.synchronize()
    detections = decoder.finish(decoder.records(host_area.array, area.ptr))
    copied = decoder.copy_back_nbytes
    for buffer in (host_area, area, output, pinned):
        buffer.free()
    decoder.close()
    stream.close()
    return detections, copied


@pytest.mark.parametrize("hot_cells,capacity", [(40, 256), (400, 16)], ids=["fits", "overflow"])
@pytest.mark.parametrize("layout", ["yolox", "yolox-decoded"])
def test_equals_cpu_decoder(hot_cells: int, capacity: int, layout: str, kernel_backend: str) -> None:
    raw = synthetic_output(hot_cells, hot_cells)
    if layout == "yolox-decoded":
        raw[..., :4] = np.abs(raw[..., :4]) * 100 + 10
    expected = YoloxDecoder(layout, WIDTH, HEIGHT, 80, 0.3, 0.45, 300).decode([raw])
    got, copied = gpu_decode(raw, 0.3, capacity, layout)
    assert len(expected) > 10
    np.testing.assert_array_equal(got.class_ids, expected.class_ids)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_allclose(got.boxes_xyxy, expected.boxes_xyxy, rtol=0, atol=1e-3)
    if capacity == 256:
        assert copied <= 0.01 * raw.nbytes
