"""The latest-frame slot between a capture thread and the pipeline.

When the pipeline is slower than the source, frames are replaced, never queued, so latency stays
bounded; every replaced frame is counted. The slot keeps the newest frame and the one before it
(``DEPTH``): ``take`` returns the newest and counts the other as replaced, while a batching consumer
may ``take_recent`` both, in order, into one batch. A pipeline that missed one frame period (a GPU
shared with a process starting up, a long batch) then loses no frame where its batch has room for
both, and waits for none: the two go through together. In ``lossless`` mode (file sources read as
fast as possible, for benchmarks) the producer waits for the slot to empty instead. A ``hold`` makes
it wait for a bounded time: while a reload swaps the pipeline, nobody takes frames for a moment, and
a frame that waits costs nothing where a replaced one would be lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from streamd.frame import Frame

DEPTH = 2  # the newest frame and the one before it


class LatestFrameSlot:
    def __init__(self, lossless: bool = False, on_drop: Callable[[Frame], None] | None = None) -> None:
        self.lossless = lossless
        self._on_drop = on_drop
        self._frames: list[Frame] = []  # oldest first, at most DEPTH
        self._condition = threading.Condition()
        self._closed = False
        self._hold_until = 0.0  # time.monotonic() until which a put waits instead of replacing
        self.dropped = 0

    def put(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        """Offer a frame. Returns False when the slot is closed (the producer should stop)."""
        with self._condition:
            if self.lossless or self._hold_until:
                while self._frames and not self._closed and not (stop and stop.is_set()):
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
            frames = self._frames
            frames.append(frame)
            replaced = [frames.pop(0)] if len(frames) > DEPTH else []
            self.dropped += len(replaced)
            self._condition.notify_all()
        self._release(replaced)
        return True

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame, or None after ``timeout`` seconds (or when closed and empty); an older
        frame still waiting is counted as replaced."""
        frames = self.take_recent(1, timeout)
        return frames[0] if frames else None

    def take_recent(self, limit: int, timeout: float | None = None) -> list[Frame]:
        """Up to ``limit`` of the newest frames, oldest first ([] after ``timeout`` seconds, or when
        closed and empty); older ones are counted as replaced."""
        with self._condition:
            if not self._frames and not self._closed:
                self._condition.wait(timeout)
            frames, self._frames = self._frames, []
            cut = max(len(frames) - max(limit, 0), 0)
            replaced, frames = frames[:cut], frames[cut:]
            self.dropped += cut
            self._condition.notify_all()
        self._release(replaced)
        return frames

    def discard(self, frames: list[Frame]) -> None:
        """Frames taken but not used after all: counted as replaced, as if never taken."""
        with self._condition:
            self.dropped += len(frames)
        self._release(frames)

    def _release(self, replaced: list[Frame]) -> None:
        if self._on_drop is not None:
            for frame in replaced:
                self._on_drop(frame)

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
        return bool(self._frames)

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
