"""Cross-stream batching: gather the newest frames of several sources into one detector batch.

``BatchCollector.next_batch()`` takes the newest frame of each source that has one, in round-robin
order, up to ``max_batch``; a source whose previous frame is still waiting too (the pipeline missed a
frame period) gives both, in order, so a late batch costs no frame: where ``max_batch`` holds every
source, always (the batch may then hold up to twice ``max_batch`` frames, which the pipeline runs as
several detector calls of at most ``max_batch``); otherwise where the batch has room after every
source's newest frame. Once it holds a first frame it may wait a bounded window for more:

    window = min(window_cap, fastest live source's frame period - measured batch seconds)

so a batch closes before the fastest camera has its next frame ready (waiting longer would only
age frames). It never waits for a source that cannot deliver in time: not ``streaming`` (connecting,
stalled, backing off, finished), no frame for ``STALLED_PERIODS`` of its own period, its frame
already in the batch, or its next frame expected after the window. A source's period is measured
from the frames taken (capture-time gap over frame-index gap, so superseded frames count too).

Fairness: each batch starts scanning one past the last source the previous batch took, so with
``max_batch`` below the number of sources every source gets its turn. Frames older than
``max_frame_age_seconds`` when taken are dropped and counted (``too_old``), never batched.

The clock and the sources are injected: tests drive the logic with a fake clock and no sleeps.
With ``max_batch = 1`` this is exactly the pipeline's original round robin: first ready source
after the last one taken, no window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from streamd.frame import Frame
from streamd.metrics.definitions import StreamdMetrics
from streamd.sources.latest_frame import DEPTH

# How long next_batch waits for any frame before returning None (the caller checks for stop).
IDLE_WAIT_SECONDS = 0.1
# A streaming source without a frame for this many of its periods is not waited for.
STALLED_PERIODS = 3.0
# Weight of the newest sample in the running estimates (source periods, batch seconds).
SMOOTHING = 0.25


class SlotLike(Protocol):
    def take_recent(self, limit: int, timeout: float | None = None) -> list[Frame]: ...

    def discard(self, frames: list[Frame]) -> None: ...

    def peek_ready(self) -> bool: ...


class BatchSource(Protocol):
    """What the collector reads of a source (``streamd.sources.capture.CaptureSource`` fits)."""

    source_id: str
    slot: SlotLike
    state: str
    finished: threading.Event
    last_frame_monotonic: float  # when the source last delivered a frame (0: never)


class _SourcePace:
    """Running estimate of one source's frame period, from the frames taken of it."""

    __slots__ = ("last_index", "last_capture", "period_seconds")

    def __init__(self) -> None:
        self.last_index = -1
        self.last_capture = 0.0
        self.period_seconds: float | None = None

    def observe(self, frame: Frame) -> None:
        frames_between = frame.index - self.last_index
        if self.last_index >= 0 and frames_between > 0:
            sample = (frame.capture_monotonic - self.last_capture) / frames_between
            if sample > 0:
                self.period_seconds = sample if self.period_seconds is None else (
                    self.period_seconds + SMOOTHING * (sample - self.period_seconds))
        self.last_index, self.last_capture = frame.index, frame.capture_monotonic


class BatchCollector:
    """Thread-safe; concurrent callers of ``next_batch`` take turns (one collects at a time)."""

    def __init__(self, sources: Sequence[BatchSource], condition: threading.Condition, max_batch: int,
                 window_cap_seconds: float, max_frame_age_seconds: float = 0.0,
                 metrics: StreamdMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``condition``: notified by capture threads after they put a frame (``FrameSignal.condition``)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if window_cap_seconds < 0:
            raise ValueError(f"window_cap_seconds must not be negative, got {window_cap_seconds}")
        self._sources = list(sources)
        self._condition = condition
        self.max_batch = max_batch
        self.window_cap_seconds = window_cap_seconds
        self._max_frame_age_seconds = max_frame_age_seconds
        self._metrics = metrics
        self._clock = clock
        self._paces = [_SourcePace() for _ in self._sources]
        self._cursor = 0
        self._previous: dict[int, tuple[Frame, SlotLike]] = {}  # id(frame in the batch) -> (frame before it, slot)
        self._collecting = threading.Lock()
        self.batch_seconds: float | None = None  # running estimate of the detector's time per batch
        self.dropped_too_old = 0

    # -- what the pipeline reports back -----------------------------------------------------------
    def observe_batch_seconds(self, seconds: float) -> None:
        """The time the detector took for a batch: shortens the window so batches keep pace."""
        if seconds >= 0:
            self.batch_seconds = seconds if self.batch_seconds is None else (
                self.batch_seconds + SMOOTHING * (seconds - self.batch_seconds))

    # -- collecting --------------------------------------------------------------------------------
    def next_batch(self, idle_wait_seconds: float = IDLE_WAIT_SECONDS) -> list[Frame]:
        """Up to ``max_batch`` frames (twice that where ``max_batch`` holds every source and the pipeline
        was late), at most two per source (in frame order), in the order taken; [] when no frame arrived
        within ``idle_wait_seconds`` (or ``wake()`` was called)."""
        with self._collecting, self._condition:
            batch: list[Frame] = []
            taken: set[int] = set()
            self._scan(batch, taken)
            if not batch:
                self._condition.wait(idle_wait_seconds)
                self._scan(batch, taken)
                if not batch:
                    return batch
            first_taken = self._clock()
            deadline = first_taken + self.window_seconds() if len(batch) < self.max_batch else first_taken
            while len(batch) < self.max_batch:
                now = self._clock()
                if now >= deadline or not self._worth_waiting(taken, now, deadline):
                    break
                self._condition.wait(deadline - now)
                self._scan(batch, taken)
            self._add_previous(batch)
            if self._metrics is not None:
                self._metrics.batch_size.observe(len(batch))
                self._metrics.batch_wait_seconds.observe(self._clock() - first_taken)
            return batch

    def wake(self) -> None:
        """Make a waiting ``next_batch`` look again at once (stop)."""
        with self._condition:
            self._condition.notify_all()

    def window_seconds(self) -> float:
        """How long a batch may wait for more frames after its first one."""
        now = self._clock()
        periods = [pace.period_seconds for source, pace in zip(self._sources, self._paces)
                   if pace.period_seconds is not None and self._is_live(source, pace, now)]
        if not periods:
            return self.window_cap_seconds
        return max(0.0, min(self.window_cap_seconds, min(periods) - (self.batch_seconds or 0.0)))

    # -- helpers -----------------------------------------------------------------------------------
    def _scan(self, batch: list[Frame], taken: set[int]) -> None:
        """Take ready frames round robin from the cursor into ``batch`` (sources not yet in it)."""
        sources = self._sources
        count = len(sources)
        start = self._cursor
        room = self.max_batch - len(batch)
        for offset in range(count):
            if room <= 0:
                return
            index = start + offset
            if index >= count:
                index -= count
            # Peek first: take(timeout=0) on an empty slot costs a condition wait, and a scan runs on
            # every frame signal, over every source.
            if index in taken:
                continue
            slot = sources[index].slot
            if not slot.peek_ready():
                continue
            if not self._take_from(index, slot, batch):
                continue
            taken.add(index)
            room -= 1
            self._cursor = (index + 1) % count

    def _take_from(self, index: int, slot: SlotLike, batch: list[Frame]) -> bool:
        """The slot's newest frame into ``batch``; the frame before it, if still waiting, kept aside for
        ``_add_previous``. False when nothing was batched (empty slot, or too old)."""
        frames = slot.take_recent(DEPTH if self.max_batch > 1 else 1, timeout=0)
        if not frames:
            return False
        pace = self._paces[index]
        for frame in frames:
            pace.observe(frame)
        newest = frames[-1]
        if self._too_old(newest):
            for frame in frames[:-1]:
                self._too_old(frame)
            return False
        batch.append(newest)
        for frame in frames[:-1]:
            if not self._too_old(frame):
                self._previous[id(newest)] = (frame, slot)
        return True

    def _add_previous(self, batch: list[Frame]) -> None:
        """Each frame kept aside goes just before its successor (the batch is never delayed for it). Where
        ``max_batch`` holds every source, all of them: a late batch catches up in one more detector call,
        and a pipeline that cannot keep up still does no more than two frames a source per batch.
        Otherwise only while the batch has room, so the newest frames of sources left out keep their
        turn; the rest are counted as replaced, as the slot would have."""
        if not self._previous:
            return
        room = len(self._previous) if len(self._sources) <= self.max_batch else self.max_batch - len(batch)
        closed: list[Frame] = []
        for frame in batch:
            entry = self._previous.pop(id(frame), None)
            if entry is not None:
                if room > 0:
                    closed.append(entry[0])
                    room -= 1
                else:
                    entry[1].discard([entry[0]])
            closed.append(frame)
        batch[:] = closed

    def _too_old(self, frame: Frame) -> bool:
        if not self._max_frame_age_seconds:
            return False
        if self._clock() - frame.capture_monotonic <= self._max_frame_age_seconds:
            return False
        self.dropped_too_old += 1
        if self._metrics is not None:
            self._metrics.frames_dropped.labels(frame.source_id, "too_old").inc()
        frame.release()
        return True

    def _is_live(self, source: BatchSource, pace: _SourcePace, now: float) -> bool:
        """Streaming, and (once its pace is known) not silent for several of its periods."""
        if source.state != "streaming" or source.finished.is_set():
            return False
        if pace.period_seconds is None or not source.last_frame_monotonic:
            return True
        return now - source.last_frame_monotonic <= STALLED_PERIODS * pace.period_seconds

    def _worth_waiting(self, taken: set[int], now: float, deadline: float) -> bool:
        """Whether a live source outside the batch may deliver a frame before ``deadline``."""
        for index, (source, pace) in enumerate(zip(self._sources, self._paces)):
            if index in taken or not self._is_live(source, pace, now):
                continue
            if pace.period_seconds is None or not source.last_frame_monotonic:
                return True
            if source.last_frame_monotonic + pace.period_seconds <= deadline:
                return True
        return False
