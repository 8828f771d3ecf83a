"""Zones on trajectories fed directly: which zones each detection is in, enter and exit with inertia,
dwell in source time, tracks that end inside."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from streamd.analytics.geometry import ZoneShape, compile_shapes
from tests.analytics.trajectories import FPS, Feed, path, together, walk, zone

SQUARE = ((200, 150), (440, 150), (440, 350), (200, 350))  # the default zone: x 200-440, y 150-350
# An L: non-convex, so it takes the crossing-number test.
ELL = ((100, 100), (300, 100), (300, 200), (200, 200), (200, 400), (100, 400))


def test_each_detection_says_which_zones_it_is_in() -> None:
    zones = [zone("a"), zone("b", ((0, 0), (320, 0), (320, 480), (0, 480)))]
    feed = Feed(zones=zones)
    feed.step([(1, 300, 300), (2, 100, 300), (3, 500, 300), (-1, 210, 200)])
    assert [json.loads(z) for z in feed.zones_json[-1]] == [["a", "b"], ["b"], [], ["a", "b"]]
    assert feed.analytics.occupancy == [2, 3]


def test_a_source_without_zones_has_no_zones_field() -> None:
    from tests.analytics.trajectories import line  # noqa: PLC0415

    feed = Feed(lines=[line()])
    feed.step([(1, 300, 300)])
    assert feed.zones_json == [None]


def test_enter_and_exit_after_min_frames() -> None:
    feed = Feed(zones=[zone(min_frames=3)]).run(walk(7, path((105, 250), (545, 250), 45)))
    (enter_frame, enter), = feed.of("zone_enter")
    (exit_frame, leave), = feed.of("zone_exit")
    # x = 105 + 10 i: the anchor is inside from i = 10 (x 205) to 33 (x 435), outside from 34 (x 445).
    assert (enter_frame, exit_frame) == (10 + 2, 34 + 2)  # min_frames 3: the third frame in a row decides
    assert (enter.name, enter.track_id, enter.class_id) == ("area", 7, 0)
    assert leave.seconds == pytest.approx((34 - 10) / FPS)  # from the first frame in to the first frame out


def test_a_box_flickering_over_the_edge_neither_enters_nor_leaves() -> None:
    flicker = [(195 + 10 * (i % 2), 250) for i in range(40)]  # in and out every other frame
    feed = Feed(zones=[zone(min_frames=2)]).run(walk(1, flicker))
    assert feed.of("zone_enter") == [] and feed.of("zone_exit") == []


def test_min_frames_1_enters_at_once() -> None:
    feed = Feed(zones=[zone(min_frames=1)]).run(walk(1, [(100, 250), (300, 250)]))
    assert [frame for frame, _ in feed.of("zone_enter")] == [1]


@pytest.mark.parametrize("speed", [3.0, 7.0, 13.0])
def test_dwell_within_one_frame_interval_of_the_truth(speed: float) -> None:
    """The truth: the anchor is inside while 200 < x < 440, so it dwells 240 / speed frames."""
    frames = int(700 / speed)
    feed = Feed(zones=[zone(min_frames=2)]).run(walk(1, [(20 + speed * i, 250) for i in range(frames)]))
    (_, leave), = feed.of("zone_exit")
    truth = 240 / speed / FPS
    assert abs(leave.seconds - truth) <= 1 / FPS


def test_a_dwell_event_once_per_visit_in_source_time() -> None:
    still = [(300, 250)] * 60
    feed = Feed(zones=[zone(min_frames=2, dwell_seconds=2.0)]).run(walk(1, still))
    (frame, dwell), = feed.of("zone_dwell")
    assert frame == 20 and dwell.seconds == pytest.approx(2.0)  # entered at frame 0 (its first frame inside)
    feed.run(walk(1, [(600, 250)] * 3 + still))  # leaves and comes back: a new visit
    assert len(feed.of("zone_dwell")) == 2


def test_dwell_follows_source_time_not_frames() -> None:
    still = [(300, 250)] * 40
    feed = Feed(zones=[zone(min_frames=1, dwell_seconds=2.0)], fps=5.0).run(walk(1, still))
    (frame, _), = feed.of("zone_dwell")
    assert frame == 10


def test_a_track_that_ends_inside_leaves_as_of_its_last_frame() -> None:
    feed = Feed(zones=[zone(min_frames=1)], forget_after_frames=5).run(walk(1, [(300, 250)] * 10))
    feed.idle(20)
    (frame, leave), = feed.of("zone_exit")
    assert leave.seconds == pytest.approx(9 / FPS)  # seen inside from frame 0 to 9
    assert 9 + 5 < frame <= 9 + 5 + 8  # noticed within the check period after forget_after_frames
    assert len(feed.analytics.table) == 0


def test_a_track_briefly_unseen_stays_in() -> None:
    frames = walk(1, [(300, 250)] * 10) + [[]] * 6 + walk(1, [(300, 250)] * 10)
    feed = Feed(zones=[zone(min_frames=1)]).run(frames)
    assert len(feed.of("zone_enter")) == 1 and feed.of("zone_exit") == []


def test_the_class_filter_of_a_zone() -> None:
    person = walk(1, [(300, 250)] * 5, class_id=0)
    dog = walk(2, [(320, 250)] * 5, class_id=2)
    feed = Feed(zones=[zone(classes=("dog",), min_frames=1)]).run(together(person, dog))
    assert [event.track_id for _, event in feed.of("zone_enter")] == [2]
    assert [json.loads(z) for z in feed.zones_json[-1]] == [[], ["area"]]
    assert feed.analytics.occupancy == [1]


def test_fractions_scale_with_the_frame() -> None:
    feed = Feed(zones=[zone("half", ((0, 0), (0.5, 0), (0.5, 1), (0, 1)), units="fractions")])
    feed.step([(1, 300, 250), (2, 340, 250)])
    assert [json.loads(z) for z in feed.zones_json[-1]] == [["half"], []]


def test_a_non_convex_zone() -> None:
    feed = Feed(zones=[zone("ell", ELL, min_frames=1)])
    feed.step([(1, 150, 300), (2, 250, 300), (3, 250, 150), (4, 250, 250)])
    assert [json.loads(z) for z in feed.zones_json[-1]] == [["ell"], [], ["ell"], []]


@pytest.mark.parametrize("polygon", [SQUARE, ELL, ((320, 40), (600, 240), (320, 440), (380, 240)),
                                     ((50, 50), (600, 80), (300, 450))])
@pytest.mark.parametrize("anchor", ["bottom_centre", "centre", "top_left"])
def test_point_in_polygon_agrees_with_opencv(polygon: tuple, anchor: str) -> None:
    """Convex and non-convex zones against cv2.pointPolygonTest, at random boxes away from the edges."""
    rng = np.random.default_rng(5)
    corners = rng.uniform(0, 640, (400, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 60, (400, 2))], axis=1).astype(np.float32)
    shape = np.array(polygon, np.float64)
    compiled = compile_shapes([ZoneShape(shape, anchor)], [])
    codes, _ = compiled.evaluate(boxes)
    from streamd.analytics.geometry import anchor_points  # noqa: PLC0415

    points = anchor_points(boxes, anchor)
    contour = shape.astype(np.float32).reshape(-1, 1, 2)
    distance = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])
    away = np.abs(distance) > 1e-3
    assert away.sum() > 350
    assert ((codes[away] & 1) == 1).tolist() == (distance[away] > 0).tolist()


def test_occupancy_counts_every_detection_in_the_zone() -> None:
    feed = Feed(zones=[zone()])
    feed.step([(1, 300, 250), (-1, 310, 250), (2, 600, 250)])
    assert feed.analytics.occupancy == [2]
    feed.step([])
    assert feed.analytics.occupancy == [0]


def test_the_zone_state_of_many_tracks_at_once() -> None:
    """30 objects walking through together: each enters and leaves once."""
    walks = [walk(t, path((150, 160 + 6 * t), (490, 160 + 6 * t), 35)) for t in range(1, 31)]
    feed = Feed(zones=[zone(min_frames=2)]).run(together(*walks))
    assert sorted(e.track_id for _, e in feed.of("zone_enter")) == list(range(1, 31))
    assert sorted(e.track_id for _, e in feed.of("zone_exit")) == list(range(1, 31))
    assert all(math.isclose(e.seconds, feed.of("zone_exit")[0][1].seconds) for _, e in feed.of("zone_exit"))
