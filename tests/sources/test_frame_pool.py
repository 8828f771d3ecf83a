"""Frame pools: buffers are reused, never handed out twice, and every one comes back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from streamd.config import parse_config
from streamd.daemon import service as service_module
from streamd.daemon.service import Service
from streamd.inference.host_detector import HostDetector
from streamd.sources.frame_pool import FramePool


class CountingAllocator:
    """Stand-in for pinned memory: ordinary numpy buffers, counted."""

    def __init__(self) -> None:
        self.allocated = 0
        self.freed = 0

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.allocated += 1

        def free() -> None:
            self.freed += 1

        return np.empty(shape, dtype), free


def test_buffers_are_reused_after_release() -> None:
    allocator = CountingAllocator()
    pool = FramePool(allocator, max_buffers=2)
    image = np.full((4, 5, 3), 7, np.uint8)
    first, release_first = pool.lease_copy(image)
    assert first is not image and np.array_equal(first, image)
    release_first()
    release_first()  # idempotent: the buffer is not put back twice
    second, release_second = pool.lease_copy(image * 2)
    assert second is first and np.array_equal(second, image * 2)
    third, release_third = pool.lease_copy(image)
    assert third is not second and allocator.allocated == 2
    exhausted, no_release = pool.lease_copy(image)
    assert exhausted is image and no_release is None  # never an overwrite, never a wait
    release_second()
    release_third()
    assert pool.leased == 0
    pool.close()
    assert allocator.freed == 2
    assert pool.lease_copy(image) == (image, None)


class SlowPooledDetector(HostDetector):
    """A host detector that asks for pooled frames and takes its time, so the slot drops frames."""

    allocator = CountingAllocator()

    def frame_allocator(self):
        return self.allocator

    def submit(self, frame):
        time.sleep(0.004)
        return super().submit(frame)


def test_every_pooled_frame_is_released(monkeypatch, tiny_model: Path, tiny_image: Path) -> None:
    def build(model):
        (detector,) = build_detectors_original(model, workers=1, threads=1)
        detector.__class__ = SlowPooledDetector
        return [detector]

    build_detectors_original = service_module.build_detectors
    monkeypatch.setattr(service_module, "build_detectors", build)
    config = parse_config({
        "sources": [{"id": "fast", "kind": "image", "url": str(tiny_image), "loop": True, "fps": 1000,
                     "max_frames": 300}],
        "model": {"path": str(tiny_model)},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
        "metrics": {"enabled": False},
    })
    service = Service(config)
    service.start()
    try:
        assert service.pipeline is not None and service.pipeline.finished.wait(60)
        registry = service.registry
        processed = registry.get_sample_value("streamd_frames_processed_total", {"source": "fast"})
        dropped = registry.get_sample_value("streamd_frames_dropped_total", {"source": "fast", "reason": "superseded"})
        assert dropped > 0 and processed + dropped == 300
        (pool,) = service.frame_pools
        assert pool.leased == 0  # processed and dropped frames alike gave their buffers back
        assert SlowPooledDetector.allocator.allocated <= 8
    finally:
        service.stop()
    assert SlowPooledDetector.allocator.freed == SlowPooledDetector.allocator.allocated


def test_close_frees_buffers_still_leased() -> None:
    allocator = CountingAllocator()
    pool = FramePool(allocator, max_buffers=1)
    _, release = pool.lease_copy(np.zeros((2, 2, 3), np.uint8))
    pool.close()
    release()  # after close: no error, nothing put back
    assert allocator.freed == 1
