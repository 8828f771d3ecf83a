"""Zero-copy GPU path, forced on whatever GPU runs the tests: the letterbox kernel reads frames in
place from mapped host memory and sees exactly the pixels the copy path uploads; detections are identical;
no upload is made, and with mapped results no copy back either."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.frame import Frame
from streamd.inference.base import TensorSpec
from streamd.yolox.preprocess import YOLOX
from tests.gpu.test_pipeline import _model_path, frames
from tests.gpu.test_postprocess import CELLS, HEIGHT, WIDTH, synthetic_output


class InputRecordingEngine:
    """Engine double: keeps a device copy of every input it is given, writes one fixed raw output."""

    def __init__(self, raw: np.ndarray) -> None:
        from streamd.cuda import memory, runtime

        self._memory = memory
        self._runtime = runtime
        self.raw = raw
        self._source = memory.DeviceBuffer(raw.nbytes)
        self._upload(self._source.ptr, raw)
        self.inputs_seen: list = []

    def _upload(self, device_ptr: int, array: np.ndarray) -> None:
        staging = self._memory.PinnedBuffer(array.shape, array.dtype)
        staging.array[...] = array
        cudart, _, _ = self._runtime.bindings()
        self._runtime.check(cudart.cudaMemcpy(device_ptr, staging.ptr, array.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
        staging.free()

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("images", (1, 3, HEIGHT, WIDTH), np.dtype(np.float32))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("output", (1, CELLS, 85), np.dtype(np.float32))]

    def enqueue(self, addresses, stream_ptr: int) -> None:
        nbytes = 3 * HEIGHT * WIDTH * 4
        record = self._memory.DeviceBuffer(nbytes)
        self._memory.copy_dtod_async(record.ptr, addresses["images"], nbytes, stream_ptr)
        self.inputs_seen.append(record)
        self._memory.copy_dtod_async(addresses["output"], self._source.ptr, self.raw.nbytes, stream_ptr)

    def downloaded_inputs(self) -> list[np.ndarray]:
        cudart, _, _ = self._runtime.bindings()
        arrays = []
        for record in self.inputs_seen:
            host = self._memory.PinnedBuffer((3, HEIGHT, WIDTH), np.float32)
            self._runtime.check(cudart.cudaMemcpy(host.ptr, record.ptr, record.nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy")
            arrays.append(host.array.copy())
            host.free()
        return arrays

    def close(self) -> None:
        for record in self.inputs_seen:
            record.free()
        self._source.free()


def _count_copies(monkeypatch) -> dict[str, int]:
    from streamd.cuda import memory

    counts = {"htod": 0, "dtoh": 0}
    htod, dtoh = memory.copy_htod_async, memory.copy_dtoh_async

    def traced_htod(*args):
        counts["htod"] += 1
        return htod(*args)

    def traced_dtoh(*args):
        counts["dtoh"] += 1
        return dtoh(*args)

    monkeypatch.setattr(memory, "copy_htod_async", traced_htod)
    monkeypatch.setattr(memory, "copy_dtoh_async", traced_dtoh)
    return counts


def _run(detector, engine: InputRecordingEngine, items: list[Frame], feed: str):
    """Submit ``items`` fed as ``pool`` (the detector's frame allocator), ``slot`` (host_frame_buffer) or
    ``pageable`` (plain numpy); returns (results, network inputs seen, host buffers to free)."""
    allocate = detector.frame_allocator()
    frees = []
    results = []
    for frame in items:
        image = frame.image
        if feed == "pool":
            array, free = allocate(image.shape, image.dtype)
            np.copyto(array, image)
            frees.append(free)
            image = array
        elif feed == "slot":
            array = detector.host_frame_buffer(frame.width, frame.height)
            np.copyto(array, image)
            image = array
        results.extend(detector.submit(Frame(frame.source_id, frame.index, 0.0, 0.0, image)))
    results.extend(detector.drain())
    inputs = engine.downloaded_inputs()
    detector.close()
    for free in frees:
        free()
    return results, inputs


@pytest.mark.parametrize("feed", ["pool", "slot", "pageable"])
@pytest.mark.parametrize("mapped_results", [False, True])
def test_zero_copy_reads_the_same_pixels_and_finds_the_same(feed: str, mapped_results: bool, monkeypatch) -> None:
    from streamd.gpu.detector import GpuDetector
    from streamd.gpu.zero_copy import ZeroCopyGpuDetector

    raw = synthetic_output(11, 40)
    items = frames(8)  # four sizes, one larger than the first slot buffers (they grow)
    engine = InputRecordingEngine(raw)
    expected, expected_inputs = _run(GpuDetector(engine, YOLOX, 80, 0.3, 0.45, max_frame_bytes=640 * 480 * 3,
                                                 owns_engine=False), engine, items, feed)
    engine.close()
    counts = _count_copies(monkeypatch)
    engine = InputRecordingEngine(raw)
    detector = ZeroCopyGpuDetector(engine, YOLOX, 80, 0.3, 0.45, max_frame_bytes=640 * 480 * 3, owns_engine=False,
                                   mapped_results=mapped_results)
    got, got_inputs = _run(detector, engine, items, feed)
    engine.close()

    assert counts["htod"] == 0  # no frame was uploaded
    assert counts["dtoh"] == (0 if mapped_results else len(items))
    if feed == "pageable":
        assert detector.frames_copied == len(items) and detector.frames_in_place == 0
    else:
        assert detector.frames_in_place == len(items) and detector.frames_copied == 0
    assert len(expected_inputs) == len(got_inputs) == len(items)
    for a, b in zip(expected_inputs, got_inputs, strict=True):
        np.testing.assert_array_equal(a, b)  # the kernel read exactly the uploaded pixels
    assert [r.frame.index for r in got] == [r.frame.index for r in expected] == list(range(len(items)))
    assert all(len(r.detections.scores) > 0 for r in expected)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a.detections.boxes_xyxy, b.detections.boxes_xyxy)
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
        np.testing.assert_array_equal(a.detections.class_ids, b.detections.class_ids)


def test_mapped_results_keep_every_candidate() -> None:
    """More candidates than the copy path copies back (256): read in place, none lost, same as copy path."""
    from streamd.gpu.detector import GpuDetector
    from streamd.gpu.zero_copy import ZeroCopyGpuDetector

    raw = synthetic_output(12, 600)
    candidates = int((raw[0, :, 4] * raw[0, :, 5:].max(axis=1) > 0.01).sum())
    assert candidates > 256  # more than the copy path copies back with the header: it fetches the rest
    items = frames(2)
    results = []
    for detector_class in (GpuDetector, ZeroCopyGpuDetector):
        engine = InputRecordingEngine(raw)
        detector = detector_class(engine, YOLOX, 80, 0.01, 0.45, max_detections=1000, owns_engine=False)
        got = []
        for frame in items:
            got.extend(detector.submit(frame))
        got.extend(detector.drain())
        detector.close()
        engine.close()
        results.append(got)
    copy, zero_copy = results
    assert len(copy[0].detections.scores) > 0
    for a, b in zip(copy, zero_copy, strict=True):
        np.testing.assert_array_equal(a.detections.boxes_xyxy, b.detections.boxes_xyxy)
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)


def test_device_info_and_auto_mode() -> None:
    from streamd.cuda import runtime
    from streamd.cuda.device_info import cuda_versions, device_info
    from streamd.gpu.zero_copy import resolve_zero_copy

    info = device_info(0)
    print(info.as_dict(), cuda_versions())
    assert info.name == runtime.device_name(0)
    assert info.total_memory_bytes > 0
    assert info.kind in ("integrated", "discrete")
    assert resolve_zero_copy("auto", info) == (info.integrated and info.can_map_host_memory)
    assert resolve_zero_copy("off", info) is False
    if info.can_map_host_memory:
        assert resolve_zero_copy("on", info) is True


def test_standin_engine_zero_copy_equals_copy() -> None:
    """The real YOLOX computation (torch stand-in engine, not TensorRT) through both paths."""
    pytest.importorskip("torch")
    model = _model_path()
    if model is None:
        pytest.skip("yolox_nano.onnx not found (set STREAMD_TEST_MODEL)")
    from streamd.gpu.detector import GpuDetector
    from streamd.gpu.zero_copy import ZeroCopyGpuDetector
    from tests.gpu.standin_engine import TorchGraphEngine

    items = frames(12)
    outcomes = []
    for detector_class in (GpuDetector, ZeroCopyGpuDetector):
        detector = detector_class(TorchGraphEngine(model), YOLOX, 80, 0.05, 0.45)
        got = []
        for frame in items:
            got.extend(detector.submit(frame))
        got.extend(detector.drain())
        detector.close()
        outcomes.append(got)
    copy, zero_copy = outcomes
    assert sum(len(r.detections.scores) for r in copy) > 0
    for a, b in zip(copy, zero_copy, strict=True):
        assert a.frame.index == b.frame.index
        np.testing.assert_array_equal(a.detections.boxes_xyxy, b.detections.boxes_xyxy)
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
        np.testing.assert_array_equal(a.detections.class_ids, b.detections.class_ids)


DAEMON_FRAMES = 60


def test_daemon_zero_copy_publishes_what_the_copy_path_does(monkeypatch) -> None:
    """The whole daemon (Service: capture thread, frame pool, pipeline, ZeroMQ) with the detector
    build_gpu_detector makes for model.zero_copy "off" and "on", on the torch stand-in engine: the pool
    hands out mapped buffers the kernel reads in place, and the messages are identical."""
    pytest.importorskip("zmq")
    pytest.importorskip("torch")
    import dataclasses

    from streamd.bench.standin import open_standin_engine
    from streamd.daemon import service as service_module
    from streamd.daemon.service import Service
    from streamd.gpu.build import build_gpu_detector
    from streamd.gpu.zero_copy import ZeroCopyGpuDetector
    from tests.gpu.test_daemon_gpu import config, run
    from tests.support import COCO_CLASSES, VTEST, YOLOX_NANO, require_shared

    require_shared(YOLOX_NANO, VTEST, COCO_CLASSES)
    published = {}
    for mode in ("off", "on"):
        def detectors(model, mode=mode):
            model = dataclasses.replace(model, backend="tensorrt", zero_copy=mode)
            return [build_gpu_detector(model, "yolox_nano", engine_opener=open_standin_engine)]

        monkeypatch.setattr(service_module, "build_detectors", detectors)
        service = Service(config("fast", DAEMON_FRAMES))
        try:
            messages, _ = run(service, DAEMON_FRAMES)
            (detector,) = service.detectors
            assert isinstance(detector, ZeroCopyGpuDetector) == (mode == "on")
            if mode == "on":
                assert detector.frames_in_place > 0  # frames from the daemon's mapped pool, read in place
        finally:
            service.stop()
        (pool,) = service.frame_pools or (None,)
        assert pool is None or pool.leased == 0
        published[mode] = [(m["frame_index"], m["detections"]) for m in messages]
    assert [index for index, _ in published["on"]] == list(range(DAEMON_FRAMES))
    assert sum(len(found) for _, found in published["off"]) > 0
    assert published["on"] == published["off"]


def test_batch_detector_reads_pool_frames_in_place(monkeypatch) -> None:
    """ZeroCopyBatchGpuDetector (model.max_batch > 1): frames of its mapped pool letterboxed in place, the
    same detections as BatchGpuDetector; per batch the only upload left is the descriptor table."""
    pytest.importorskip("torch")
    import cv2

    from streamd.gpu.batch_detector import BatchGpuDetector
    from streamd.gpu.zero_copy_batch import ZeroCopyBatchGpuDetector
    from tests.gpu.standin_engine import TorchGraphEngine
    from tests.support import VTEST, YOLOX_NANO, require_shared

    require_shared(YOLOX_NANO, VTEST)
    capture = cv2.VideoCapture(str(VTEST))
    images = []
    for index in range(12):
        ok, image = capture.read()
        assert ok
        images.append(image if index % 3 else cv2.resize(image, (1280, 720)))
    capture.release()
    batches = [list(range(start, min(start + 4, len(images)))) for start in range(0, len(images), 4)]
    outcomes = {}
    for detector_class in (BatchGpuDetector, ZeroCopyBatchGpuDetector):
        detector = detector_class(TorchGraphEngine(YOLOX_NANO, max_batch=4), YOLOX, 80, 0.3, 0.45, max_batch=4)
        allocate = detector.frame_allocator()
        leased = [allocate(image.shape, image.dtype) for image in images]
        for (array, _), image in zip(leased, images):
            np.copyto(array, image)
        frames = [Frame(f"s{i % 4}", i, 0.0, 0.0, array) for i, (array, _) in enumerate(leased)]
        counts = _count_copies(monkeypatch)
        results = []
        for batch in batches:
            results.extend(detector.submit_batch([frames[i] for i in batch]))
        results.extend(detector.drain())
        if detector_class is ZeroCopyBatchGpuDetector:
            assert detector.frames_in_place == len(images) and detector.frames_uploaded == 0
            assert counts["htod"] == len(batches)  # the descriptor tables, no frame
        else:
            assert counts["htod"] == len(batches) + len(images)
        detector.close()
        for _, free in leased:
            free()
        monkeypatch.undo()
        outcomes[detector_class.__name__] = results
    copy, zero_copy = outcomes["BatchGpuDetector"], outcomes["ZeroCopyBatchGpuDetector"]
    assert [r.frame.index for r in zero_copy] == [r.frame.index for r in copy] == list(range(len(images)))
    assert sum(len(r.detections.scores) for r in copy) > 0
    for a, b in zip(copy, zero_copy, strict=True):
        np.testing.assert_array_equal(a.detections.boxes_xyxy, b.detections.boxes_xyxy)
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
        np.testing.assert_array_equal(a.detections.class_ids, b.detections.class_ids)
