"""Line crossings on trajectories fed directly (no model), with exact expected counts.

The line of most tests runs from (100, 240) to (540, 240): left of that direction on the picture is up,
the inside by default, so moving down counts ``out`` and moving up counts ``in``."""

from __future__ import annotations

import math

import pytest

from tests.analytics.trajectories import HEIGHT, WIDTH, Feed, line, path, together, walk


def test_horizontal_line_down_is_out_and_up_is_in() -> None:
    feed = Feed(lines=[line()]).run(walk(1, path((300, 200), (300, 280), 17)))
    assert feed.crossings() == {"in": 0, "out": 1}
    feed.run(walk(1, path((300, 280), (300, 200), 17)))
    assert feed.crossings() == {"in": 1, "out": 1}
    (frame, event), _ = feed.of("line_cross")
    assert (event.name, event.track_id, event.class_id, event.direction) == ("door", 1, 0, "out")
    assert frame == 10  # y = 250: the first frame more than the 5 px margin past the line (245 is not)


def test_in_side_right_swaps_the_directions() -> None:
    feed = Feed(lines=[line(in_side="right")]).run(walk(1, path((300, 200), (300, 280), 17)))
    assert feed.crossings() == {"in": 1, "out": 0}


@pytest.mark.parametrize(("start", "end", "walk_from", "walk_to", "expected"), [
    ((320, 50), (320, 430), (280, 240), (360, 240), "in"),  # vertical
    ((320, 50), (320, 430), (360, 240), (280, 240), "out"),
    ((100, 100), (500, 400), (350, 200), (250, 300), "out"),  # diagonal
    ((100, 100), (500, 400), (250, 300), (350, 200), "in"),
])
def test_vertical_and_diagonal_lines(start: tuple, end: tuple, walk_from: tuple, walk_to: tuple,
                                     expected: str) -> None:
    # Pointing down the picture, the left of the line is +x; for the diagonal, up and to the right.
    feed = Feed(lines=[line(start=start, end=end)]).run(walk(1, path(walk_from, walk_to, 21)))
    assert feed.crossings() == {"in": int(expected == "in"), "out": int(expected == "out")}


def test_a_line_8_px_from_the_bottom_edge_counts() -> None:
    """Boxes are clipped to the frame: an anchor can get no further than the edge, 8 px past the line."""
    y = HEIGHT - 8
    feed = Feed(lines=[line(start=(0, y), end=(WIDTH, y))])
    feed.run(walk(1, path((300, y - 60), (300, HEIGHT + 30), 19)))  # leaves through the bottom edge
    feed.run(walk(2, path((400, HEIGHT + 30), (400, y - 60), 19)))  # comes in through it
    assert feed.crossings() == {"in": 1, "out": 1}


def test_a_line_on_the_left_edge_counts() -> None:
    feed = Feed(lines=[line(start=(8, 0), end=(8, HEIGHT), anchor="centre")])
    feed.run(walk(1, path((100, 300), (-40, 300), 15)))
    assert feed.crossings() == {"in": 0, "out": 1}  # left of "down" is +x: inside is the frame


@pytest.mark.parametrize("k", [1, 7, 30])
def test_k_objects_crossing_in_the_same_frame_all_count(k: int) -> None:
    walks = [walk(track_id, path((110 + 14 * track_id, 200), (110 + 14 * track_id, 280), 9))
             for track_id in range(1, k + 1)]
    feed = Feed(lines=[line()]).run(together(*walks))
    assert feed.crossings() == {"in": 0, "out": k}
    assert len({frame for frame, _ in feed.of("line_cross")}) == 1


def test_3_px_jitter_on_the_line_counts_once() -> None:
    jitter = [(300 + i % 5, 240 + 3 * math.sin(1.3 * i)) for i in range(60)]
    feed = Feed(lines=[line()]).run(walk(1, path((300, 200), (300, 240), 9) + jitter + path((300, 240), (300, 280), 9)))
    assert feed.crossings() == {"in": 0, "out": 1}


def test_3_px_jitter_without_going_through_counts_nothing() -> None:
    jitter = [(300, 240 + 3 * math.sin(1.3 * i)) for i in range(60)]
    feed = Feed(lines=[line()]).run(walk(1, path((300, 200), (300, 240), 9) + jitter + path((300, 240), (300, 200), 9)))
    assert feed.crossings() == {"in": 0, "out": 0}


def test_jitter_of_a_box_crossing_slowly_counts_once() -> None:
    """Moving 0.5 px a frame with ±3 px noise, the anchor goes back and forth over the line many times."""
    points = [(300.0, 220 + 0.5 * i + 3 * math.sin(2.1 * i)) for i in range(81)]
    feed = Feed(lines=[line()]).run(walk(1, points))
    assert feed.crossings() == {"in": 0, "out": 1}


@pytest.mark.parametrize(("x_from", "x_to"), [(80, 80), (40, 60), (560, 600), (620, 560)])
def test_crossings_outside_the_end_points_count_nothing(x_from: float, x_to: float) -> None:
    feed = Feed(lines=[line()]).run(walk(1, path((x_from, 200), (x_to, 280), 17)))
    assert feed.crossings() == {"in": 0, "out": 0}


def test_walking_round_the_end_of_the_line_counts_nothing() -> None:
    around = (path((300, 220), (580, 220), 30) + path((580, 220), (580, 260), 10)
              + path((580, 260), (300, 260), 30))
    feed = Feed(lines=[line()]).run(walk(1, around))
    assert feed.crossings() == {"in": 0, "out": 0}


def test_a_crossing_just_inside_the_end_point_counts() -> None:
    feed = Feed(lines=[line()]).run(walk(1, path((530, 200), (536, 280), 17)))
    assert feed.crossings() == {"in": 0, "out": 1}


@pytest.mark.parametrize("withheld", [1, 4, 12])
def test_an_id_withheld_mid_crossing_counts_once(withheld: int) -> None:
    points = path((300, 200), (300, 280), 21)
    frames = walk(1, points)
    middle = len(frames) // 2
    for i in range(middle - withheld // 2, middle - withheld // 2 + withheld):
        frames[i] = [(-1, *frames[i][0][1:])]  # the box is there, its id withheld
    feed = Feed(lines=[line()]).run(frames)
    assert feed.crossings() == {"in": 0, "out": 1}


def test_an_id_lost_mid_crossing_and_recovered_counts_once() -> None:
    frames = walk(1, path((300, 200), (300, 280), 21))
    for i in range(8, 14):
        frames[i] = []  # not detected at all
    feed = Feed(lines=[line()]).run(frames)
    assert feed.crossings() == {"in": 0, "out": 1}


def test_a_new_id_after_the_line_counts_nothing() -> None:
    """An id that changes mid-crossing: the new id starts with no side, so no crossing of its own."""
    points = path((300, 200), (300, 280), 21)
    feed = Feed(lines=[line()]).run(walk(1, points[:10]) + walk(2, points[10:]))
    assert feed.crossings() == {"in": 0, "out": 0}


def test_u_turn_before_the_line_counts_nothing() -> None:
    feed = Feed(lines=[line()]).run(walk(1, path((300, 200), (300, 243), 10) + path((300, 243), (300, 200), 10)))
    assert feed.crossings() == {"in": 0, "out": 0}


def test_u_turn_after_crossing_counts_both_ways() -> None:
    feed = Feed(lines=[line()]).run(walk(1, path((300, 200), (300, 270), 15) + path((300, 270), (300, 200), 15)))
    assert feed.crossings() == {"in": 1, "out": 1}


def test_back_and_forth_counts_each_change_of_direction() -> None:
    there = path((300, 200), (300, 280), 9)
    feed = Feed(lines=[line()]).run(walk(1, there + there[::-1] + there + there[::-1]))
    assert feed.crossings() == {"in": 2, "out": 2}


def test_the_class_filter() -> None:
    car = walk(1, path((200, 200), (200, 280), 9), class_id=1)
    person = walk(2, path((300, 200), (300, 280), 9), class_id=0)
    feed = Feed(lines=[line(classes=("car",))]).run(together(car, person))
    assert feed.crossings() == {"in": 0, "out": 1}
    assert [event.track_id for _, event in feed.of("line_cross")] == [1]


def test_untracked_boxes_never_cross() -> None:
    feed = Feed(lines=[line()]).run([[(-1, 300, y)] for y in range(200, 290, 5)])
    assert feed.crossings() == {"in": 0, "out": 0}


def test_two_lines_count_apart() -> None:
    lines = [line("a"), line("b", start=(320, 50), end=(320, 430))]
    feed = Feed(lines=lines).run(walk(1, path((200, 200), (440, 280), 25)))
    assert feed.crossings("a") == {"in": 0, "out": 1}
    assert feed.crossings("b") == {"in": 1, "out": 0}
    assert feed.analytics.counts == [[0, 1], [1, 0]]


@pytest.mark.parametrize("anchor", ["centre", "top_left", "top_right", "bottom_left", "bottom_right",
                                    "bottom_centre"])
def test_each_anchor_crosses_when_it_passes_the_line(anchor: str) -> None:
    # The anchor is 40 px above the bottom for the top ones, 20 for the centre; the box's corners 10 px aside.
    feed = Feed(lines=[line(anchor=anchor)])
    for y in range(200, 300, 4):
        events = feed.step([(1, 300, y)])
        if events:
            offset = {"centre": 20, "top_left": 40, "top_right": 40}.get(anchor, 0)
            assert y - offset > 240 + 5 >= y - offset - 4
    assert feed.crossings() == {"in": 0, "out": 1}


def test_the_margin_sets_how_far_past_the_line_a_side_changes() -> None:
    feed = Feed(lines=[line(margin_px=20.0)]).run(walk(1, path((300, 200), (300, 255), 12)))
    assert feed.crossings() == {"in": 0, "out": 0}  # 15 px past: not yet
    feed.run(walk(1, [(300, 265)]))
    assert feed.crossings() == {"in": 0, "out": 1}
