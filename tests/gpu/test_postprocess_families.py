"""GPU decode of Ultralytics (both ways round), NMS-free and RT-DETR outputs against the CPU decoders on the same raw
outputs: the single-frame and the batched kernels, with and without overflow past the host capacity.

Raw outputs are synthetic (controlled candidates and ties) and, where ``STREAMD_ULTRALYTICS_RAW`` names an
``.npz`` of real ones (``benchmarks/ultralytics_raw.py`` writes it from the exports in the shared models),
those too. Each test runs on the GPU and on the host build of the same kernels (``kernel_backend``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streamd.yolox.decoders import make_decoder

REFERENCE = Path(__file__).resolve().parents[1] / "yolox" / "data" / "ultralytics_reference.npz"

WIDTH = HEIGHT = 640
CELLS = sum((WIDTH // s) * (HEIGHT // s) for s in (8, 16, 32))
CLASSES = 80
TIED = slice(10, 14)  # rows given equal scores


def at_threshold(threshold: float) -> np.ndarray:
    """The threshold as float32 (dropped: scores must exceed it) and the next float32 above it (kept)."""
    value = np.float32(threshold)
    return np.array([value, np.nextafter(value, np.float32(1))], np.float32)


def ultralytics_output(seed: int, hot_cells: int) -> np.ndarray:
    """[1, 4+C, N]: boxes in pixels, low class scores but for ``hot_cells`` cells; some exact score ties."""
    rng = np.random.default_rng(seed)
    raw = np.empty((1, 4 + CLASSES, CELLS), np.float32)
    raw[0, 0:2] = rng.uniform(0, WIDTH, (2, CELLS))
    raw[0, 2:4] = rng.uniform(4, 200, (2, CELLS))
    raw[0, 4:] = rng.random((CLASSES, CELLS)) * 0.2
    hot = rng.choice(CELLS, hot_cells, replace=False)
    raw[0, 4 + rng.integers(0, CLASSES, hot_cells), hot] = rng.uniform(0.3, 1.0, hot_cells).astype(np.float32)
    raw[0, 4 + 3, hot[:5]] = raw[0, 4 + 7, hot[:5]] = 0.75  # ties: the first class wins, as argmax
    cold = np.setdiff1d(np.arange(CELLS), hot)[:2]
    raw[0, 4 + 2, cold] = at_threshold(0.25)  # the tests' threshold, and the next float above
    return raw


def end2end_output(seed: int, rows: int = 300) -> np.ndarray:
    """[1, K, 6]: x1, y1, x2, y2, score, class; equal scores and class ids outside the names included."""
    rng = np.random.default_rng(seed)
    raw = np.zeros((1, rows, 6), np.float32)
    corner = rng.uniform(0, WIDTH - 100, (rows, 2))
    raw[0, :, 0:2] = corner
    raw[0, :, 2:4] = corner + rng.uniform(2, 100, (rows, 2))
    raw[0, :, 4] = np.sort(rng.random(rows))[::-1]
    raw[0, TIED, 4] = raw[0, TIED.start, 4]
    raw[0, :, 5] = rng.integers(0, CLASSES, rows)
    raw[0, 20, 5], raw[0, 21, 5], raw[0, 22, 5] = CLASSES + 3, -1, CLASSES
    raw[0, 30:32, 4] = at_threshold(0.1)
    return raw


def gpu_decode(layout: str, raws: list[np.ndarray], score: float, capacity: int, batched: bool,
               size: tuple[int, int] = (WIDTH, HEIGHT), nms: float = 0.45) -> list:
    """Detections of each raw output, decoded on the GPU one frame at a time or as one batch."""
    from streamd.cuda import memory
    from streamd.cuda.stream import Stream
    from streamd.gpu.batch_postprocess import GpuBatchYoloxDecoder
    from streamd.gpu.postprocess import GpuYoloxDecoder

    rows = raws[0].shape[1]
    stream = Stream()
    frames = np.ascontiguousarray(np.concatenate(raws))
    pinned = memory.PinnedBuffer(frames.shape, np.float32)
    pinned.array[...] = frames
    output = memory.DeviceBuffer(frames.nbytes)
    memory.copy_htod_async(output.ptr, pinned.ptr, frames.nbytes, stream.ptr)
    results = []
    if batched:
        decoder = GpuBatchYoloxDecoder(layout, *size, CLASSES, score, nms, len(raws), 300,
                                       host_capacity=capacity, selected_rows=rows)
        assert decoder.output_shape == raws[0].shape[1:]
        area = memory.DeviceBuffer(decoder.batch_area_nbytes)
        host_area = decoder.new_batch_host_area()
        memory.memset_async(area.ptr, 0, decoder.batch_area_nbytes, stream.ptr)
        decoder.launch_batch(output.ptr, area.ptr, len(raws), stream.ptr)
        decoder.copy_back_batch(area.ptr, host_area, len(raws), stream.ptr)
        stream.synchronize()
        for index in range(len(raws)):
            results.append(decoder.finish(decoder.batch_records(host_area.array, area.ptr, len(raws), index)))
    else:
        decoder = GpuYoloxDecoder(layout, *size, CLASSES, score, nms, 300, host_capacity=capacity,
                                  selected_rows=rows)
        assert decoder.output_shape == raws[0].shape[1:]
        area = memory.DeviceBuffer(decoder.device_area_nbytes)
        host_area = decoder.new_host_area()
        for index in range(len(raws)):
            memory.memset_async(area.ptr, 0, 4, stream.ptr)
            decoder.launch(output.ptr + index * raws[0].nbytes, area.ptr, stream.ptr)
            decoder.copy_back(area.ptr, host_area, stream.ptr)
            stream.synchronize()
            results.append(decoder.finish(decoder.records(host_area.array, area.ptr)))
    for buffer in (host_area, area, output, pinned):
        buffer.free()
    decoder.close()
    stream.close()
    return results


def assert_same(got, expected, what: str) -> None:
    np.testing.assert_array_equal(got.class_ids, expected.class_ids, err_msg=what)
    np.testing.assert_array_equal(got.scores, expected.scores, err_msg=what)
    np.testing.assert_array_equal(got.boxes_xyxy, expected.boxes_xyxy, err_msg=what)


def cpu_decode(layout: str, raw: np.ndarray, score: float, size: tuple[int, int] = (WIDTH, HEIGHT),
               nms: float = 0.45):
    return make_decoder(layout, *size, CLASSES, score, nms, 300).decode([raw])


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("hot_cells,capacity", [(60, 256), (600, 16)], ids=["fits", "overflow"])
@pytest.mark.parametrize("layout", ["ultralytics", "ultralytics-transposed"])
def test_ultralytics_equals_cpu_decoder(layout: str, hot_cells: int, capacity: int, batched: bool,
                                        kernel_backend: str) -> None:
    raws = [ultralytics_output(seed, hot_cells) for seed in (1, 2, 3)]
    if layout == "ultralytics-transposed":
        raws = [np.ascontiguousarray(raw.transpose(0, 2, 1)) for raw in raws]
    got = gpu_decode(layout, raws, 0.25, capacity, batched)
    for index, raw in enumerate(raws):
        expected = cpu_decode(layout, raw, 0.25)
        assert len(expected) > 20
        assert_same(got[index], expected, f"{layout} frame {index}")


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("capacity", [256, 16], ids=["fits", "overflow"])
def test_end2end_equals_cpu_decoder(capacity: int, batched: bool, kernel_backend: str) -> None:
    raws = [end2end_output(seed) for seed in (4, 5)]
    got = gpu_decode("end2end", raws, 0.1, capacity, batched)
    for index, raw in enumerate(raws):
        expected = cpu_decode("end2end", raw, 0.1)
        assert len(expected) > 100
        assert_same(got[index], expected, f"end2end frame {index}")
        assert not np.isin(got[index].class_ids, [CLASSES + 3, -1, CLASSES]).any()


def rtdetr_output(seed: int, queries: bool, rows: int = 300) -> np.ndarray:
    """[1, K, 6] (cx, cy, w, h normalised, score, class) or [1, K, 4+C] (class scores per query)."""
    rng = np.random.default_rng(seed)
    raw = np.zeros((1, rows, 4 + CLASSES if queries else 6), np.float32)
    raw[0, :, 0:2] = rng.uniform(0.1, 0.9, (rows, 2))
    raw[0, :, 2:4] = rng.uniform(0.01, 0.3, (rows, 2))
    if queries:
        raw[0, :, 4:] = rng.random((rows, CLASSES)) ** 8
        raw[0, TIED, 4 + 5] = raw[0, TIED, 4 + 9] = 0.9  # ties: equal scores, and two classes of one query
        raw[0, 30:32, 4:] = 0.0
        raw[0, 30:32, 4 + 2] = at_threshold(0.2)
    else:
        raw[0, :, 4] = np.sort(rng.random(rows))[::-1]
        raw[0, TIED, 4] = raw[0, TIED.start, 4]
        raw[0, :, 5] = rng.integers(0, CLASSES, rows)
        raw[0, 20, 5], raw[0, 21, 5] = CLASSES + 3, CLASSES
        raw[0, 30:32, 4] = at_threshold(0.2)
    return raw


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("capacity", [256, 16], ids=["fits", "overflow"])
@pytest.mark.parametrize("layout", ["rtdetr", "rtdetr-queries"])
def test_rtdetr_equals_cpu_decoder(layout: str, capacity: int, batched: bool, kernel_backend: str) -> None:
    raws = [rtdetr_output(seed, layout == "rtdetr-queries") for seed in (6, 7)]
    size = (WIDTH, 384)  # not square: each box coordinate scales by its own side
    got = gpu_decode(layout, raws, 0.2, capacity, batched, size)
    for index, raw in enumerate(raws):
        expected = cpu_decode(layout, raw, 0.2, size)
        assert len(expected) > 20
        assert_same(got[index], expected, f"{layout} frame {index}")


def test_real_exports_raw_outputs_equal_cpu_decoder(kernel_backend: str) -> None:
    path = os.environ.get("STREAMD_ULTRALYTICS_RAW", "")
    if not path or not Path(path).is_file():
        pytest.skip("set STREAMD_ULTRALYTICS_RAW to an .npz of raw outputs (benchmarks/ultralytics_raw.py)")
    with np.load(path) as archive:
        outputs = {name: archive[name] for name in archive.files}
    checked = 0
    for name, frames in outputs.items():
        layout = "end2end" if frames.shape[-1] == 6 else "ultralytics"
        raws = [frames[i:i + 1] for i in range(frames.shape[0])]
        for batched in (False, True):
            # Random-weight exports score ~1e-4 at most: a threshold below it keeps many (tied) candidates.
            got = gpu_decode(layout, raws, 1e-4, 256, batched)
            for index, raw in enumerate(raws):
                expected = cpu_decode(layout, raw, 1e-4)
                assert_same(got[index], expected, f"{name} frame {index}")
                checked += len(expected)
    print(f"real exports: {checked} detections equal")
    assert checked > 0


def test_ultralytics_reference_outputs_equal_cpu_decoder(kernel_backend: str) -> None:
    """The raw outputs of trained and real exports that tests/yolox/test_ultralytics_reference.py checks the
    CPU decoders on against Ultralytics' own post-processing: the GPU kernels give the CPU's detections."""
    with np.load(REFERENCE) as archive:
        data = {key: archive[key] for key in archive.files}
    cases = sorted({tuple(key.split("__")[:3]) for key in data if key.endswith("__boxes")})
    checked = 0
    for model in sorted({case[0] for case in cases}):
        layout = str(data[f"{model}__layout"])
        assert int(data[f"{model}__classes"]) == CLASSES
        size = tuple(data[f"{model}__input"].tolist())
        frames = sorted({case[2] for case in cases if case[0] == model})
        raws = [data[f"{model}__raw__{frame}"] for frame in frames]
        for setting in sorted({case[1] for case in cases if case[0] == model}):
            score, nms = (float(part[len(name):]) for part, name in zip(setting.split("_"), ("conf", "iou")))
            for batched in (False, True):
                got = gpu_decode(layout, raws, score, 256, batched, size, nms)
                for index, raw in enumerate(raws):
                    expected = cpu_decode(layout, raw, score, size, nms)
                    assert_same(got[index], expected, f"{model} {setting} frame {frames[index]}")
                    checked += len(expected)
    print(f"reference exports: {checked} detections equal")
    assert checked > 1000


def with_nan_class_scores(layout: str) -> tuple[np.ndarray, float, tuple[int, int]]:
    """A raw output of ``layout`` whose candidates include NaN class scores (as an fp16 engine that overflows
    gives), its threshold and input size. NaN in the first class, in a later one, and after the best one."""
    if layout == "yolox":
        from tests.gpu.test_postprocess import HEIGHT as YOLOX_HEIGHT
        from tests.gpu.test_postprocess import WIDTH as YOLOX_WIDTH
        from tests.gpu.test_postprocess import synthetic_output

        raw = synthetic_output(40, 40)
        hot = np.flatnonzero(raw[0, :, 4] > 0.5)
        raw[0, hot[:4], 5] = raw[0, hot[4:8], 5 + 40] = raw[0, hot[8:12], 5 + 79] = np.nan
        return raw, 0.3, (YOLOX_WIDTH, YOLOX_HEIGHT)
    if layout == "rtdetr-queries":
        raw = rtdetr_output(6, True)
        raw[0, 0:4, 4] = raw[0, 4:40, 4 + 40] = raw[0, 40:44, 4 + 79] = np.nan
        return raw, 0.2, (WIDTH, HEIGHT)
    raw = ultralytics_output(1, 60)
    hot = np.flatnonzero(raw[0, 4:].max(axis=0) > 0.25)
    raw[0, 4, hot[:4]] = raw[0, 4 + 40, hot[4:8]] = raw[0, 4 + 79, hot[8:12]] = np.nan
    if layout == "ultralytics-transposed":
        raw = np.ascontiguousarray(raw.transpose(0, 2, 1))
    return raw, 0.25, (WIDTH, HEIGHT)


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("layout", ["yolox", "ultralytics", "ultralytics-transposed", "rtdetr-queries"])
def test_nan_class_scores_drop_the_candidate_as_on_the_cpu(layout: str, batched: bool, kernel_backend: str) -> None:
    """The CPU decoders' max/argmax propagate NaN: a candidate with a NaN class score scores NaN and is dropped.
    The kernels' class search does the same, rather than keeping the best of its other classes."""
    raw, score, size = with_nan_class_scores(layout)
    expected = cpu_decode(layout, raw, score, size)
    got = gpu_decode(layout, [raw], score, 256, batched, size)[0]
    assert len(expected) > 10 and np.isfinite(expected.scores).all()
    if layout != "yolox":
        assert_same(got, expected, layout)
        return
    # YOLOX sizes come from exp: the kernel's (double, rounded) and numpy's float32 one may differ by an ulp.
    np.testing.assert_array_equal(got.class_ids, expected.class_ids)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_allclose(got.boxes_xyxy, expected.boxes_xyxy, rtol=0, atol=1e-3)


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("layout", ["end2end", "rtdetr"])
def test_nan_class_ids_are_dropped(layout: str, batched: bool, kernel_backend: str) -> None:
    """A row whose class id is NaN is dropped by both decoders, whatever the platform's float -> int cast
    gives for NaN (0 on a GPU and on ARM, the most negative int on x86)."""
    raw = end2end_output(3) if layout == "end2end" else rtdetr_output(3, False)
    nan_rows = [0, 1, 2, 50]
    raw[0, nan_rows, 5] = np.nan
    expected = cpu_decode(layout, raw, 0.2)
    kept_scores = set(expected.scores.tolist())
    assert len(expected) > 10 and not kept_scores & set(raw[0, nan_rows, 4].tolist())
    assert_same(gpu_decode(layout, [raw], 0.2, 256, batched)[0], expected, layout)
