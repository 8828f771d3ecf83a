"""The daemon's analytics step over sources: its metrics, reloads (zones and lines changed, sources
restarted) and the preview's overlay."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamd.analytics.sources import Analytics
from streamd.config.schema import SourceConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.yolox.detections import Detections
from tests.analytics.trajectories import CLASSES, FPS, HEIGHT, WIDTH, box, line, path, zone


@dataclass(frozen=True)
class _Frame:
    source_id: str
    index: int
    capture_time: float
    width: int = WIDTH
    height: int = HEIGHT


@dataclass(frozen=True)
class _Result:
    frame: _Frame
    detections: Detections


class Runner:
    def __init__(self, sources: list[SourceConfig], metrics: StreamdMetrics | None = None) -> None:
        self.analytics = Analytics(sources, 31, metrics)
        self.index = 0
        self.events: list = []

    def frame(self, source_id: str, objects: list[tuple]) -> object:
        boxes = np.array([box(x, y) for _, x, y, *_ in objects], np.float32).reshape(-1, 4)
        detections = Detections(boxes, np.full(len(objects), 0.9, np.float32),
                                np.array([o[3] if len(o) > 3 else 0 for o in objects], np.int32),
                                np.array([o[0] for o in objects], np.int64), np.zeros(len(objects), np.int64))
        outcome = self.analytics.apply(_Result(_Frame(source_id, self.index, 1000.0 + self.index / FPS), detections),
                                       CLASSES)
        self.index += 1
        if outcome is not None:
            self.events += outcome.events
        return outcome

    def walk(self, source_id: str, track_id: int, points: list[tuple[float, float]], class_id: int = 0) -> None:
        for x, y in points:
            self.frame(source_id, [(track_id, x, y, class_id)])


def source(source_id: str = "cam", zones: tuple = (), lines: tuple = ()) -> SourceConfig:
    return SourceConfig(source_id, "synthetic", zones=zones, lines=lines)


DOWN = path((300, 200), (300, 280), 9)
UP = DOWN[::-1]


def sample(metrics: StreamdMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_source_without_zones_or_lines_has_no_analytics() -> None:
    runner = Runner([source("plain"), source("counted", lines=(line(),))])
    assert runner.frame("plain", [(1, 300, 200)]) is None
    assert runner.frame("counted", [(1, 300, 200)]) is not None


def test_the_metrics() -> None:
    metrics = StreamdMetrics(CollectorRegistry())
    runner = Runner([source(zones=(zone(min_frames=1),), lines=(line(),))], metrics)
    assert sample(metrics, "streamd_zone_occupancy", source="cam", zone="area") == 0  # there from the start
    runner.walk("cam", 1, DOWN)
    runner.walk("cam", 2, DOWN, class_id=1)
    runner.walk("cam", 2, UP, class_id=1)
    assert sample(metrics, "streamd_line_crossings_total", source="cam", line="door", direction="out",
                  **{"class": "person"}) == 1
    assert sample(metrics, "streamd_line_crossings_total", source="cam", line="door", direction="out",
                  **{"class": "car"}) == 1
    assert sample(metrics, "streamd_line_crossings_total", source="cam", line="door", direction="in",
                  **{"class": "car"}) == 1
    assert sample(metrics, "streamd_zone_entries_total", source="cam", zone="area", **{"class": "person"}) == 1
    assert sample(metrics, "streamd_zone_entries_total", source="cam", zone="area", **{"class": "car"}) == 1
    runner.frame("cam", [(3, 300, 250), (4, 320, 250), (-1, 330, 250)])
    assert sample(metrics, "streamd_zone_occupancy", source="cam", zone="area") == 3
    runner.frame("cam", [])
    assert sample(metrics, "streamd_zone_occupancy", source="cam", zone="area") == 0


def test_a_reload_that_keeps_a_line_keeps_its_counts_and_tracks() -> None:
    metrics = StreamdMetrics(CollectorRegistry())
    door = line()
    runner = Runner([source(lines=(door,))], metrics)
    runner.walk("cam", 1, DOWN)
    runner.walk("cam", 2, DOWN[:5])  # on the inside, not yet across
    runner.analytics.configure([source(lines=(door, line("gate", start=(320, 50), end=(320, 430))))])
    runner.walk("cam", 2, DOWN[5:])  # crosses after the reload: its side was kept
    assert runner.analytics.counts("cam") == {"door": {"in": 0, "out": 2}, "gate": {"in": 0, "out": 0}}
    assert sample(metrics, "streamd_line_crossings_total", source="cam", line="door", direction="out",
                  **{"class": "person"}) == 2


def test_a_changed_line_counts_afresh() -> None:
    metrics = StreamdMetrics(CollectorRegistry())
    runner = Runner([source(lines=(line(),))], metrics)
    runner.walk("cam", 1, DOWN)
    runner.analytics.configure([source(lines=(line(margin_px=2.0),))])
    runner.frame("cam", [])
    assert runner.analytics.counts("cam") == {"door": {"in": 0, "out": 0}}
    assert sample(metrics, "streamd_line_crossings_total", source="cam", line="door", direction="out",
                  **{"class": "person"}) is None  # its series went with it
    runner.walk("cam", 1, UP)  # its side of the new line is learnt at its first frame after the reload
    assert runner.analytics.counts("cam") == {"door": {"in": 1, "out": 0}}


def test_a_reload_that_keeps_a_zone_keeps_who_is_in_it() -> None:
    area = zone(min_frames=1)
    runner = Runner([source(zones=(area,))])
    runner.walk("cam", 1, [(300, 250)] * 5)
    runner.analytics.configure([source(zones=(zone("other", min_frames=1), area))])
    runner.walk("cam", 1, [(300, 250)] * 5 + [(600, 250)])
    kinds = [(event.type, event.name) for event in runner.events]
    assert kinds[:2] == [("zone_enter", "area"), ("zone_enter", "other")]  # not "area" again
    assert sorted(kinds[2:]) == [("zone_exit", "area"), ("zone_exit", "other")]
    seconds = {event.name: event.seconds for event in runner.events[2:]}
    assert seconds["area"] == pytest.approx(10 / FPS)  # in since before the reload
    assert seconds["other"] == pytest.approx(5 / FPS)


def test_a_restarted_source_forgets_its_tracks_but_not_its_counts() -> None:
    runner = Runner([source(lines=(line(),))])
    runner.walk("cam", 1, DOWN)
    runner.walk("cam", 2, DOWN[:5])
    runner.analytics.retain([source(lines=(line(),))], restarted={"cam"})
    runner.walk("cam", 2, DOWN[5:])  # id 2 of the new tracker: a new object with no side yet
    assert runner.analytics.counts("cam") == {"door": {"in": 0, "out": 1}}


def test_retain_adds_and_removes_sources() -> None:
    metrics = StreamdMetrics(CollectorRegistry())
    runner = Runner([source("a", zones=(zone(),))], metrics)
    runner.analytics.retain([source("b", zones=(zone(),))])
    assert runner.frame("a", [(1, 300, 250)]) is None
    assert runner.frame("b", [(1, 300, 250)]) is not None
    assert sample(metrics, "streamd_zone_occupancy", source="a", zone="area") is None


def test_zones_removed_by_a_reload() -> None:
    runner = Runner([source(zones=(zone(),))])
    runner.analytics.configure([replace(source(), zones=())])
    assert runner.frame("cam", [(1, 300, 250)]) is None


def test_the_events_message_sequence_counts_per_source() -> None:
    runner = Runner([source("a", lines=(line(),)), source("b", lines=(line(),))])
    assert [runner.analytics.next_sequence("a") for _ in range(3)] == [1, 2, 3]
    assert runner.analytics.next_sequence("b") == 1


def test_the_overlay() -> None:
    runner = Runner([source(zones=(zone(max_objects=1),), lines=(line(),))])
    assert runner.analytics.overlay("cam") is None  # no frame yet: no size to place fractions in
    runner.walk("cam", 1, DOWN)
    runner.frame("cam", [(5, 300, 250), (6, 310, 250)])
    overlay = runner.analytics.overlay("cam")
    assert (overlay.width, overlay.height) == (WIDTH, HEIGHT)
    (area,) = overlay.zones
    assert area.name == "area" and area.count == 2 and area.alarm
    (door,) = overlay.lines
    assert (door.start, door.end, door.count_in, door.count_out) == ((100.0, 240.0), (540.0, 240.0), 0, 1)
    assert runner.analytics.overlay("elsewhere") is None


def test_a_source_read_flat_out_counts_time_in_frames_at_its_rate() -> None:
    analytics = Analytics([source(zones=(zone(min_frames=1, dwell_seconds=1.0),))], 31, index_clocked={"cam"},
                          fps_of=lambda _: 5.0)
    events = []
    for index in range(12):
        detections = Detections(np.array([box(300, 250)], np.float32), np.ones(1, np.float32),
                                np.zeros(1, np.int32), np.array([1]), np.zeros(1, np.int64))
        # Capture times as fast as they come: they must not count.
        outcome = analytics.apply(_Result(_Frame("cam", index, 1000.0 + index * 0.001), detections), CLASSES)
        events += [(index, event.type) for event in outcome.events]
    assert events == [(0, "zone_enter"), (5, "zone_dwell")]
