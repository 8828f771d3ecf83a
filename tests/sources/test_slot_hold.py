"""A held latest-frame slot: a put waits for the frame in the slot to be taken (a reload's swap, when
nobody takes frames for a moment), for a bounded time, then replaces it as usual."""

from __future__ import annotations

import threading
import time

import numpy as np

from streamd.frame import Frame
from streamd.sources.latest_frame import LatestFrameSlot


def frame(index: int) -> Frame:
    return Frame("s", index, time.time(), time.monotonic(), np.zeros((2, 2, 3), np.uint8))


def put_in_thread(slot: LatestFrameSlot, item: Frame) -> threading.Thread:
    thread = threading.Thread(target=slot.put, args=(item,), daemon=True)
    thread.start()
    return thread


def test_a_held_slot_keeps_both_frames_until_the_first_is_taken() -> None:
    slot = LatestFrameSlot()
    slot.hold(5.0)
    slot.put(frame(0))
    second = put_in_thread(slot, frame(1))
    time.sleep(0.3)
    assert second.is_alive() and slot.dropped == 0  # waiting, not replacing
    assert slot.take(0).index == 0
    second.join(2)
    assert not second.is_alive() and slot.take(0).index == 1 and slot.dropped == 0


def test_a_hold_lapses_then_frames_are_superseded_as_usual() -> None:
    slot = LatestFrameSlot()
    slot.hold(0.2)
    slot.put(frame(0))
    started = time.monotonic()
    slot.put(frame(1))  # waits out the hold, then replaces
    assert 0.15 <= time.monotonic() - started < 1.0
    assert slot.take(0).index == 1 and slot.dropped == 1
    slot.put(frame(2))
    slot.put(frame(3))  # no hold any more: at once
    assert slot.take(0).index == 3 and slot.dropped == 2


def test_release_ends_the_hold_after_its_grace() -> None:
    slot = LatestFrameSlot()
    slot.hold(10.0)
    slot.put(frame(0))
    waiting = put_in_thread(slot, frame(1))
    time.sleep(0.1)
    slot.release(0.2)
    waiting.join(2)
    assert not waiting.is_alive() and slot.take(0).index == 1 and slot.dropped == 1
    slot.hold(10.0)
    slot.put(frame(2))
    waiting = put_in_thread(slot, frame(3))
    time.sleep(0.1)
    slot.release()  # at once
    waiting.join(2)
    assert not waiting.is_alive() and slot.take(0).index == 3 and slot.dropped == 2


def test_closing_a_held_slot_lets_the_producer_go() -> None:
    slot = LatestFrameSlot()
    slot.hold(10.0)
    slot.put(frame(0))
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(slot.put(frame(1))), daemon=True)
    thread.start()
    time.sleep(0.1)
    slot.close()
    thread.join(2)
    assert result == [False]
