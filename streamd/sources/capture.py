"""One capture thread per source: pull frames from a reader, pace them, hand the newest to the
pipeline through a latest-frame slot, and reopen the source (with backoff) when it fails."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

import numpy as np

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.frame import Frame
from streamd.sources.backoff import Backoff
from streamd.sources.device_image import discard_undelivered
from streamd.sources.frame_pool import FramePool
from streamd.sources.latest_frame import FrameSignal, LatestFrameSlot
from streamd.sources.readers import DEFAULT_FILE_FPS, MAX_NATIVE_FPS, FrameReader, make_reader, redact
from streamd.sources.report import CaptureReport
from streamd.sources.supervisor import LOG_EVERY_N_FAILURES, LiveSupervisor

log = logging.getLogger(__name__)

# Sources whose frames are all worth processing when read flat out (benchmarks): the slot then
# makes the reader wait instead of dropping.
_LOSSLESS_KINDS = ("file", "image", "synthetic")
# Live sources whose reads can block without bound: run by a LiveSupervisor (disposable reader
# threads, stall watchdog) instead of the plain loop below.
_SUPERVISED_KINDS = ("rtsp",)
STATE_HISTORY_LENGTH = 64


class CaptureSource:
    """Owns one source's thread, reader and slot. ``start()`` once, ``stop()`` once."""

    def __init__(self, config: SourceConfig, metrics: CaptureReport | None = None,
                 reader_factory: Callable[[SourceConfig], FrameReader] = make_reader,
                 frame_ready: FrameSignal | threading.Event | None = None,
                 frame_pool: FramePool | None = None) -> None:
        self.config = config
        self.source_id = config.id
        self._metrics = metrics
        self._reader_factory = reader_factory
        self._frame_ready = frame_ready
        self._frame_pool = frame_pool
        lossless = config.pace == "fast" and config.kind in _LOSSLESS_KINDS
        self.slot = LatestFrameSlot(lossless=lossless, on_drop=self._count_drop)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{config.id}", daemon=True)
        self.state = "connecting"
        # (time.monotonic(), state) of recent transitions: for tests and post-mortems.
        self.state_history: deque[tuple[float, str]] = deque(maxlen=STATE_HISTORY_LENGTH)
        self._deliver_lock = threading.Lock()
        self._started_monotonic = time.monotonic()
        self.finished = threading.Event()  # the source ended for good (file without loop)
        self.frames_delivered = 0
        self.last_frame_monotonic = 0.0
        self._frame_shape: tuple[int, ...] | None = None  # the last frame's, to say when a camera changes it
        self._default_fps_logged = False
        self._log = logging.LoggerAdapter(log, {"source": config.id})

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._started_monotonic = time.monotonic()
        if self._metrics is not None:
            self._metrics.declare_source(self.source_id)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Signal the thread and wait for it (see ``join_timeout`` for how long)."""
        self.request_stop()
        self.join(self.join_timeout(timeout))

    def request_stop(self) -> None:
        """Tell the capture thread to end; returns at once. Several sources are stopped in parallel
        by signalling all of them first, then joining each against one shared deadline."""
        self._stop.set()
        self.slot.close()

    def join_timeout(self, timeout: float) -> float:
        """How long a join after ``request_stop()`` may need: ``timeout``, or for a supervised source
        long enough for a reader blocked in FFmpeg to reach its read timeout."""
        if self.config.kind in _SUPERVISED_KINDS:
            # Leaving before that read returns would let the interpreter exit under it (which
            # aborts the process).
            return max(timeout, self.config.read_timeout_seconds + 1.5)
        return timeout

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread (after ``request_stop()``); True if it ended.
        A thread still running is a daemon thread: it cannot keep the process alive."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))
        self.set_state("stopped")
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- capture loop --------------------------------------------------------------------------
    def _run(self) -> None:
        if self.config.kind in _SUPERVISED_KINDS:
            try:
                LiveSupervisor(self.config, partial(self._reader_factory, self.config), self._stop, self).run()
            finally:
                self.slot.close()
            return
        backoff = Backoff(self.config.backoff_initial_seconds, self.config.backoff_max_seconds)
        while not self._stop.is_set():
            self.set_state("connecting")
            reader = self._reader_factory(self.config)
            try:
                reader.open()
            except SourceError as error:
                # A missing or unreadable file, like a dead camera: the first failure and every
                # tenth logged at WARNING, the others at DEBUG; every one counted.
                failure = backoff.failures + 1
                loud = failure == 1 or failure % LOG_EVERY_N_FAILURES == 0
                self.record_error("open", f"{error}; retrying (failure {failure})",
                                  logging.WARNING if loud else logging.DEBUG)
                reader.close()
                self._back_off(backoff)
                continue
            # Said once, and again after a failure that was followed by frames (not on every retry).
            self._log.log(logging.INFO if backoff.failures == 0 else logging.DEBUG, "source %s opened (%s)",
                          self.source_id, redact(self.config.url) or self.config.kind)
            delivered_before = self.frames_delivered
            try:
                outcome = self._stream(reader)
            finally:
                reader.close()
            if outcome == "ended":
                count = self.frames_delivered
                self._log.log(logging.INFO if count else logging.WARNING, "source %s finished after %d frame%s",
                              self.source_id, count, "" if count == 1 else "s")
                self.set_state("finished")
                self.finished.set()
                break
            if outcome == "empty":
                # Opened, but a whole pass gave no frame (a file cut right after its header, a stream
                # nothing can decode): a failed open, backed off and counted, never a busy loop.
                failure = backoff.failures + 1
                loud = failure == 1 or failure % LOG_EVERY_N_FAILURES == 0
                self.record_error("open", f"{redact(self.config.url) or self.config.kind} opened but gave no frame "
                                          f"(cut short, empty or undecodable?); retrying (failure {failure})",
                                  logging.WARNING if loud else logging.DEBUG)
                self._back_off(backoff)
                continue
            if self.frames_delivered > delivered_before:
                backoff.reset()
            if not self._stop.is_set():
                self.record_error("read", f"source {self.source_id} stopped delivering frames; retrying")
                self._back_off(backoff)
                self.count_reconnect()
        self.slot.close()

    def _stream(self, reader: FrameReader) -> str:
        """Read until stop or a failure (``"failed"``), the end of a non-looping source (``"ended"``), or
        a pass over a looping source that gave no frame (``"empty"``: a rewind with no frame since the
        open or the last rewind). The state turns ``streaming`` at the first frame."""
        paced = self.config.pace == "native"
        fps = self._pace_fps(reader) if paced else 0.0
        interval_seconds = 1.0 / fps if fps > 0 else 0.0
        next_due = time.monotonic()
        frames_this_pass = 0
        while not self._stop.is_set():
            if self.config.max_frames and self.frames_delivered >= self.config.max_frames:
                return "ended"
            item = reader.read()
            if item is None:
                if not self.config.loop:
                    return "ended"
                if not frames_this_pass:
                    return "empty"
                frames_this_pass = 0
                if not reader.rewind():
                    return "failed"
                continue
            frames_this_pass += 1
            if self.state != "streaming":
                self.set_state("streaming")
            image, ground_truth = item
            if interval_seconds:
                # Deliver on the source's clock, as a camera would; never try to catch up a backlog.
                next_due += interval_seconds
                delay = next_due - time.monotonic()
                if delay > 0:
                    if self._stop.wait(delay):
                        discard_undelivered(image)
                        return "failed"
                elif delay < -interval_seconds:
                    next_due = time.monotonic()
            if not self.deliver(image, ground_truth):
                return "failed"
        return "failed"

    def _pace_fps(self, reader: FrameReader) -> float:
        """The rate ``pace = "native"`` delivers at: ``fps``, else the reader's own, else (a file whose
        container gives no usable rate) ``DEFAULT_FILE_FPS``, said once."""
        if self.config.fps:
            return self.config.fps
        fps = reader.native_fps
        if 0 < fps < MAX_NATIVE_FPS:
            return fps
        if not self._default_fps_logged:
            self._default_fps_logged = True
            self._log.info("source %s: %s gives no frame rate%s; paced at %g fps (set fps to choose)",
                           self.source_id, redact(self.config.url) or self.config.kind,
                           f" (it says {fps:g})" if fps else "", DEFAULT_FILE_FPS)
        return DEFAULT_FILE_FPS

    # -- what readers and the supervisor report ------------------------------------------------
    def deliver(self, image: np.ndarray, ground_truth: object | None = None) -> bool:
        """Stamp a captured image and put it in the slot; False when the source is stopping."""
        # A device surface (NVDEC) owns its memory and gives it back itself; host images may be pooled.
        release_image = getattr(image, "release", None) if not isinstance(image, np.ndarray) else None
        if release_image is None and self._frame_pool is not None:
            # On this thread, beside inference: the detector then finds the frame in the memory it wants.
            image, release_image = self._frame_pool.lease_copy(image)
        with self._deliver_lock:  # a supervised source's abandoned reader may race its successor
            self._note_frame_shape(tuple(getattr(image, "shape", ())))
            now_monotonic = time.monotonic()
            frame = Frame(self.source_id, self.frames_delivered, time.time(), now_monotonic, image, ground_truth,
                          release_image)
            self.frames_delivered += 1
            self.last_frame_monotonic = now_monotonic
        if self._metrics is not None:
            self._metrics.frame_captured(self.source_id)
            if self.config.kind not in _SUPERVISED_KINDS:  # supervised ones report live frames themselves
                self._metrics.mark_last_frame(self.source_id, frame.capture_time)
        if not self.slot.put(frame, self._stop):
            frame.release()
            return False
        if self._frame_ready is not None:
            self._frame_ready.set()
        return True

    def _note_frame_shape(self, shape: tuple[int, ...]) -> None:
        """One line when the frame size changes (a camera reconfigured, a stream with a new SPS): the
        pipeline letterboxes each frame on its own, so nothing else has to change."""
        if shape != self._frame_shape and len(shape) >= 2:
            if self._frame_shape is not None:
                old = self._frame_shape
                self._log.warning("source %s: frame size changed from %dx%d to %dx%d", self.source_id,
                                  old[1], old[0], shape[1], shape[0])
            self._frame_shape = shape

    def set_state(self, state: str) -> None:
        if state != self.state or not self.state_history:
            self.state_history.append((time.monotonic(), state))
        self.state = state
        if self._metrics is not None:
            self._metrics.set_source_state(self.source_id, state)

    def record_error(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Count an ``open``/``read``/``stall`` error and log it on this source's logger."""
        self._log.log(level, "source %s: %s", self.source_id, message)
        if self._metrics is not None:
            self._metrics.source_error(self.source_id, kind)

    def count_reconnect(self) -> None:
        if self._metrics is not None:
            self._metrics.source_reconnected(self.source_id)

    def update_frame_age(self, last_frame_monotonic: float | None) -> None:
        """Export when the last live frame came (the start while none has arrived yet)."""
        if self._metrics is not None:
            since = last_frame_monotonic if last_frame_monotonic is not None else self._started_monotonic
            self._metrics.mark_last_frame(self.source_id, time.time() - (time.monotonic() - since))

    # -- helpers -----------------------------------------------------------------------------
    def _back_off(self, backoff: Backoff) -> None:
        """Wait the next backoff delay, unless stopped first."""
        self.set_state("backing_off")
        self._stop.wait(backoff.next_delay())

    def _count_drop(self, frame: Frame) -> None:
        frame.release()
        if self._metrics is not None:
            self._metrics.frame_dropped(self.source_id, "superseded")
