"""The latest-frame slot between a capture thread and the pipeline.

When the pipeline is slower than the source, the frame waiting in the slot is replaced, never
queued, so latency stays bounded; every replaced frame is counted. In ``lossless`` mode (file
sources read as fast as possible, for benchmarks) the producer waits for the slot to empty instead.
A ``hold`` makes it wait for a bounded time: while a reload swaps the pipeline, nobody takes frames
for a moment, and a frame that waits costs nothing where a replaced one would be lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from streamd.frame import Frame


class LatestFrameSlot:
    def __init__(self, lossless: bool = False, on_drop: Callable[[Frame], None] | None = None) -> None:
        self.lossless = lossless
        self._on_drop = on_drop
        self._frame: Frame | None = None
        self._condition = threading.Condition()
        self._closed = False
        self._hold_until = 0.0  # time.monotonic() until which a put waits instead of replacing
        self.dropped = 0

    def put(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        """Offer a frame. Returns False when the slot is closed (the producer should stop)."""
        with self._condition:
            if self.lossless or self._hold_until:
                while self._frame is not None and not self._closed and not (stop and stop.is_set()):
                    if self.lossless:
                        self._condition.wait(0.1)
                        continue
                    left = self._hold_until - time.monotonic()
                    if left <= 0:
                        self._hold_until = 0.0
                        break
                    self._condition.wait(min(left, 0.1))
            if self._closed:
                return False
            replaced = self._frame
            self._frame = frame
            self._condition.notify_all()
        if replaced is not None:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(replaced)
        return True

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame, or None after ``timeout`` seconds (or when closed and empty)."""
        with self._condition:
            if self._frame is None and not self._closed:
                self._condition.wait(timeout)
            frame, self._frame = self._frame, None
            self._condition.notify_all()
            return frame

    def hold(self, seconds: float) -> None:
        """For up to ``seconds``, a put waits for the slot to empty instead of replacing its frame."""
        with self._condition:
            self._hold_until = time.monotonic() + seconds

    def release(self, grace_seconds: float = 0.0) -> None:
        """End a hold, after ``grace_seconds`` at most (time for a new taker to start taking)."""
        with self._condition:
            self._hold_until = min(self._hold_until, time.monotonic() + grace_seconds) if grace_seconds else 0.0
            self._condition.notify_all()

    def peek_ready(self) -> bool:
        """Whether a frame waits. One reference read, without the lock: a put or take in progress is raced
        with either way (the batch collector scans every slot on each frame signal, so it stays cheap)."""
        return self._frame is not None

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class FrameSignal:
    """Wakes pipeline workers when any source has a new frame.

    A condition, not an Event: workers scan the slots and wait under its lock, and producers
    notify under it, so a frame put between a scan and the wait cannot be missed.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()

    def set(self) -> None:
        """Called by a capture thread after it put a frame (the name keeps Event's interface)."""
        with self.condition:
            self.condition.notify()
