"""A pipelined batch detector (results one call late, like BatchGpuDetector) behind live sources that go
quiet without ending: the pipeline publishes the batch still held once no frame has come for its idle
wait, instead of holding it until the next frame or shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
from prometheus_client import CollectorRegistry

from streamd.config.schema import SourceConfig
from streamd.daemon.pipeline import Pipeline
from streamd.metrics.definitions import StreamdMetrics
from streamd.publish.publisher import Publisher
from streamd.publish.subscriber import Subscriber
from streamd.sources.capture import CaptureSource
from streamd.sources.latest_frame import FrameSignal
from streamd.sources.readers import FrameReader
from tests.daemon.test_batching_pipeline import BatchingDetector

FRAMES = 10


class QuietAfter(FrameReader):
    """``FRAMES`` frames at the source's pace, then nothing until ``quiet_until`` is set (a camera that
    stopped sending but is still connected)."""

    def __init__(self, quiet_until: threading.Event) -> None:
        self._quiet_until = quiet_until
        self._count = 0

    def open(self) -> None:
        pass

    def read(self):
        if self._count < FRAMES:
            self._count += 1
            return np.zeros((48, 64, 3), np.uint8), None
        self._quiet_until.wait(10)
        return None

    @property
    def native_fps(self) -> float:
        return 50.0

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        pass


class PipelinedWithPending(BatchingDetector):
    @property
    def pending(self) -> int:
        return 1 if self._pending else 0


def test_a_held_batch_is_published_when_sources_go_quiet() -> None:
    quiet_until = threading.Event()
    detector = PipelinedWithPending(max_batch=2, pipelined=True)
    metrics = StreamdMetrics(CollectorRegistry())
    signal = FrameSignal()
    sources = [CaptureSource(SourceConfig(id=f"cam{i}", kind="file", url="quiet.mp4", pace="native"), metrics,
                             reader_factory=lambda _: QuietAfter(quiet_until), frame_ready=signal) for i in range(2)]
    publisher = Publisher("tcp://127.0.0.1:*", 10_000, metrics)
    subscriber = Subscriber(publisher.bound_endpoint)
    pipeline = Pipeline(sources, [detector], publisher, metrics, signal)
    received = []
    try:
        deadline = time.monotonic() + 10
        while publisher.poll_subscriptions(0.02) == 0 and time.monotonic() < deadline:
            pass
        pipeline.start()
        for source in sources:
            source.start()
        deadline = time.monotonic() + 3  # the sources stay quiet (not finished) for 10 s
        while len(received) < 2 * FRAMES and time.monotonic() < deadline:
            message = subscriber.receive(0.2)
            if message is not None:
                received.append(message)
        assert not pipeline.finished.is_set()
    finally:
        quiet_until.set()
        for source in sources:
            source.stop()
        pipeline.stop()
        subscriber.close()
        publisher.close()
    assert len(received) == 2 * FRAMES  # the last batch too, while both sources are still live
    for source in ("cam0", "cam1"):
        assert [m["frame_index"] for m in received if m["source"] == source] == list(range(FRAMES))
