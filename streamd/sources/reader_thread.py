"""A disposable thread around one blocking FrameReader: open, then read continuously.

A read blocked inside FFmpeg cannot be interrupted from Python. So the supervisor never calls the
reader itself: it watches this thread's progress and, when it stalls, ``abandon()``s it and starts
a new one. The abandoned thread delivers nothing more and releases its capture as soon as the
blocked call returns (the read timeout bounds that), so threads and sockets do not pile up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from streamd.errors import SourceError
from streamd.sources.device_image import discard_undelivered
from streamd.sources.readers import FrameReader

log = logging.getLogger(__name__)


class ReaderThread:
    """Runs ``reader_factory()``'s open and read loop; fields are written by this thread only."""

    def __init__(self, name: str, reader_factory: Callable[[], FrameReader],
                 deliver: Callable[[np.ndarray], bool], slow_read_seconds: float) -> None:
        self.name = name
        self._reader_factory = reader_factory
        self._deliver = deliver
        # A read that blocked this long ended on FFmpeg's read timeout: the frame it returned was
        # drained from a buffer (seen when the server froze), so it does not prove the stream lives.
        self._slow_read_seconds = slow_read_seconds
        self._abandoned = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.started_monotonic = 0.0
        self.opened_monotonic: float | None = None
        self.last_live_frame_monotonic: float | None = None
        self.frames = 0
        self.error: str | None = None

    def start(self) -> None:
        self.started_monotonic = time.monotonic()
        self._thread.start()

    def abandon(self) -> None:
        """Stop delivering; the thread exits (and closes the reader) when its blocking call returns."""
        self._abandoned.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        reader = self._reader_factory()
        try:
            reader.open()
            if self._abandoned.is_set():
                return
            self.opened_monotonic = time.monotonic()
            self._read_loop(reader)
        except SourceError as error:
            self.error = str(error)
        except Exception as error:  # noqa: BLE001 - the supervisor must always learn that this thread ended
            log.exception("%s: unexpected error", self.name)
            self.error = f"unexpected error: {error!r}"
        finally:
            reader.close()
            self._done.set()

    def _read_loop(self, reader: FrameReader) -> None:
        # Read every frame as it arrives, however slow the consumer: the slot keeps only the newest,
        # so FFmpeg's buffers never fill and the frame taken is at most one interval old.
        while not self._abandoned.is_set():
            started = time.monotonic()
            item = reader.read()
            finished = time.monotonic()
            if item is None:
                self.error = f"the stream ended or a read failed after {self.frames} frames"
                return
            if self._abandoned.is_set():
                discard_undelivered(item[0])
                return
            if finished - started < self._slow_read_seconds:
                self.last_live_frame_monotonic = finished
            self.frames += 1
            if not self._deliver(item[0]):
                return  # the slot was closed: the source is stopping
