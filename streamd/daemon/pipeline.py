"""The pipeline thread: newest frame of each source in turn -> detector -> publish, timing every
stage into the metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from streamd.inference.detector import DetectionResult, Detector
from streamd.metrics.definitions import StreamdMetrics
from streamd.publish.message import encode
from streamd.publish.publisher import Publisher
from streamd.sources.capture import CaptureSource
from streamd.sources.frame import Frame

log = logging.getLogger(__name__)

# How long the pipeline waits for any source before checking whether it should stop.
_IDLE_WAIT_SECONDS = 0.1


class Pipeline:
    def __init__(self, sources: Sequence[CaptureSource], detector: Detector, publisher: Publisher,
                 metrics: StreamdMetrics, frame_ready: threading.Event, max_frame_age_seconds: float = 0.0,
                 on_result: Callable[[DetectionResult, float], None] | None = None) -> None:
        self._sources = list(sources)
        self._detector = detector
        self._publisher = publisher
        self._metrics = metrics
        self._frame_ready = frame_ready
        self._max_frame_age_seconds = max_frame_age_seconds
        self._on_result = on_result
        self._cursor = 0
        self._sequence = 0
        self._taken_at: dict[tuple[str, int], float] = {}  # frame -> when the pipeline took it
        self._stop = threading.Event()
        self.finished = threading.Event()  # every source ended and everything was published
        self.heartbeat_monotonic = time.monotonic()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.heartbeat_monotonic = time.monotonic()
                frame = self._next_frame()
                if frame is None:
                    if all(s.finished.is_set() and not s.slot.peek_ready() for s in self._sources):
                        self._publish_all(self._detector.drain())
                        self.finished.set()
                        return
                    continue
                self._process(frame)
            self._publish_all(self._detector.drain())
        except BaseException as error:  # reported by the service, which stops the daemon
            log.exception("pipeline failed")
            self.error = error
            self.finished.set()

    def _next_frame(self) -> Frame | None:
        """The next source's newest frame, round robin so a busy source cannot starve the others."""
        self._frame_ready.clear()  # cleared before the scan, so a frame put during it is not missed
        count = len(self._sources)
        for offset in range(count):
            index = (self._cursor + offset) % count
            frame = self._sources[index].slot.take(timeout=0)
            if frame is not None:
                self._cursor = index + 1
                return frame
        self._frame_ready.wait(_IDLE_WAIT_SECONDS)
        return None

    def _process(self, frame: Frame) -> None:
        taken_monotonic = time.monotonic()
        waited_seconds = taken_monotonic - frame.capture_monotonic
        if self._max_frame_age_seconds and waited_seconds > self._max_frame_age_seconds:
            self._metrics.frames_dropped.labels(frame.source_id, "too_old").inc()
            return
        self._taken_at[(frame.source_id, frame.index)] = taken_monotonic
        self._publish_all(self._detector.submit(frame))

    def _publish_all(self, results: list[DetectionResult]) -> None:
        for result in results:
            self._publish(result)

    def _publish(self, result: DetectionResult) -> None:
        frame = result.frame
        taken_monotonic = self._taken_at.pop((frame.source_id, frame.index), frame.capture_monotonic)
        started = time.perf_counter()
        self._sequence += 1
        parts = encode(frame.source_id, frame.index, self._sequence, frame.capture_time, time.time(),
                       frame.width, frame.height, self._detector.model_id, result.detections,
                       self._detector.class_names)
        self._publisher.send(parts)
        publish_seconds = time.perf_counter() - started
        frame_age_seconds = time.monotonic() - frame.capture_monotonic
        stage = self._metrics.stage_seconds
        source = frame.source_id
        stage.labels(source, "capture_wait").observe(taken_monotonic - frame.capture_monotonic)
        stage.labels(source, "preprocess").observe(result.timings.preprocess_seconds)
        stage.labels(source, "inference").observe(result.timings.inference_seconds)
        stage.labels(source, "decode").observe(result.timings.decode_seconds)
        stage.labels(source, "publish").observe(publish_seconds)
        self._metrics.frame_age_seconds.labels(source).observe(frame_age_seconds)
        self._metrics.frames_processed.labels(source).inc()
        self._metrics.detections.labels(source).inc(len(result.detections))
        if self._on_result is not None:
            self._on_result(result, frame_age_seconds)
