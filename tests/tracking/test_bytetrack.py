"""ByteTracker behaviour on hand-made detections: ids that hold, time that passes, what starts and ends."""

from __future__ import annotations

import dataclasses

import numpy as np

from streamd.config.schema import TrackingConfig
from streamd.tracking.appearance import colour_signatures
from streamd.tracking.bytetrack import DUPLICATE_CONFIRM_MATCHES, NEW_ID_HOLD_FRAMES, NO_TRACK, ByteTracker


def box(cx: float, cy: float, size: float = 40.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def step(tracker: ByteTracker, index: int, boxes: list[list[float]], scores: list[float] | None = None,
         classes: list[int] | None = None, period_seconds: float = 0.1):
    scores = scores if scores is not None else [0.9] * len(boxes)
    classes = classes if classes is not None else [0] * len(boxes)
    return tracker.update(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                          np.array(classes, np.int32), index, 1000.0 + index * period_seconds)


def test_two_objects_crossing_keep_their_ids_and_show_none_while_they_overlap() -> None:
    tracker = ByteTracker(TrackingConfig())
    first = step(tracker, 0, [box(100, 100), box(300, 100)])
    assert first.track_ids.tolist() == [1, 2] and first.started == 2
    withheld = []
    for index in range(1, 41):  # they pass through each other at frame 10
        update = step(tracker, index, [box(100 + 10 * index, 100), box(300 - 10 * index, 100)])
        apart = abs(200 - 20 * index) >= 40  # 40 px boxes
        if apart:
            assert update.track_ids.tolist() == [1, 2], index
        else:  # each box is claimed by both tracks: published without an id rather than maybe the other's
            assert update.track_ids.tolist() in ([1, 2], [NO_TRACK, NO_TRACK]), index
            withheld += [index] if update.track_ids[0] == NO_TRACK else []
        assert update.withheld == (2 if update.track_ids[0] == NO_TRACK else 0)
    assert 9 in withheld and 10 in withheld and 11 in withheld
    assert update.ages_frames.tolist() == [40, 40] and update.started == 0


def test_objects_that_meet_and_turn_back_get_their_ids_back_by_colour_when_their_boxes_part() -> None:
    # Two objects of mixed colours (sharing 0.6 of them) meet and turn back: their predictions go on
    # through each other, so by motion the tracks come out on each other's objects. While the boxes are
    # claimed by both tracks no id is published; when they part, each track's colours fit the other box
    # better and the identities are exchanged back.
    first, second = np.zeros(16), np.zeros(16)
    first[[0, 5]], second[[0, 5]] = (0.7, 0.3), (0.3, 0.7)
    for colours, expected in ((True, [1, 2]), (False, [2, 1])):
        tracker, published = ByteTracker(TrackingConfig()), []
        for index in range(25):
            left, right = (100 + 10 * index, 300 - 10 * index) if index <= 10 else (200 - 10 * (index - 10),
                                                                                     200 + 10 * (index - 10))
            update = tracker.update(np.array([box(left, 100), box(right, 100)], np.float32),
                                    np.array([0.9, 0.9], np.float32), np.array([0, 0], np.int32), index,
                                    1000.0 + index / 10, np.stack([first, second]) if colours else None)
            published.append(update.track_ids.tolist())
        assert [NO_TRACK, NO_TRACK] in published[8:13]  # withheld while they overlap
        assert published[:8] == [[1, 2]] * 8
        assert published[14:] == [expected] * 11, colours  # by motion alone the ids stay swapped


def test_objects_of_alike_looks_that_part_after_a_pile_up_get_their_ids_back_by_where_they_were_heading() -> None:
    # A (moving right) passes behind B (moving up): B's box alone, then one box over both, then that box
    # and a fragment of A, then B's box alone again. Both tracks followed those boxes, so when A and B
    # part the Kalman predictions put each track on the other's box; with no colours to tell them apart
    # (none here, as for NVDEC frames), where each was heading when last shown decides, and gives the ids
    # back to their objects. The boxes were published without ids meanwhile.
    def one_box_over(*boxes: list[float]) -> list[float]:
        corners = np.array(boxes)
        return [*corners[:, :2].min(axis=0), *corners[:, 2:].max(axis=0)]

    tracker, published = ByteTracker(TrackingConfig()), []
    for index in range(30):
        a, b = box(100 + 8 * index, 200), box(200, 300 - 8 * index)
        boxes = {10: [b], 11: [one_box_over(a, b)], 12: [one_box_over(a, b)], 15: [b],
                 13: [one_box_over(a, b), box(100 + 8 * index, 200, 25)],
                 14: [one_box_over(a, b), box(100 + 8 * index, 200, 25)]}.get(index, [a, b])
        published.append(step(tracker, index, boxes).track_ids.tolist())
    assert published[:10] == [[1, 2]] * 10 and published[10] == [2]
    assert all(ids == [NO_TRACK] * len(ids) for ids in published[11:17])  # until they are apart
    assert published[17:] == [[1, 2]] * 13  # by the Kalman predictions alone: [2, 1]


def test_withheld_ids_are_counted_per_source() -> None:
    from prometheus_client import CollectorRegistry

    from streamd.frame import Frame
    from streamd.inference.detector import DetectionResult, StageTimings
    from streamd.metrics.definitions import StreamdMetrics
    from streamd.tracking.sources import SourceTrackers
    from streamd.yolox.detections import Detections

    registry = CollectorRegistry()
    trackers = SourceTrackers(TrackingConfig(), ["cam"], StreamdMetrics(registry))
    image = np.zeros((8, 8, 3), np.uint8)
    published_without_id = 0
    for index in range(21):
        boxes = np.array([box(100 + 10 * index, 100), box(300 - 10 * index, 100)], np.float32)
        detections = Detections(boxes, np.array([0.9, 0.9], np.float32), np.array([0, 0], np.int32))
        frame = Frame("cam", index, 1000.0 + index / 10, 0.0, image)
        tracked = trackers.apply(DetectionResult(frame, detections, StageTimings(0.0, 0.0, 0.0))).detections
        published_without_id += int(np.count_nonzero(tracked.track_ids == NO_TRACK))
    assert published_without_id >= 6  # both boxes, at least frames 9-11
    assert registry.get_sample_value("streamd_track_ids_withheld_total", {"source": "cam"}) == published_without_id


def test_with_withholding_off_crossing_objects_keep_their_ids_on_every_frame() -> None:
    tracker = ByteTracker(TrackingConfig(withhold_contested_ids=False))
    step(tracker, 0, [box(100, 100), box(300, 100)])
    for index in range(1, 41):
        update = step(tracker, index, [box(100 + 10 * index, 100), box(300 - 10 * index, 100)])
        if index != 10:  # fully overlapping: either id is fair
            assert update.track_ids.tolist() == [1, 2], index


def test_a_track_claimed_from_its_start_by_a_lost_track_of_its_class_takes_its_id() -> None:
    # A 40 px object (id 1) is missed for 3 frames, then comes back as a small box inside where it was
    # (too small for the lost track's recovery, too little overlap for its IoU match): the new track the
    # box starts is claimed by the lost one when it confirms, so it continues id 1, age and all.
    for withhold, expected_id in ((True, 1), (False, 2)):
        tracker = ByteTracker(TrackingConfig(withhold_contested_ids=withhold))
        for index in range(5):
            assert step(tracker, index, [[80, 80, 120, 120]]).track_ids.tolist() == [1]
        for index in range(5, 8):
            step(tracker, index, [])
        assert step(tracker, 8, [[85, 85, 102.5, 102.5]]).track_ids.tolist() == [NO_TRACK]  # unconfirmed
        back = step(tracker, 9, [[90, 90, 107, 107]])
        assert back.track_ids.tolist() == [expected_id], withhold
        assert back.ages_frames.tolist() == [9 if withhold else 1] and back.started == (0 if withhold else 1)


def test_a_new_track_beside_another_gets_its_id_once_confirmed_unless_a_track_of_its_class_touches_it() -> None:
    # Beside a tracked object, a box overlapping it by IoU 0.14 (too little to be a duplicate) starts a
    # track. Of another class (a person and the cup they hold) it is published with its id once confirmed,
    # on its second frame. Of the same class (maybe a fragment of the tracked object, or an object back that
    # a lost track will claim) its id is held back while the tracked object's predicted box touches it, for
    # at most NEW_ID_HOLD_FRAMES from its first box. With withholding off it is published once confirmed.
    cases = ((True, 1, 0), (True, 0, NEW_ID_HOLD_FRAMES - 1), (False, 0, 0))  # withhold, its class, frames held
    for withhold, beside_class, held in cases:
        tracker = ByteTracker(TrackingConfig(withhold_contested_ids=withhold))
        for index in range(3):
            assert step(tracker, index, [box(100, 100)]).track_ids.tolist() == [1]
        published = []
        for index in range(3, 20):
            update = step(tracker, index, [box(100, 100), box(130, 100)], scores=[0.9, 0.8],
                          classes=[0, beside_class])
            assert update.track_ids[0] == 1
            published.append(int(update.track_ids[1]))
        # Unconfirmed on its first frame, either way.
        assert published == [NO_TRACK] * (1 + held) + [2] * (16 - held), (withhold, beside_class)
        assert update.withheld == 0


def test_a_new_track_of_the_same_class_gets_its_id_as_soon_as_it_is_clear() -> None:
    # The same-class box beside the tracked object moves off: it gets its id in the frame it no longer
    # touches the tracked object's predicted box, before the hold runs out.
    tracker = ByteTracker(TrackingConfig())
    for index in range(3):
        step(tracker, index, [box(100, 100)])
    published = []
    for index in range(3, 9):
        beside = 130 + 6 * max(0, index - 4)  # overlaps the tracked box until frame 5, then leaves
        published.append(int(step(tracker, index, [box(100, 100), box(beside, 100)]).track_ids[1]))
    assert published == [NO_TRACK, NO_TRACK, NO_TRACK, 2, 2, 2]


def test_a_held_back_track_that_a_lost_track_would_recover_takes_its_id_when_first_shown() -> None:
    # An object (id 1) moving right 5 px a frame; beside it a box of its class 36 px ahead (touching it:
    # IoU 0.05) starts a track that is held back. The object's box then goes; the new box pulls ahead
    # to 41 px, clear of the lost track's prediction (IoU 0, so no merge), yet within step 3's reach
    # (1.5 box sizes): shown for the first time, it continues id 1 rather than taking id 2.
    tracker = ByteTracker(TrackingConfig())
    for index in range(10):
        step(tracker, index, [box(100 + 5 * index, 100)])
    for index in (10, 11):
        update = step(tracker, index, [box(100 + 5 * index, 100), box(136 + 5 * index, 100)])
        assert update.track_ids.tolist() == [1, NO_TRACK]
    shown = step(tracker, 12, [box(100 + 5 * 12 + 41, 100)])
    assert shown.track_ids.tolist() == [1] and shown.started == 0 and shown.ages_frames.tolist() == [12]
    # The same with the new box of another class: a new object, shown with its own id once confirmed (no
    # track of its class touches it), which it keeps when the other object's box goes.
    tracker = ByteTracker(TrackingConfig())
    for index in range(10):
        step(tracker, index, [box(100 + 5 * index, 100)])
    for index, expected in ((10, NO_TRACK), (11, 2)):
        update = step(tracker, index, [box(100 + 5 * index, 100), box(136 + 5 * index, 100)], classes=[0, 1])
        assert update.track_ids.tolist() == [1, expected]
    shown = step(tracker, 12, [box(100 + 5 * 12 + 41, 100)], classes=[1])
    assert shown.track_ids.tolist() == [2] and shown.started == 0


def test_a_new_object_gets_its_id_when_seen_a_second_time() -> None:
    tracker = ByteTracker(TrackingConfig())
    step(tracker, 0, [box(100, 100)])
    second = step(tracker, 1, [box(102, 100), box(400, 300)])
    assert second.track_ids.tolist() == [1, NO_TRACK]  # unconfirmed after one frame
    third = step(tracker, 2, [box(104, 100), box(402, 300)])
    assert third.track_ids.tolist() == [1, 2] and third.started == 1 and third.active == 2


def test_dropped_frames_are_predicted_across() -> None:
    # 12 px a frame; then 4 frames are dropped (index 10 -> 15): 60 px later, more than the box's
    # 40 px side, so only a tracker that knows 5 frames passed finds it again.
    tracker = ByteTracker(TrackingConfig())
    for index in range(11):
        step(tracker, index, [box(100 + 12 * index, 200)])
    after_gap = step(tracker, 15, [box(100 + 12 * 15, 200)])
    assert after_gap.track_ids.tolist() == [1]
    assert after_gap.ages_frames.tolist() == [15]


def test_a_pause_in_capture_time_counts_as_frames() -> None:
    # The index goes on by one, but capture time says 10 s (100 frames) passed: the tracks are gone.
    tracker = ByteTracker(TrackingConfig(lost_track_buffer_frames=30))
    for index in range(5):
        step(tracker, index, [box(100, 100)])
    update = tracker.update(np.array([box(100, 100)], np.float32), np.array([0.9], np.float32),
                            np.array([0], np.int32), 5, 1000.0 + 0.4 + 10.0)
    assert update.ended == 1 and update.track_ids.tolist() == [2]


def test_a_lost_track_comes_back_within_the_buffer_and_not_after() -> None:
    tracker = ByteTracker(TrackingConfig(lost_track_buffer_frames=10))
    for index in range(5):
        step(tracker, index, [box(100, 100)])
    for index in range(5, 12):  # hidden for 7 frames
        assert step(tracker, index, []).ended == 0
    assert step(tracker, 12, [box(100, 100)]).track_ids.tolist() == [1]
    for index in range(13, 30):  # hidden for 17 frames: dropped after 10
        update = step(tracker, index, [])
        if index == 23:
            assert update.ended == 1
    assert tracker.track_count == 0
    step(tracker, 30, [box(100, 100)])
    assert step(tracker, 31, [box(100, 100)]).track_ids.tolist() == [2]


def test_a_lost_track_behind_a_tracked_object_is_kept_half_the_buffer_longer() -> None:
    # A small object (class 1) moving right 5 px a frame goes behind a large one (class 0, 120 px) and
    # is hidden 14 frames, past the 10-frame buffer: while its predicted box lies within the large
    # object's box it is kept (up to 15 frames) and comes back under its id. In the open, or hidden
    # longer than 15 frames, it has ended and comes back as a new object.
    def run(occluder: bool, hidden_frames: int) -> list[int]:
        tracker = ByteTracker(TrackingConfig(lost_track_buffer_frames=10))
        large = [box(300, 200, 120)] if occluder else []
        for index in range(23):
            step(tracker, index, large + [box(150 + 5 * index, 200)], classes=[0] * len(large) + [1])
        for index in range(23, 23 + hidden_frames):
            step(tracker, index, large, classes=[0] * len(large))
        back = 23 + hidden_frames
        update = step(tracker, back, large + [box(150 + 5 * back, 200)], classes=[0] * len(large) + [1])
        return update.track_ids.tolist()[-1:]

    assert run(True, 14) == [2]
    assert run(True, 17) == [NO_TRACK]
    assert run(False, 14) == [NO_TRACK]
    assert run(False, 9) == [1]


def test_low_score_boxes_continue_tracks_but_start_none() -> None:
    tracker = ByteTracker(TrackingConfig())
    for index in range(3):
        step(tracker, index, [box(100, 100)])
    faint = step(tracker, 3, [box(100, 100), box(400, 400)], scores=[0.35, 0.35])
    assert faint.track_ids.tolist() == [1, NO_TRACK]
    step(tracker, 4, [box(400, 400)], scores=[0.35])
    assert step(tracker, 5, [box(400, 400)], scores=[0.35]).track_ids.tolist() == [NO_TRACK]


def test_one_object_boxed_under_two_classes_starts_no_second_track() -> None:
    tracker = ByteTracker(TrackingConfig())
    for index in range(3):
        step(tracker, index, [box(100, 100)], classes=[2])
    for index in range(3, 6):
        update = step(tracker, index, [box(100, 100), box(101, 100)], scores=[0.9, 0.8], classes=[2, 1])
        assert update.track_ids.tolist() == [1, NO_TRACK]
    # The detector changes its mind about the class: the track holds.
    assert step(tracker, 6, [box(100, 100)], classes=[1]).track_ids.tolist() == [1]


def test_a_second_box_of_another_class_overlapping_by_0_65_starts_no_track_and_keeps_the_id() -> None:
    # Seen at the frame's edge (validation seed 600): the detector adds a square's box to a circle's,
    # IoU 0.56-0.65, and the square's box outlives the circle's. It must not take the object's identity.
    tracker = ByteTracker(TrackingConfig())
    circle, square = [600, 80, 640, 140], [596, 74, 640, 126]  # IoU 0.646
    for index in range(3):
        step(tracker, index, [circle], classes=[0])
    for index in range(3, 7):
        update = step(tracker, index, [circle, square], scores=[0.9, 0.8], classes=[0, 1])
        assert update.track_ids.tolist() == [1, NO_TRACK]
    assert step(tracker, 7, [square], classes=[1]).track_ids.tolist() == [1]


def test_a_second_label_the_detector_keeps_giving_gets_an_id_of_its_own() -> None:
    # A parked vehicle boxed as a truck (class 7) and as a car (class 2) in every frame: the car box, a
    # duplicate of the truck's, waits DUPLICATE_CONFIRM_MATCHES matches, then is published with an id of its
    # own (a line or zone counting cars finds it); the truck keeps its id throughout.
    tracker = ByteTracker(TrackingConfig())
    truck, car = [651, 42, 725, 99], [651, 43, 722, 100]
    published = []
    for index in range(15):
        update = step(tracker, index, [truck, car], scores=[0.75, 0.65], classes=[7, 2])
        assert update.track_ids[0] == 1
        published.append(int(update.track_ids[1]))
    assert published == [NO_TRACK] * DUPLICATE_CONFIRM_MATCHES + [2] * (15 - DUPLICATE_CONFIRM_MATCHES)
    assert update.active == 2 and update.withheld == 0


def test_objects_of_different_classes_crossing_keep_their_ids_on_every_frame() -> None:
    # A person walking past a cart: boxes of different classes pass through each other. Tracks of different
    # classes never contest a box, so both are published with their ids throughout.
    tracker = ByteTracker(TrackingConfig())
    for index in range(41):
        update = step(tracker, index, [box(100 + 10 * index, 100), box(300 - 10 * index, 100)], classes=[0, 1])
        assert update.track_ids.tolist() == [1, 2] and update.withheld == 0, index


def test_a_track_lately_boxed_as_the_other_ones_class_contests_its_box() -> None:
    # The detector flips classes where objects pile up: the second object (class 1) was boxed as class 0
    # for a few frames before the two meet, so its track is of the first one's class too, and their boxes
    # go out without ids while both claim them.
    tracker = ByteTracker(TrackingConfig())
    withheld = []
    for index in range(41):
        second_class = 0 if 4 <= index <= 7 else 1
        update = step(tracker, index, [box(100 + 10 * index, 100), box(300 - 10 * index, 100)],
                      classes=[0, second_class])
        withheld += [index] if update.withheld else []
    assert 10 in withheld and update.track_ids.tolist() == [1, 2]


def test_a_source_that_starts_over_starts_new_tracks() -> None:
    tracker = ByteTracker(TrackingConfig())
    for index in range(5):
        step(tracker, index, [box(100, 100)])
    restarted = step(tracker, 0, [box(100, 100)])
    assert restarted.ended == 1 and restarted.track_ids.tolist() == [2]


def test_source_trackers_keep_sources_apart_and_take_new_ones() -> None:
    from prometheus_client import CollectorRegistry

    from streamd.frame import Frame
    from streamd.inference.detector import DetectionResult, StageTimings
    from streamd.metrics.definitions import StreamdMetrics
    from streamd.tracking.sources import SourceTrackers
    from streamd.yolox.detections import Detections

    registry = CollectorRegistry()
    trackers = SourceTrackers(TrackingConfig(lost_track_buffer_frames=5), ["a"], StreamdMetrics(registry))
    image = np.zeros((8, 8, 3), np.uint8)
    timings = StageTimings(0.0, 0.0, 0.0)

    def publish(source: str, index: int, cx: float) -> list[int]:
        detections = Detections(np.array([box(cx, 100)], np.float32), np.array([0.9], np.float32),
                                np.array([0], np.int32))
        frame = Frame(source, index, 1000.0 + index / 10, 0.0, image)
        return trackers.apply(DetectionResult(frame, detections, timings)).detections.track_ids.tolist()

    assert publish("a", 0, 100) == [1]
    assert publish("b", 0, 300) == [1]  # not in the list given: a source added later, its own ids
    assert publish("a", 1, 102) == [1] and publish("b", 1, 302) == [1]
    trackers.forget("b")
    assert publish("b", 2, 304) == [1]  # starts afresh: confirmed at once as a first frame
    assert registry.get_sample_value("streamd_tracks_started_total", {"source": "b"}) == 2
    assert registry.get_sample_value("streamd_tracks_active", {"source": "a"}) == 1
    # 19 frames later, past the 5-frame buffer: the old track has ended and the scene starts anew.
    assert publish("a", 20, 102) == [2]
    assert registry.get_sample_value("streamd_tracks_ended_total", {"source": "a"}) == 1
    assert registry.get_sample_value("streamd_tracks_started_total", {"source": "a"}) == 2


def test_sources_read_flat_out_track_by_frame_index_not_by_when_frames_were_read() -> None:
    from streamd.frame import Frame
    from streamd.inference.detector import DetectionResult, StageTimings
    from streamd.tracking.sources import SourceTrackers
    from streamd.yolox.detections import Detections

    trackers = SourceTrackers(TrackingConfig(lost_track_buffer_frames=5), ["camera", "file"], index_clocked=["file"])
    image = np.zeros((8, 8, 3), np.uint8)

    def publish(source: str, index: int, capture_time: float) -> list[int]:
        detections = Detections(np.array([box(100, 100)], np.float32), np.array([0.9], np.float32),
                                np.array([0], np.int32))
        frame = Frame(source, index, capture_time, 0.0, image)
        result = trackers.apply(DetectionResult(frame, detections, StageTimings(0.0, 0.0, 0.0)))
        return result.detections.track_ids.tolist()

    for source in ("camera", "file"):
        assert [publish(source, index, 1000.0 + index / 10) for index in range(3)] == [[1], [1], [1]]
    # The next frame comes 10 s later (a camera that stalled; a file reader the machine held up): a
    # camera's tracks are older than the buffer by then, a file's next frame is just the next frame.
    assert publish("camera", 3, 1010.0) == [2]
    assert publish("file", 3, 1010.0) == [1]
    trackers.retain(["camera", "file"], index_clocked=[])  # a reload paced the file like a camera:
    assert publish("file", 4, 1010.1) == [1]  # its tracker starts afresh (its times were frame indices)
    assert publish("file", 5, 1010.2) == [1]
    assert publish("file", 6, 1020.0) == [2]  # and from now on a 10 s gap is 10 s
    assert publish("camera", 4, 1010.1) == [2]  # the camera's tracker went on


def test_an_object_back_from_behind_another_off_its_prediction_keeps_its_id() -> None:
    # Moving right 5 px a frame, hidden 8 frames, back 50 px lower than predicted (its visible part
    # had misled the filter): IoU with the prediction is 0, but the centre is within 1.5 box sizes.
    def run(class_id: int, drop_px: float) -> list[int]:
        tracker = ByteTracker(TrackingConfig())
        for index in range(10):
            step(tracker, index, [box(100 + 5 * index, 100)])
        for index in range(10, 18):
            step(tracker, index, [])
        return step(tracker, 18, [box(100 + 5 * 18, 100 + drop_px)], classes=[class_id]).track_ids.tolist()

    assert run(0, 50) == [1]
    assert run(1, 50) == [NO_TRACK]  # another class: a new object
    assert run(0, 150) == [NO_TRACK]  # too far: a new object


def _hidden_then_back(tracker: ByteTracker, back: list[float], classes: list[int] | None = None,
                      size: float = 40.0, first_class: int = 0, later_class: int = 0):
    """A track moving right 5 px a frame for 10 frames (its first box of ``first_class``, the others of
    ``later_class``), hidden 8 frames, then ``back`` at frame 18 (50 px lower than predicted)."""
    for index in range(10):
        step(tracker, index, [box(100 + 5 * index, 100, size)], classes=[first_class if index == 0 else later_class])
    for index in range(10, 18):
        step(tracker, index, [])
    return step(tracker, 18, [back], classes=classes)


def test_a_much_larger_box_near_a_lost_small_track_starts_a_new_object() -> None:
    # A fragment of a large neighbour near where a small object went behind it must not take its id.
    assert _hidden_then_back(ByteTracker(TrackingConfig()), box(190, 150, 40)).track_ids.tolist() == [1]
    assert _hidden_then_back(ByteTracker(TrackingConfig()), box(190, 150, 100)).track_ids.tolist() == [NO_TRACK]
    # An object whose visible part shrank before it disappeared comes back at its full size.
    tracker = ByteTracker(TrackingConfig())
    for index in range(10):
        step(tracker, index, [box(100 + 5 * index, 100, 60 if index < 5 else 20)])
    for index in range(10, 18):
        step(tracker, index, [])
    assert step(tracker, 18, [box(190, 130, 60)]).track_ids.tolist() == [1]


def test_a_track_takes_the_class_most_of_its_boxes_have() -> None:
    # First boxed as class 0, then nine times as class 1: back off its prediction as class 1, it is
    # recovered (lost-track recovery needs the track's class), as class 0 it is not.
    back = box(190, 150)
    assert _hidden_then_back(ByteTracker(TrackingConfig()), back, [1], later_class=1).track_ids.tolist() == [1]
    assert _hidden_then_back(ByteTracker(TrackingConfig()), back, [0], later_class=1).track_ids.tolist() == [NO_TRACK]


def test_a_lost_track_is_recovered_before_a_new_track_of_the_same_object_confirms() -> None:
    # Back first under another class (a new, unconfirmed track), then under its own class: the lost
    # track takes the box instead of the unconfirmed one being confirmed under a new id.
    tracker = ByteTracker(TrackingConfig())
    assert _hidden_then_back(tracker, box(190, 150), [1]).track_ids.tolist() == [NO_TRACK]
    assert step(tracker, 19, [box(195, 150)]).track_ids.tolist() == [1]


def coloured_frame(objects: list[tuple[list[float], tuple[int, int, int]]]) -> np.ndarray:
    image = np.full((300, 600, 3), 110, np.uint8)
    for corners, bgr in objects:
        x1, y1, x2, y2 = (int(round(v)) for v in corners)
        image[y1:y2, x1:x2] = bgr
    return image


def meet_and_turn_back():
    """A red and a blue square of one class meet, are boxed as one for 4 frames, and go back the way
    they came: (frame index, boxes, frame) for 30 frames."""
    red, blue = (30, 30, 220), (220, 60, 30)
    for index in range(30):
        if index <= 10:
            left, right = 100 + 10 * index, 400 - 10 * index  # 200 and 300 at frame 10: touching
        else:
            left, right = 200 - 12 * (index - 14), 300 + 12 * (index - 14)
        objects = [(box(left, 150, 50), red), (box(right, 150, 50), blue)]
        together = 11 <= index <= 14
        boxes = [[left - 25, 125, right + 25, 175]] if together else [corners for corners, _ in objects]
        frame_objects = [(box(200, 150, 50), red), (box(250, 150, 50), blue)] if together else objects
        yield index, np.array(boxes, np.float32), coloured_frame(frame_objects)


def ids_after_parting(appearance: bool) -> list[list[int]]:
    tracker = ByteTracker(TrackingConfig())
    ids = []
    for index, boxes, image in meet_and_turn_back():
        update = tracker.update(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int32), index,
                                index * 0.1, colour_signatures(image, boxes) if appearance else None)
        if index > 16:
            ids.append(update.track_ids.tolist())
    return ids


def kept_apart(ids_per_frame: list[list[int]]) -> bool:
    """Never the other's id (a frame without one, while the filter turns round, is no switch), and both
    ids on most frames."""
    return (all(red in (1, NO_TRACK) and blue in (2, NO_TRACK) for red, blue in ids_per_frame)
            and sum(ids == [1, 2] for ids in ids_per_frame) >= 0.8 * len(ids_per_frame))


def test_colours_keep_the_ids_where_motion_alone_swaps_them() -> None:
    assert kept_apart(ids_after_parting(appearance=True)), ids_after_parting(appearance=True)
    # The same boxes by motion alone: each track follows its velocity into the other's box.
    assert all(ids == [2, 1] for ids in ids_after_parting(appearance=False))


def test_source_trackers_use_colours_of_host_frames_only() -> None:
    from streamd.frame import Frame
    from streamd.inference.detector import DetectionResult, StageTimings
    from streamd.sources.device_image import DeviceNV12
    from streamd.tracking.sources import SourceTrackers
    from streamd.yolox.detections import Detections

    def run(appearance: bool, on_device: bool) -> list[list[int]]:
        trackers, ids = SourceTrackers(TrackingConfig(appearance=appearance), ["cam"]), []
        for index, boxes, image in meet_and_turn_back():
            # An NVDEC frame's pixels are in device memory (never read here: the pointers are dummies).
            picture = DeviceNV12(1, 2, image.shape[1], image.shape[0], image.shape[1], image.shape[1]) if on_device \
                else image
            detections = Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int32))
            result = trackers.apply(DetectionResult(Frame("cam", index, index * 0.1, 0.0, picture), detections,
                                                    StageTimings(0.0, 0.0, 0.0)))
            if index > 16:
                ids.append(result.detections.track_ids.tolist())
        return ids

    assert kept_apart(run(appearance=True, on_device=False))
    assert all(ids == [2, 1] for ids in run(appearance=False, on_device=False))  # motion alone, as configured
    assert all(ids == [2, 1] for ids in run(appearance=True, on_device=True))  # no host pixels: motion alone


def test_a_lost_object_comes_back_far_off_its_prediction_if_it_looks_the_same() -> None:
    red, green = (30, 30, 220), (40, 200, 40)

    def run(colour_back: tuple[int, int, int]) -> list[int]:
        tracker = ByteTracker(TrackingConfig())
        for index in range(10):  # still, at x = 100
            corners = box(100, 150, 40)
            tracker.update(np.array([corners], np.float32), np.array([0.9], np.float32), np.array([0], np.int32),
                           index, index * 0.1, colour_signatures(coloured_frame([(corners, red)]),
                                                                 np.array([corners], np.float32)))
        for index in range(10, 15):  # hidden
            tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), index,
                           index * 0.1, np.zeros((0, 16)))
        corners = box(200, 150, 40)  # back 2.5 box sizes away: beyond the motion-only radius of 1.5
        return tracker.update(np.array([corners], np.float32), np.array([0.9], np.float32), np.array([0], np.int32),
                              15, 1.5, colour_signatures(coloured_frame([(corners, colour_back)]),
                                                         np.array([corners], np.float32))).track_ids.tolist()

    assert run(red) == [1]
    assert run(green) == [NO_TRACK]  # another object: a new track, confirmed when seen again


def test_source_trackers_copy_results_as_dataclasses_replace_does_and_keep_the_active_gauge_current() -> None:
    from prometheus_client import CollectorRegistry

    from streamd.frame import Frame
    from streamd.inference.detector import DetectionResult, StageTimings
    from streamd.metrics.definitions import StreamdMetrics
    from streamd.tracking.sources import SourceTrackers, _replaced
    from streamd.yolox.detections import Detections

    # _replaced skips __init__: it holds only for dataclasses whose fields __init__ sets as given.
    for kind in (Detections, DetectionResult):
        assert not hasattr(kind, "__post_init__") and not hasattr(kind, "__slots__")
        assert all(field.init for field in dataclasses.fields(kind))
    registry = CollectorRegistry()
    trackers = SourceTrackers(TrackingConfig(), ["cam"], StreamdMetrics(registry))
    image = np.zeros((8, 8, 3), np.uint8)
    shown, active = [], []
    alone = ByteTracker(TrackingConfig())
    for index, count in enumerate([2, 2, 2, 1, 1, 2, 0, 0, 1]):
        boxes = np.array([box(100 + 10 * index, 100), box(300, 300)][:count], np.float32).reshape(-1, 4)
        detections = Detections(boxes, np.full(count, 0.9, np.float32), np.zeros(count, np.int32))
        result = DetectionResult(Frame("cam", index, 1000.0 + index / 10, 0.0, image), detections,
                                 StageTimings(0.001, 0.002, 0.003))
        tracked = trackers.apply(result)
        active.append(alone.update(boxes, detections.scores, detections.class_ids, index, 1000.0 + index / 10).active)
        expected = dataclasses.replace(result, detections=dataclasses.replace(
            detections, track_ids=tracked.detections.track_ids, track_ages_frames=tracked.detections.track_ages_frames))
        assert type(tracked) is DetectionResult and type(tracked.detections) is Detections
        for got, wanted in ((tracked, expected), (tracked.detections, expected.detections)):
            assert vars(got).keys() == vars(wanted).keys()
            assert all(getattr(got, name) is getattr(wanted, name) for name in vars(wanted) if name != "detections")
        shown.append(registry.get_sample_value("streamd_tracks_active", {"source": "cam"}))
    assert shown == active and len(set(active)) == 3  # the gauge set only when the count changes, yet current
    assert _replaced(tracked, frame=None).frame is None and tracked.frame is not None
