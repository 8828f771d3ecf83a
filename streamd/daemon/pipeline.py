"""The pipeline: worker threads take the newest frame of each source in turn, run a detector and
publish, timing every stage into the metrics.

Several workers (each with its own detector over a shared backend) let a CPU backend run frames
side by side: on small models that beats splitting one frame over the cores. Results are published
in the order frames were taken, whichever worker finishes first.

A detector with ``max_batch > 1`` gets batches instead: the newest frame of several sources at once,
gathered by a BatchCollector (streamd.daemon.batching) within a bounded window. A batch is taken
under one ticket, so its frames are published together, in the order taken, and each source's frames
still in frame order. With ``max_batch = 1`` the collector is the plain round robin it replaced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from streamd.analytics.events import encode as encode_events
from streamd.analytics.sources import Analytics
from streamd.config.schema import DEFAULT_BATCH_WINDOW_SECONDS
from streamd.daemon.batching import BatchCollector
from streamd.frame import Frame
from streamd.inference.detector import DetectionResult, Detector
from streamd.metrics.definitions import StreamdMetrics
from streamd.publish.message import encode
from streamd.publish.publisher import Publisher
from streamd.sinks import Sinks
from streamd.sources.capture import CaptureSource
from streamd.sources.latest_frame import FrameSignal
from streamd.tracking.sources import SourceTrackers

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, sources: Sequence[CaptureSource], detectors: Sequence[Detector], publisher: Publisher,
                 metrics: StreamdMetrics, frame_signal: FrameSignal, max_frame_age_seconds: float = 0.0,
                 on_result: Callable[[DetectionResult, float], None] | None = None,
                 batch_window_seconds: float = DEFAULT_BATCH_WINDOW_SECONDS,
                 trackers: SourceTrackers | None = None, first_sequence: int = 0,
                 analytics: Analytics | None = None, sinks: Sinks | None = None) -> None:
        self._sources = list(sources)
        self._trackers = trackers  # run on each result as it is published: each source's frames in order
        self._analytics = analytics  # zones and lines, on the tracked result
        self._sinks = sinks  # each published message also into the sinks' buffers (never waits)
        self._detectors = list(detectors)
        self._publisher = publisher
        self._metrics = metrics
        self._frame_signal = frame_signal
        self._on_result = on_result
        self.max_batch = min(detector.max_batch for detector in self._detectors)
        self._collector = BatchCollector(self._sources, frame_signal.condition, self.max_batch,
                                         batch_window_seconds, max_frame_age_seconds, metrics)
        self._stop = threading.Event()
        self.finished = threading.Event()  # every source ended and everything was published
        self.error: BaseException | None = None
        # Tickets give the order frames were taken in; results are published in that order.
        self._publish_lock = threading.Lock()
        self._next_ticket = 0
        self._next_ticket_to_publish = 0
        self._completed: dict[int, list[DetectionResult]] = {}
        self._collect_lock = threading.Lock()  # held while collecting a batch and giving it its ticket
        self._taken_lock = threading.Lock()
        self._taken_at: dict[tuple[str, int], float] = {}
        self._sequence = first_sequence  # a reload's new pipeline carries the message sequence on
        self._active_workers = len(self._detectors)
        self._heartbeats = [time.monotonic()] * len(self._detectors)
        self._threads = [threading.Thread(target=self._work, args=(i,), name=f"pipeline-{i}", daemon=True)
                         for i in range(len(self._detectors))]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._collector.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    @property
    def heartbeat_monotonic(self) -> float:
        """When the slowest worker last looked for a frame."""
        return min(self._heartbeats)

    @property
    def sequence(self) -> int:
        """The last message sequence number published (a reload's next pipeline continues from it)."""
        return self._sequence

    @property
    def running(self) -> bool:
        """Any worker still running (after ``stop()``: one still busy with a frame)."""
        return any(thread.is_alive() for thread in self._threads)

    # -- workers -------------------------------------------------------------------------------
    def _work(self, worker: int) -> None:
        detector = self._detectors[worker]
        try:
            while not self._stop.is_set():
                self._heartbeats[worker] = time.monotonic()
                taken = self._next_batch()
                if taken is None:
                    self._flush(detector)
                    if self._all_sources_done():
                        break
                    continue
                ticket, frames = taken
                started = time.perf_counter()
                self._complete(ticket, self._process(detector, frames))
                if self.max_batch > 1:
                    # The whole time away from collecting: the detector call and publishing what it
                    # returned. Publishing is a real share of it at many cameras: timing the call alone
                    # would leave the batch window too long for the frame period (docs/gpu.md).
                    self._collector.observe_batch_seconds(time.perf_counter() - started)
            self._complete(None, detector.drain())
        except BaseException as error:  # reported by the service, which stops the daemon
            log.exception("pipeline worker %d failed", worker)
            self.error = error
            self.finished.set()
        finally:
            with self._publish_lock:
                self._active_workers -= 1
                if self._active_workers == 0 and self._all_sources_done():
                    self.finished.set()

    def _flush(self, detector: Detector) -> None:
        """No frame came for a while: publish what a pipelined detector still holds (BatchGpuDetector
        returns a batch's results one call late; without this its last batch would wait for the next
        frame, or for shutdown)."""
        if not getattr(detector, "pending", 0):
            return
        results = detector.drain()
        if results:
            with self._collect_lock:
                ticket = self._next_ticket
                self._next_ticket += 1
            self._complete(ticket, results)

    def _all_sources_done(self) -> bool:
        return all(s.finished.is_set() and not s.slot.peek_ready() for s in self._sources)

    def _next_batch(self) -> tuple[int, list[Frame]] | None:
        """(ticket, the next batch): the newest frame of ready sources, round robin so no source
        starves the others. One worker collects at a time, so tickets follow the order taken."""
        with self._collect_lock:
            frames = self._collector.next_batch()
            if not frames:
                return None
            ticket = self._next_ticket
            self._next_ticket += 1
        taken_monotonic = time.monotonic()
        with self._taken_lock:
            for frame in frames:
                self._taken_at[(frame.source_id, frame.index)] = taken_monotonic
        return ticket, frames

    def _process(self, detector: Detector, frames: list[Frame]) -> list[DetectionResult]:
        if self.max_batch == 1:
            return detector.submit(frames[0])
        if len(frames) <= self.max_batch:
            return detector.submit_batch(frames)
        # A late batch catching up (streamd.daemon.batching): detector calls of at most max_batch, in
        # order, so each source's frames still reach the detector in frame order.
        results: list[DetectionResult] = []
        for start in range(0, len(frames), self.max_batch):
            results.extend(detector.submit_batch(frames[start:start + self.max_batch]))
        return results

    # -- publishing ----------------------------------------------------------------------------
    def _complete(self, ticket: int | None, results: list[DetectionResult]) -> None:
        """Queue a ticket's results, then publish every ticket that is next in line.

        ``ticket=None``: results drained at shutdown, published after everything ticketed.
        """
        with self._publish_lock:
            if ticket is None:
                for result in results:
                    self._publish(result)
                return
            self._completed[ticket] = results
            while self._next_ticket_to_publish in self._completed:
                for result in self._completed.pop(self._next_ticket_to_publish):
                    self._publish(result)
                self._next_ticket_to_publish += 1

    def _publish(self, result: DetectionResult) -> None:
        """Send one message and record its timings. Called with the publish lock held."""
        frame = result.frame
        with self._taken_lock:
            taken_monotonic = self._taken_at.pop((frame.source_id, frame.index), frame.capture_monotonic)
        metrics = self._metrics.frame_metrics(frame.source_id)
        started = time.perf_counter()
        if self._trackers is not None:
            result = self._trackers.apply(result)
            metrics.stage["track"].observe(time.perf_counter() - started)
            started = time.perf_counter()
        class_names = self._detectors[0].class_names
        outcome = self._analytics.apply(result, class_names) if self._analytics is not None else None
        if outcome is not None:
            metrics.stage["analytics"].observe(time.perf_counter() - started)
            started = time.perf_counter()
        self._sequence += 1
        parts = encode(frame.source_id, frame.index, self._sequence, frame.capture_time, time.time(),
                       frame.width, frame.height, self._detectors[0].model_id, result.detections, class_names,
                       zones=None if outcome is None else outcome.zones_json)
        self._publisher.send(parts)
        if self._sinks is not None:
            self._sinks.offer(parts)
        if outcome is not None and outcome.events:  # after the frame's detections, on the events/ topic
            events = encode_events(frame.source_id, self._analytics.next_sequence(frame.source_id), frame.index,
                                   frame.capture_time, time.time(), outcome.events, class_names)
            self._publisher.send(events)
            if self._sinks is not None:
                self._sinks.offer(events)
        publish_seconds = time.perf_counter() - started
        frame_age_seconds = time.monotonic() - frame.capture_monotonic
        stage = metrics.stage
        stage["capture_wait"].observe(taken_monotonic - frame.capture_monotonic)
        stage["preprocess"].observe(result.timings.preprocess_seconds)
        stage["inference"].observe(result.timings.inference_seconds)
        stage["decode"].observe(result.timings.decode_seconds)
        stage["publish"].observe(publish_seconds)
        metrics.frame_age.observe(frame_age_seconds)
        metrics.frames_processed.inc()
        metrics.detections.inc(len(result.detections))
        if self._on_result is not None:
            self._on_result(result, frame_age_seconds)
        frame.release()  # the detector is done with the image once it has returned the result
