"""Occupancy alarms: they start and end with the hold time, in source time."""

from __future__ import annotations

import pytest

from streamd.analytics.occupancy import OccupancyAlarm
from tests.analytics.trajectories import FPS, Feed, zone


def crowd(count: int) -> list[tuple[int, float, float]]:
    return [(t, 210 + 7 * t, 250) for t in range(1, count + 1)]


@pytest.mark.parametrize("hold_seconds", [0.0, 0.5, 1.3, 3.0])
def test_the_alarm_starts_and_ends_at_the_hold_time(hold_seconds: float) -> None:
    feed = Feed(zones=[zone(max_objects=3, hold_seconds=hold_seconds)])
    feed.run([crowd(2)] * 10 + [crowd(5)] * 60 + [crowd(3)] * 60)
    (start_frame, start), = feed.of("occupancy_start")
    (end_frame, end) = feed.of("occupancy_end")[0]
    hold_frames = hold_seconds * FPS
    assert abs(start_frame - (10 + hold_frames)) <= 1  # more than 3 from frame 10 on
    assert abs(end_frame - (70 + hold_frames)) <= 1  # at most 3 from frame 70 on
    assert (start.name, start.count, start.max_objects) == ("area", 5, 3)
    assert end.count == 3 and end.seconds == pytest.approx((end_frame - start_frame) / FPS)


def test_a_dip_shorter_than_the_hold_time_does_not_end_the_alarm() -> None:
    feed = Feed(zones=[zone(max_objects=3, hold_seconds=1.0)])
    feed.run([crowd(5)] * 30 + [crowd(2)] * 5 + [crowd(5)] * 30)
    assert len(feed.of("occupancy_start")) == 1 and feed.of("occupancy_end") == []


def test_untracked_detections_count_too() -> None:
    feed = Feed(zones=[zone(max_objects=1)])
    feed.step([(-1, 300, 250), (-1, 320, 250)])
    assert [event.type for _, event in feed.events] == ["occupancy_start"]


def test_no_alarm_without_max_objects() -> None:
    feed = Feed(zones=[zone()]).run([crowd(20)] * 20)
    assert feed.of("occupancy_start") == []
    assert feed.analytics.occupancy == [20]


def test_the_alarm_alone() -> None:
    alarm = OccupancyAlarm(max_objects=2, hold_seconds=1.0)
    assert [alarm.update(count, t / 10) for t, count in enumerate([3] * 12)].count("start") == 1
    assert alarm.active
    assert alarm.update(1, 1.2) is None and alarm.update(1, 2.2) == "end"
