"""The track table: rows by track id, grown for new ids, shifted for a low one, trimmed as tracks end."""

from __future__ import annotations

import numpy as np

from streamd.analytics.tracks import NEVER_SEEN, TrackState, TrackTable, set_bits
from tests.analytics.trajectories import Feed, line, path, walk


def test_rows_grow_for_new_ids_and_shift_down_for_a_low_one() -> None:
    table = TrackTable(capacity=8)
    rows = table.fit(np.array([3, 50, -1]))
    assert rows[0] == 3 - table.base and rows[1] == 50 - table.base and table.codes.shape[0] > 50 - table.base
    table.base = 40  # as if the rows below had gone
    rows = table.fit(np.array([12]))
    assert table.base == 11 and rows.tolist() == [1]
    assert (table.codes == NEVER_SEEN).all()


def test_ended_tracks_go_and_the_rows_below_the_oldest_live_one_with_them() -> None:
    table = TrackTable(capacity=16)
    table.fit(np.arange(1, 301))
    for track_id in range(1, 301):
        table.states[track_id] = TrackState(0)
    table.last_index[np.arange(1, 301) - table.base] = np.where(np.arange(1, 301) < 250, 5, 90)
    stale = table.stale(50)
    assert stale == list(range(1, 250))
    table.remove(stale)
    assert sorted(table.states) == list(range(250, 301)) and table.base > 0
    assert table.fit(np.array([300])).tolist() == [300 - table.base]


def test_an_id_lower_than_ones_already_seen_is_a_track_of_its_own() -> None:
    """A new track's first id may be withheld while later ones go out: it still gets its own row."""
    feed = Feed(lines=[line()])
    feed.run(walk(100, [(500, 100)] * 3))
    feed.run(walk(7, path((300, 200), (300, 280), 17)))
    assert feed.crossings() == {"in": 0, "out": 1}


def test_many_ids_over_a_long_run_keep_the_table_small() -> None:
    feed = Feed(lines=[line()], forget_after_frames=5)
    for track_id in range(1, 3000, 3):
        feed.run(walk(track_id, path((300, 200), (300, 280), 5)))
    feed.idle(20)
    assert feed.crossings() == {"in": 0, "out": 1000}
    assert len(feed.analytics.table) == 0 and feed.analytics.table.codes.shape[0] <= 128


def test_set_bits() -> None:
    assert set_bits(0) == [] and set_bits(0b1011) == [0, 1, 3]
