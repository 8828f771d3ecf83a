"""Keeps one live source (RTSP) connected: connect, watch frame arrival, abandon and reconnect.

One cycle: state ``connecting``, a fresh ReaderThread opens the stream; ``streaming`` from its
first frame; the watchdog gives up on it when the open outlives its timeouts or no live frame
arrives for ``stall_timeout_seconds`` (``stalled``), or the thread reports a failed open/read;
then ``backing_off`` (``stalled`` still, after a stall) for an exponentially growing, jittered,
capped delay, and the next cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from streamd.config.schema import SourceConfig
from streamd.sources.backoff import Backoff
from streamd.sources.reader_thread import ReaderThread
from streamd.sources.readers import FrameReader, redact

log = logging.getLogger(__name__)

# How often the watchdog looks; a stall is reported at most this much after the timeout.
WATCH_INTERVAL_SECONDS = 0.1
# An open may overrun its timeouts a little (FFmpeg checks them between network calls).
OPEN_GRACE_SECONDS = 1.0
# Abandoned readers still blocked in FFmpeg; past this many, wait for one to end before opening
# another, so a camera that hangs every read cannot make threads and sockets pile up.
MAX_ABANDONED_READERS = 2
# A failure repeating with the same reason is logged at WARNING on this attempt count, else DEBUG.
LOG_EVERY_N_FAILURES = 10


class SourceHost(Protocol):
    """What the supervisor reports to: the CaptureSource that owns the slot and the metrics."""

    source_id: str

    def deliver(self, image: np.ndarray, ground_truth: object | None = None) -> bool: ...

    def set_state(self, state: str) -> None: ...

    def record_error(self, kind: str, message: str, level: int = logging.WARNING) -> None: ...

    def count_reconnect(self) -> None: ...

    def update_frame_age(self, last_frame_monotonic: float | None) -> None: ...


class LiveSupervisor:
    """Runs in the source's ``capture-<id>`` thread until ``stop`` is set."""

    def __init__(self, config: SourceConfig, reader_factory: Callable[[], FrameReader], stop: threading.Event,
                 host: SourceHost) -> None:
        self._config = config
        self._reader_factory = reader_factory
        self._stop = stop
        self._host = host
        self._backoff = Backoff(config.backoff_initial_seconds, config.backoff_max_seconds)
        self._abandoned: list[ReaderThread] = []
        self._attempts = 0
        self._last_failure = ""
        self._last_frame_monotonic: float | None = None
        self._log = logging.LoggerAdapter(log, {"source": config.id})
        self._where = f"{redact(config.url)} ({config.transport})"

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._wait_for_reader_budget():
                    break
                reader = self._connect()
                failure = self._watch(reader)
                if failure is None:
                    reader.abandon()
                    self._abandoned.append(reader)
                    break
                if reader.frames:
                    self._backoff.reset()
                self._back_off(failure)
        finally:
            self._host.update_frame_age(self._last_frame_monotonic)
            self._join_abandoned()

    def _join_abandoned(self) -> None:
        """Wait for abandoned readers to leave FFmpeg: a process that exits while a thread is inside
        a blocking FFmpeg call aborts ("exception not rethrown"). The read timeout bounds the wait."""
        deadline = time.monotonic() + self._config.read_timeout_seconds + OPEN_GRACE_SECONDS
        for reader in self._abandoned:
            if not reader.join(max(0.0, deadline - time.monotonic())):
                self._log.warning("source %s: %s still blocked at stop", self._config.id, reader.name)

    # -- one cycle -------------------------------------------------------------------------------
    def _connect(self) -> ReaderThread:
        self._host.set_state("connecting")
        if self._attempts:
            self._host.count_reconnect()
        self._attempts += 1
        level = logging.INFO if self._backoff.failures == 0 else logging.DEBUG
        self._log.log(level, "source %s: connecting to %s (attempt %d)", self._config.id, self._where,
                      self._attempts)
        reader = ReaderThread(f"capture-{self._config.id}-reader-{self._attempts}", self._reader_factory,
                              self._host.deliver, slow_read_seconds=0.9 * self._config.read_timeout_seconds)
        reader.start()
        return reader

    def _watch(self, reader: ReaderThread) -> str | None:
        """Block until the reader fails or stalls (returns the error kind) or stop (returns None)."""
        config = self._config
        # The probe and OpenCV's open may each take up to the open timeout.
        open_deadline = reader.started_monotonic + 2 * config.open_timeout_seconds + OPEN_GRACE_SECONDS
        streaming = False
        while not self._stop.wait(WATCH_INTERVAL_SECONDS):
            now = time.monotonic()
            live = reader.last_live_frame_monotonic
            if live is not None:
                self._last_frame_monotonic = live
            self._host.update_frame_age(self._last_frame_monotonic)
            if reader.frames and not streaming:
                streaming = True
                self._host.set_state("streaming")
                self._log.info("source %s: streaming from %s (%.2f s after connecting)", config.id, self._where,
                               now - reader.started_monotonic)
            if reader.done:
                return self._report_ended(reader)
            if reader.opened_monotonic is None:
                if now > open_deadline:
                    return self._give_up(reader, "open", f"open of {self._where} still blocked after "
                                                         f"{now - reader.started_monotonic:.1f} s; abandoned")
                continue
            since = live if live is not None else reader.opened_monotonic
            if now - since > config.stall_timeout_seconds:
                self._host.set_state("stalled")
                return self._give_up(reader, "stall", f"no new frame from {self._where} for "
                                                      f"{now - since:.1f} s (stall timeout "
                                                      f"{config.stall_timeout_seconds:g} s); reconnecting")
        return None

    def _report_ended(self, reader: ReaderThread) -> str:
        kind = "read" if reader.opened_monotonic is not None else "open"
        message = reader.error or "the reader ended"
        if kind == "read":
            message = f"{self._where}: {message}"
        self._record(kind, message)
        return kind

    def _give_up(self, reader: ReaderThread, kind: str, message: str) -> str:
        reader.abandon()
        self._abandoned.append(reader)
        self._record(kind, message)
        return kind

    def _record(self, kind: str, message: str) -> None:
        repeated = message == self._last_failure
        self._last_failure = message
        quiet = repeated and (self._backoff.failures + 1) % LOG_EVERY_N_FAILURES
        self._host.record_error(kind, message, logging.DEBUG if quiet else logging.WARNING)

    def _back_off(self, failure: str) -> None:
        # After a stall the state stays "stalled" through this wait, so a scrape can see it.
        self._host.set_state("stalled" if failure == "stall" else "backing_off")
        delay = self._backoff.next_delay()
        self._log.debug("source %s: %s failure, next attempt in %.2f s", self._config.id, failure, delay)
        self._sleep(delay)

    def _sleep(self, seconds: float) -> bool:
        """Wait (True if stopped meanwhile), keeping the seconds-since-last-frame gauge current."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, WATCH_INTERVAL_SECONDS)):
                return True
            self._host.update_frame_age(self._last_frame_monotonic)
        return self._stop.is_set()

    def _wait_for_reader_budget(self) -> bool:
        """Reap finished abandoned readers; if too many are still blocked, wait for one (or stop)."""
        warned = False
        while True:
            self._abandoned = [r for r in self._abandoned if not r.done]
            if len(self._abandoned) < MAX_ABANDONED_READERS:
                return True
            if not warned:
                self._log.warning("source %s: %d abandoned reads still blocked in FFmpeg; waiting for one to "
                                  "return before reconnecting", self._config.id, len(self._abandoned))
                warned = True
            self._host.set_state("backing_off")
            if self._sleep(WATCH_INTERVAL_SECONDS):
                return False
