"""The pipeline with batching detectors, on real capture threads (synthetic sources), a real
publisher and a ZeroMQ subscriber. The detectors are stand-ins shaped like the two real kinds: one
that completes a batch inside ``submit_batch`` (the CPU) and one that returns the previous batch's
results and drains the last one at the end (the pipelined GPU detector)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from streamd.config.schema import SourceConfig
from streamd.daemon.pipeline import Pipeline
from streamd.frame import Frame
from streamd.inference.detector import DetectionResult, Detector, StageTimings
from streamd.metrics.definitions import StreamdMetrics
from streamd.publish.publisher import Publisher
from streamd.publish.subscriber import Subscriber
from streamd.sources.capture import CaptureSource
from streamd.sources.latest_frame import FrameSignal
from streamd.yolox.detections import Detections

TIMINGS = StageTimings(0.0, 0.0, 0.0)


def one_box(frame: Frame) -> Detections:
    """A detection that names its frame: box x1 = frame index, class 0."""
    box = np.array([[frame.index, 0, frame.index + 1, 1]], np.float32)
    return Detections(box, np.array([0.9], np.float32), np.array([0], np.int32))


class BatchingDetector(Detector):
    """Completes every batch inside ``submit_batch``; ``delay`` seconds per batch, at random."""

    model_id = "stand-in"
    class_names = ("thing",)

    def __init__(self, max_batch: int, delay: float = 0.0, pipelined: bool = False) -> None:
        self.max_batch = max_batch
        self.delay = delay
        self.pipelined = pipelined
        self.batches: list[list[tuple[str, int]]] = []
        self._pending: list[DetectionResult] = []
        self._random = random.Random(len(self.batches))

    def submit(self, frame: Frame) -> list[DetectionResult]:
        return self.submit_batch([frame])

    def submit_batch(self, frames: Sequence[Frame]) -> list[DetectionResult]:
        if not 1 <= len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} for max_batch {self.max_batch}")
        self.batches.append([(f.source_id, f.index) for f in frames])
        if self.delay:
            time.sleep(self._random.uniform(0, self.delay))
        results = [DetectionResult(frame, one_box(frame), TIMINGS) for frame in frames]
        if not self.pipelined:
            return results
        done, self._pending = self._pending, results
        return done

    def drain(self) -> list[DetectionResult]:
        done, self._pending = self._pending, []
        return done

    def close(self) -> None:
        pass


class Harness:
    """Capture sources -> Pipeline -> Publisher -> Subscriber, wired like Service does."""

    def __init__(self, sources: list[SourceConfig], detectors: list[Detector], window_seconds: float = 0.02) -> None:
        self.metrics = StreamdMetrics(CollectorRegistry())
        signal = FrameSignal()
        self.sources = [CaptureSource(config, self.metrics, frame_ready=signal) for config in sources]
        self.publisher = Publisher("tcp://127.0.0.1:*", 10_000, self.metrics)
        self.subscriber = Subscriber(self.publisher.bound_endpoint)
        self.pipeline = Pipeline(self.sources, detectors, self.publisher, self.metrics, signal,
                                 batch_window_seconds=window_seconds)
        self.received: list[dict] = []

    def run(self, until: threading.Event | None = None, expected: int = 0, timeout_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + 10
        while self.publisher.poll_subscriptions(0.02) == 0 and time.monotonic() < deadline:
            pass
        self.pipeline.start()
        for source in self.sources:
            source.start()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline and len(self.received) < (expected or float("inf")):
            message = self.subscriber.receive(0.2)
            if message is not None:
                self.received.append(message)
            elif until is not None and until.is_set():
                break

    def close(self) -> None:
        for source in self.sources:
            source.stop()
        self.pipeline.stop()
        self.subscriber.close()
        self.publisher.close()

    def indices_by_source(self) -> dict[str, list[int]]:
        grouped: dict[str, list[int]] = defaultdict(list)
        for message in self.received:
            grouped[message["source"]].append(message["frame_index"])
        return grouped


def synthetic(count: int, pace: str, frames: int = 0, fps: float = 0.0) -> list[SourceConfig]:
    return [SourceConfig(id=f"cam{i}", kind="synthetic", pace=pace, max_frames=frames, fps=fps, width=64,
                         height=48, seed=i) for i in range(count)]


def check_every_frame_in_order(harness: Harness, sources: int, frames: int) -> None:
    assert len(harness.received) == sources * frames
    for source, indices in harness.indices_by_source().items():
        assert indices == list(range(frames)), source
    for message in harness.received:  # each result went out with its own frame
        assert message["detections"][0]["box"][0] == message["frame_index"]
    sequences = [m["sequence"] for m in harness.received]
    assert sequences == sorted(sequences)


def test_pipelined_batching_detector_publishes_every_frame_in_per_source_order() -> None:
    """The GPU detector's shape: results lag one batch, the last batch comes out of drain()."""
    # Batches fill only while 3+ sources stream at once: a detector that takes a few ms a batch keeps
    # each (lossless) source alive for 40 batches, past the others' opening on a loaded machine.
    detector = BatchingDetector(max_batch=3, delay=0.04, pipelined=True)
    harness = Harness(synthetic(5, "fast", frames=40), [detector])
    try:
        harness.run(expected=200)
        assert harness.pipeline.finished.wait(10)
    finally:
        harness.close()
    check_every_frame_in_order(harness, 5, 40)
    assert all(len({source for source, _ in batch}) == len(batch) for batch in detector.batches)
    assert max(len(batch) for batch in detector.batches) == 3
    assert harness.pipeline.max_batch == 3


def test_two_batching_workers_finishing_out_of_order_publish_in_take_order() -> None:
    detectors = [BatchingDetector(max_batch=4, delay=0.004) for _ in range(2)]
    harness = Harness(synthetic(4, "fast", frames=25), detectors)
    try:
        harness.run(expected=100)
    finally:
        harness.close()
    check_every_frame_in_order(harness, 4, 25)
    assert all(d.batches for d in detectors)  # both workers took batches


def test_live_sources_share_a_small_batch_fairly() -> None:
    """6 live cameras, batches of 2, a detector too slow to take every frame: the frames published are
    spread evenly over the cameras (none starves), the rest superseded in their slots."""
    detector = BatchingDetector(max_batch=2, delay=0.02)
    harness = Harness(synthetic(6, "native", fps=50), [detector])
    try:
        harness.run(expected=180)
    finally:
        harness.close()
    counts = Counter(m["source"] for m in harness.received)
    assert len(counts) == 6
    assert min(counts.values()) >= 0.6 * max(counts.values()), counts
    for indices in harness.indices_by_source().values():
        assert indices == sorted(indices) and len(set(indices)) == len(indices)
    dropped = sum(harness.metrics.registry.get_sample_value(
        "streamd_frames_dropped_total", {"source": f"cam{i}", "reason": "superseded"}) for i in range(6))
    assert dropped > 0  # the detector really was the bottleneck


class StallingDetector(BatchingDetector):
    """Pipelined; one batch takes ``stall_seconds`` (a GPU shared with a process starting up)."""

    def __init__(self, max_batch: int, stall_at_batch: int, stall_seconds: float) -> None:
        super().__init__(max_batch, pipelined=True)
        self.stall_at_batch = stall_at_batch
        self.stall_seconds = stall_seconds

    def submit_batch(self, frames: Sequence[Frame]) -> list[DetectionResult]:
        if len(self.batches) == self.stall_at_batch:
            time.sleep(self.stall_seconds)
        return super().submit_batch(frames)


def test_a_batch_two_periods_late_loses_no_frame_where_max_batch_holds_every_camera() -> None:
    """3 cameras at 10 fps; one batch takes 2.5 frame periods, so two frames of each camera wait. With
    max_batch at least the cameras, the older frames go in too, each just before its successor, run as
    detector calls of at most max_batch (the detector refuses more): every frame is published, in
    order. With fewer (max_batch 2) only room left after the newest frames takes them: frames are
    superseded, counted, and the rest stay in order."""
    for max_batch, loses_frames in ((3, False), (6, False), (2, True)):
        detector = StallingDetector(max_batch, stall_at_batch=8, stall_seconds=0.25)
        harness = Harness(synthetic(3, "native", frames=30, fps=10), [detector])
        try:
            harness.run(until=harness.pipeline.finished, expected=90, timeout_seconds=30)
        finally:
            harness.close()
        dropped = sum(harness.metrics.registry.get_sample_value(
            "streamd_frames_dropped_total", {"source": f"cam{i}", "reason": "superseded"}) for i in range(3))
        doubled = [batch for batch in detector.batches if len({source for source, _ in batch}) < len(batch)]
        if loses_frames:
            assert dropped > 0, detector.batches
            for indices in harness.indices_by_source().values():
                assert indices == sorted(indices)
        else:
            assert doubled or max_batch < 6, detector.batches  # the stall left two frames waiting somewhere
            for batch in doubled:  # a camera's two frames in frame order, next to each other
                for source in {source for source, _ in batch}:
                    mine = [index for name, index in batch if name == source]
                    assert mine == sorted(mine)
            check_every_frame_in_order(harness, 3, 30)
            assert dropped == 0, (max_batch, detector.batches)
