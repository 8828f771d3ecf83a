"""BatchCollector on a fake clock: real latest-frame slots, scripted frame arrivals, no sleeps.

``FakeTime.wait`` stands in for the frame signal's condition: it moves the clock to the next
scripted arrival (or to the end of the timeout) and runs it, like a capture thread would.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamd.daemon.batching import STALLED_PERIODS, BatchCollector
from streamd.frame import Frame
from streamd.metrics.definitions import StreamdMetrics
from streamd.sources.latest_frame import LatestFrameSlot

IMAGE = np.zeros((4, 4, 3), np.uint8)


class FakeTime:
    """A monotonic clock and a condition whose ``wait`` advances it through scheduled events."""

    def __init__(self) -> None:
        self.now = 100.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._order), action))

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout if timeout is not None else float("inf"))
        until = self.now + (timeout if timeout is not None else 1e9)
        if self._events and self._events[0][0] <= until:
            when, _, action = heapq.heappop(self._events)
            self.now = max(self.now, when)
            action()
            return True
        self.now = until
        return False

    def advance(self, seconds: float) -> None:
        """Let time pass outside the collector (the detector running), delivering what arrives."""
        until = self.now + seconds
        while self._events and self._events[0][0] <= until:
            when, _, action = heapq.heappop(self._events)
            self.now = max(self.now, when)
            action()
        self.now = until

    def notify_all(self) -> None:
        pass

    def __enter__(self) -> FakeTime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


class FakeSource:
    """The attributes the collector reads of a CaptureSource, around a real LatestFrameSlot."""

    def __init__(self, source_id: str, clock: FakeTime, period: float = 1 / 30) -> None:
        self.source_id = source_id
        self.slot = LatestFrameSlot()
        self.state = "streaming"
        self.finished = threading.Event()
        self.last_frame_monotonic = 0.0
        self.period = period
        self.delivered = 0
        self._clock = clock

    def deliver(self, capture_monotonic: float | None = None) -> Frame:
        when = self._clock.now if capture_monotonic is None else capture_monotonic
        frame = Frame(self.source_id, self.delivered, when, when, IMAGE)
        self.delivered += 1
        self.last_frame_monotonic = when
        self.last_delivered = frame
        self.slot.put(frame)
        return frame

    def stream(self, clock: FakeTime, start: float, until: float) -> None:
        """Schedule a frame every ``period`` from ``start`` to ``until``."""
        when = start
        while when < until:
            clock.at(when, self.deliver)
            when += self.period


def collector(sources: list[FakeSource], clock: FakeTime, max_batch: int, window_cap: float = 0.02,
              max_age: float = 0.0, metrics: StreamdMetrics | None = None) -> BatchCollector:
    return BatchCollector(sources, clock, max_batch, window_cap, max_age, metrics, clock=clock)  # type: ignore[arg-type]


def sources_of(batch: list[Frame]) -> list[str]:
    return [frame.source_id for frame in batch]


def test_all_ready_takes_one_per_source_without_waiting() -> None:
    clock = FakeTime()
    sources = [FakeSource(f"s{i}", clock) for i in range(4)]
    for source in sources:
        source.deliver()
    batch = collector(sources, clock, max_batch=8).next_batch()
    assert sources_of(batch) == ["s0", "s1", "s2", "s3"]
    assert clock.waits == []  # every streaming source is in the batch: nothing left to wait for


def test_a_missed_period_gives_the_frame_before_the_newest_too_in_order() -> None:
    clock = FakeTime()
    source = FakeSource("cam", clock)
    source.deliver()
    previous, newest = source.deliver(), source.deliver()
    assert collector([source], clock, max_batch=4).next_batch() == [previous, newest]
    assert source.slot.dropped == 1  # the frame before both: replaced, counted


def test_where_max_batch_holds_every_source_a_late_batch_takes_every_waiting_frame() -> None:
    clock = FakeTime()
    sources = [FakeSource(f"s{i}", clock) for i in range(3)]
    firsts = [source.deliver() for source in sources]
    latest = [source.deliver() for source in sources]
    batch = collector(sources, clock, max_batch=3).next_batch()
    # Twice max_batch at most: the pipeline runs it as two detector calls, each source in frame order.
    assert batch == [firsts[0], latest[0], firsts[1], latest[1], firsts[2], latest[2]]
    assert all(source.slot.dropped == 0 for source in sources)


def test_with_more_sources_than_max_batch_the_frame_before_the_newest_only_fills_room() -> None:
    clock = FakeTime()
    sources = [FakeSource(f"s{i}", clock) for i in range(4)]
    sources[0].deliver()
    previous, newest = sources[1].deliver(), sources[1].deliver()
    sources[2].deliver()
    collector_ = collector(sources, clock, max_batch=3)
    batch = collector_.next_batch()
    assert sources_of(batch) == ["s0", "s1", "s2"] and batch[1] is newest  # no room: newest frames first
    assert sources[1].slot.dropped == 1 and previous not in batch
    sources[0].deliver()
    previous, newest = sources[1].deliver(), sources[1].deliver()
    # s2 and s3 have no frame: the room left takes s1's frame before the newest, just before it.
    assert collector_.next_batch() == [sources[0].last_delivered, previous, newest]


def test_max_batch_1_takes_the_newest_frame_only() -> None:
    clock = FakeTime()
    source = FakeSource("cam", clock)
    source.deliver()
    newest = source.deliver()
    assert collector([source], clock, max_batch=1).next_batch() == [newest]
    assert source.slot.dropped == 1


def test_round_robin_no_source_starves_when_batch_is_smaller_than_sources() -> None:
    clock = FakeTime()
    sources = [FakeSource(f"s{i}", clock) for i in range(5)]
    batches = collector(sources, clock, max_batch=2)
    served: Counter[str] = Counter()
    for _ in range(50):
        for source in sources:  # every source always has a fresh frame: the worst case for fairness
            source.deliver()
        batch = batches.next_batch()
        assert len(batch) == 2
        served.update(sources_of(batch))
    assert set(served.values()) == {20}  # 50 batches x 2 frames over 5 sources, evenly


def test_round_robin_continues_after_the_last_source_taken() -> None:
    clock = FakeTime()
    sources = [FakeSource(f"s{i}", clock) for i in range(3)]
    batches = collector(sources, clock, max_batch=2)
    for source in sources:
        source.deliver()
    assert sources_of(batches.next_batch()) == ["s0", "s1"]
    sources[0].deliver()
    sources[1].deliver()
    # s2 waited longest: it comes first, then s0.
    assert sources_of(batches.next_batch()) == ["s2", "s0"]


def test_max_batch_1_is_plain_round_robin_without_window() -> None:
    clock = FakeTime()
    sources = [FakeSource(f"s{i}", clock) for i in range(3)]
    batches = collector(sources, clock, max_batch=1, window_cap=1.0)
    order = []
    for _ in range(6):
        for source in sources:
            if not source.slot.peek_ready():
                source.deliver()
        order += sources_of(batches.next_batch())
    assert order == ["s0", "s1", "s2"] * 2
    assert clock.waits == []


def test_waits_for_a_live_source_within_the_window() -> None:
    clock = FakeTime()
    a, b = FakeSource("a", clock), FakeSource("b", clock)
    a.deliver()
    clock.at(clock.now + 0.005, b.deliver)
    batch = collector([a, b], clock, max_batch=4, window_cap=0.02).next_batch()
    assert sources_of(batch) == ["a", "b"]
    assert clock.now == pytest.approx(100.005)  # closed as soon as b arrived, not at the window's end


def test_window_is_bounded_by_the_cap() -> None:
    clock = FakeTime()
    a, b = FakeSource("a", clock), FakeSource("b", clock)
    a.deliver()
    clock.at(clock.now + 0.5, b.deliver)  # far beyond the window
    metrics = StreamdMetrics(CollectorRegistry())
    batch = collector([a, b], clock, max_batch=4, window_cap=0.02, metrics=metrics).next_batch()
    assert sources_of(batch) == ["a"]
    assert clock.now == pytest.approx(100.02)
    assert metrics.registry.get_sample_value("streamd_batch_wait_seconds_sum") == pytest.approx(0.02)
    assert metrics.registry.get_sample_value("streamd_batch_size_sum") == 1


def test_window_follows_the_fastest_period_minus_batch_time() -> None:
    clock = FakeTime()
    fast, slow = FakeSource("fast", clock, period=0.010), FakeSource("slow", clock, period=0.1)
    batches = collector([fast, slow], clock, max_batch=4, window_cap=0.05)
    assert batches.window_seconds() == 0.05  # no period measured yet: the cap
    start = clock.now
    for step in range(30):  # learn both periods from the frames taken
        clock.now = start + step * 0.010
        fast.deliver()
        if step % 10 == 0:
            slow.deliver()
        batches.next_batch()
    clock.now = start + 0.295
    assert batches.window_seconds() == pytest.approx(0.010)
    batches.observe_batch_seconds(0.004)
    assert batches.window_seconds() == pytest.approx(0.006)
    batches.observe_batch_seconds(0.030)  # slower than the fastest camera: no waiting at all
    batches.observe_batch_seconds(0.030)
    assert batches.window_seconds() == 0.0


@pytest.mark.parametrize("state", ["connecting", "stalled", "backing_off", "stopped"])
def test_never_waits_for_a_source_that_is_not_streaming(state: str) -> None:
    clock = FakeTime()
    a, b = FakeSource("a", clock), FakeSource("b", clock)
    b.state = state
    a.deliver()
    batch = collector([a, b], clock, max_batch=4, window_cap=1.0).next_batch()
    assert sources_of(batch) == ["a"]
    assert clock.waits == [] and clock.now == 100.0


def test_never_waits_for_a_finished_source() -> None:
    clock = FakeTime()
    a, b = FakeSource("a", clock), FakeSource("b", clock)
    b.finished.set()
    b.state = "finished"
    a.deliver()
    assert sources_of(collector([a, b], clock, max_batch=4, window_cap=1.0).next_batch()) == ["a"]
    assert clock.waits == []


def test_never_waits_for_a_source_silent_for_several_periods() -> None:
    """Still 'streaming' (its watchdog has not fired yet) but no frame for > STALLED_PERIODS periods."""
    clock = FakeTime()
    a, b = FakeSource("a", clock), FakeSource("b", clock)
    batches = collector([a, b], clock, max_batch=4, window_cap=1.0)
    for _ in range(3):  # b's period is learnt: 1/30 s
        a.deliver()
        b.deliver()
        batches.next_batch()
        clock.now += 1 / 30
    clock.now += STALLED_PERIODS / 30  # b falls silent
    a.deliver()
    waits_before = len(clock.waits)
    assert sources_of(batches.next_batch()) == ["a"]
    assert len(clock.waits) == waits_before


def test_does_not_wait_for_a_frame_expected_after_the_window() -> None:
    clock = FakeTime()
    a, b = FakeSource("a", clock, period=0.1), FakeSource("b", clock, period=0.1)
    batches = collector([a, b], clock, max_batch=4, window_cap=0.02)
    for _ in range(3):
        a.deliver()
        b.deliver()
        batches.next_batch()
        clock.now += 0.1
    clock.now -= 0.095  # b's next frame is due in 95 ms, far past the 20 ms window
    a.deliver()
    waits_before = len(clock.waits)
    assert sources_of(batches.next_batch()) == ["a"]
    assert len(clock.waits) == waits_before


def test_no_frame_returns_empty_after_the_idle_wait() -> None:
    clock = FakeTime()
    batches = collector([FakeSource("a", clock)], clock, max_batch=4)
    assert batches.next_batch(idle_wait_seconds=0.1) == []
    assert clock.waits == [0.1]


def test_too_old_frames_are_dropped_counted_and_released() -> None:
    clock = FakeTime()
    old, fresh = FakeSource("old", clock), FakeSource("fresh", clock)
    released = []
    frame = Frame("old", 0, 0.0, clock.now - 0.5, IMAGE, release_image=lambda: released.append(True))
    old.slot.put(frame)
    fresh.deliver()
    metrics = StreamdMetrics(CollectorRegistry())
    batches = collector([old, fresh], clock, max_batch=4, max_age=0.2, metrics=metrics)
    old.state = "finished"  # nothing more will come from it
    assert sources_of(batches.next_batch()) == ["fresh"]
    assert released == [True]
    assert batches.dropped_too_old == 1
    assert metrics.registry.get_sample_value("streamd_frames_dropped_total",
                                             {"source": "old", "reason": "too_old"}) == 1


def test_streams_at_30fps_batch_size_and_wait_percentiles() -> None:
    """8 cameras at 30 fps with random phases, batch 8, a detector taking 5 ms per batch: batches
    hold most cameras and no batch waits past the window."""
    clock = FakeTime()
    rng = np.random.default_rng(1)
    sources = [FakeSource(f"cam{i}", clock) for i in range(8)]
    for source in sources:
        source.stream(clock, clock.now + rng.uniform(0, 1 / 30), clock.now + 10)
    metrics = StreamdMetrics(CollectorRegistry())
    batches = collector(sources, clock, max_batch=8, window_cap=0.05, metrics=metrics)
    sizes, waits, frames = [], [], Counter()
    while clock.now < 109.5:
        started = clock.now
        batch = batches.next_batch()
        if batch:
            sizes.append(len(batch))
            waits.append(clock.now - started)
            frames.update(sources_of(batch))
            assert len(set(sources_of(batch))) == len(batch)  # one frame per source
            clock.advance(0.005)  # the detector
            batches.observe_batch_seconds(0.005)
    assert all(wait <= 0.05 + 1e-9 for wait in waits)
    assert np.percentile(waits, 99) <= 1 / 30 - 0.005 + 1e-6  # the derived window, below the cap
    assert np.median(sizes) >= 4
    assert min(frames.values()) >= 0.9 * max(frames.values())  # fair across cameras
    assert sum(frames.values()) >= 0.9 * 8 * 30 * 9.5  # nearly every frame of every camera


def test_rejects_bad_arguments() -> None:
    clock = FakeTime()
    with pytest.raises(ValueError, match="max_batch"):
        collector([], clock, max_batch=0)
    with pytest.raises(ValueError, match="window_cap"):
        collector([], clock, max_batch=2, window_cap=-1)


class ReferenceCollector(BatchCollector):
    """The collector with its earlier scan (a modulo and a length test per source, the slot looked up
    each time): what the current scan must take, frame for frame."""

    def _scan(self, batch: list[Frame], taken: set[int]) -> None:
        count = len(self._sources)
        start = self._cursor
        for offset in range(count):
            if len(batch) >= self.max_batch:
                return
            index = (start + offset) % count
            slot = self._sources[index].slot
            if index in taken or not slot.peek_ready():
                continue
            if not self._take_from(index, slot, batch):
                continue
            taken.add(index)
            self._cursor = (index + 1) % count


@pytest.mark.parametrize("max_batch", [1, 3, 8, 12])
def test_the_scan_takes_what_the_reference_scan_takes(max_batch: int) -> None:
    # Twelve sources at 25-30 fps with jittered arrivals, one that stalls and one that ends, frames too old
    # to batch, a detector of varying speed: the same frames in the same batches, the same drops.
    taken = []
    for collector_class in (ReferenceCollector, BatchCollector):
        clock = FakeTime()
        rng = np.random.default_rng(max_batch)
        sources = [FakeSource(f"s{i}", clock, period=1 / rng.uniform(25, 30)) for i in range(12)]
        for source in sources:
            when = 100.0 + rng.uniform(0, source.period)
            while when < 104.0:
                if not (source.source_id == "s3" and 101.0 < when < 102.0):  # a stall
                    clock.at(when + rng.normal(0, 0.002), source.deliver)
                when += source.period
        clock.at(103.0, lambda ended=sources[5]: setattr(ended, "state", "finished"))
        batches = collector_class(sources, clock, max_batch, 0.02, 0.012, clock=clock)  # type: ignore[arg-type]
        run = []
        while clock.now < 104.0:
            batch = batches.next_batch()
            run.append([(frame.source_id, frame.index) for frame in batch])
            busy = float(rng.uniform(0.002, 0.02))
            clock.advance(busy)
            batches.observe_batch_seconds(busy)
        taken.append((run, batches.dropped_too_old))
    assert taken[0] == taken[1]
    assert sum(len(batch) for batch in taken[0][0]) > 300 and taken[0][1] > 0
