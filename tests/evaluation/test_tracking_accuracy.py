"""End to end: the daemon's published tracks on held-out synthetic scenes with identities, scored with
motmetrics (IDF1, ID switches) from what a ZeroMQ subscriber receives: at the cameras' pace, and with
inference slower than the cameras (frames superseded, gaps in frame_index)."""

from __future__ import annotations

import numpy as np

from streamd.evaluation.mot_metrics import FrameTracks, clear_and_identity
from streamd.evaluation.tracking_accuracy import (
    daemon_tracking_accuracy,
    record_detections,
    replay_frame_indices,
    replay_tracks,
    switch_events,
)
from streamd.sources.synthetic import TRAINING_SEED_BASE

SEEDS = (1, 2, 3)  # held out from the detector's training and from the tracker's tuning (500-505)
FRAMES_PER_SEED = 100


def test_tracks_at_native_pace_meet_the_bar() -> None:
    assert max(SEEDS) < TRAINING_SEED_BASE
    result = daemon_tracking_accuracy(SEEDS, FRAMES_PER_SEED, fps=10.0)
    # A busy CI machine may supersede a few frames; the tracker must hold either way.
    assert result["frames_received"] >= 0.5 * result["frames_sent"], result
    assert result["idf1"] >= 0.90, result
    assert result["num_unique_objects"] >= 15, result
    # 17 ground-truth tracks: the accuracy bar (1 switch per 100 tracks) is measured over more by
    # `python -m streamd.evaluation.tracking_accuracy` (docs/tracking.md); this guards against
    # regressions, with 2 switches allowed because a heavily loaded machine drops frames.
    assert result["num_switches"] <= 2, result


def test_tracks_under_drops_meet_the_bar() -> None:
    # 10 fps cameras, every detector call 300 ms slower: well over half the frames are superseded. (At
    # 150 ms the skipped share sat at 28-32 %, right at this test's 30 % floor, depending on the load.)
    result = daemon_tracking_accuracy(SEEDS, FRAMES_PER_SEED, fps=10.0, inference_delay_seconds=0.3)
    assert result["frames_skipped"] >= 0.3 * result["frames_sent"], result
    assert result["idf1"] >= 0.80, result


def test_recorded_detections_replay_through_the_tracker() -> None:
    # The tuning path (docs/tracking.md): the detector's boxes recorded once, replayed through the tracker.
    recorded = record_detections([500], 30)  # a tuning scene
    assert {"500_0_db", "500_29_gi"} <= set(recorded)
    assert replay_frame_indices(30, drops=False) == list(range(30))
    dropped = replay_frame_indices(30, drops=True)
    assert dropped[0] == 0 and {b - a for a, b in zip(dropped, dropped[1:])} <= {1, 2, 3} and len(dropped) < 25
    for drops in (False, True):
        sequences = replay_tracks(recorded, drops)
        assert list(sequences) == ["500"] and len(sequences["500"]) == len(replay_frame_indices(30, drops))
        scores = clear_and_identity(sequences)
        assert scores["idf1"] >= 0.9 and scores["num_objects"] >= 0.8 * len(sequences["500"]), scores


def test_switch_events_list_each_switch_as_the_scores_count_it() -> None:
    # Two objects; the tracker swaps their ids at the fourth frame (source frame 6: every other frame).
    boxes = np.array([[0, 0, 40, 40], [100, 0, 140, 40]], np.float64)
    frames = [FrameTracks(np.array([1, 2]), boxes, np.array(ids), boxes) for ids in ([5, 6], [5, 6], [5, 6], [6, 5])]
    events = switch_events({"a": frames}, [0, 2, 4, 6])
    assert clear_and_identity({"a": frames})["num_switches"] == len(events) == 2
    assert sorted((e["truth_id"], e["from_track"], e["to_track"]) for e in events) == [(1, 5, 6), (2, 6, 5)]
    assert {(e["sequence"], e["frame"], e["frames_since_match"]) for e in events} == {("a", 6, 2)}
