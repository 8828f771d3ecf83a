"""What the analytics remember of each track.

Per frame, each box's *code* (its zones, and which side of each line it is clearly on) is compared with
the code its track had last time, for all boxes at once: the table's rows are indexed by track id (less
a base), so one ``take`` reads every box's stored code. Only a track whose code changed (or that is
part way through a zone's ``min_frames``, or new) has its ``TrackState`` looked at: a change is an
object crossing a zone's edge or a line's margin, a few a frame in a busy scene, so a steady scene costs
a handful of numpy calls whatever the number of objects, zones and lines.

Track ids count up, so the rows between the oldest live track and the newest are few; rows below the
oldest live track are dropped as tracks end. Row 0 stands for no track (a box without an id) and the
last row for an id past the table: both hold a code no box has, so such a box is always looked at.
"""

from __future__ import annotations

import numpy as np

NO_TRACK = -1
NEVER_SEEN = -1  # the code of a row with no track yet: differs from every real one
# A track part way through a zone's min_frames has this bit in its stored code, so that it differs from
# every real code and the track is looked at again next frame (codes use bits 0 to 61).
PENDING = 1 << 62


class TrackState:
    """One track: its zones (confirmed, and those part way through ``min_frames``), since when it is in
    each, the dwell events it had, its side of each line, its class when it entered."""

    __slots__ = ("class_id", "code", "confirmed", "done", "runs", "sides", "since")

    def __init__(self, lines: int) -> None:
        self.code = NEVER_SEEN  # the code it had last time it was looked at (without PENDING)
        self.class_id = 0
        self.confirmed = 0  # zone bits
        self.done = 0  # zone bits with a dwell event for this visit
        self.runs: dict[int, list[float]] = {}  # zone -> [frames in a row unlike confirmed, when the run began]
        self.since: dict[int, float] = {}  # zone -> source time it entered
        self.sides = [0] * lines  # per line: +1 inside, -1 outside, 0 unknown


class TrackTable:
    """Row ``r`` (1 to ``len(codes) - 2``) is track id ``base + r``."""

    def __init__(self, capacity: int = 64) -> None:
        self.base = 0
        self.codes = np.full(capacity, NEVER_SEEN, np.int64)
        self.last_index = np.zeros(capacity, np.int64)  # the frame each track was last seen in
        self.states: dict[int, TrackState] = {}

    def __len__(self) -> int:
        return len(self.states)

    def rows(self, track_ids: np.ndarray) -> np.ndarray:
        """Each id's row; an id past the table (or none) gets the last row (or row 0): clip them when reading."""
        return track_ids - self.base

    def fit(self, track_ids: np.ndarray) -> np.ndarray:
        """Rows for every one of ``track_ids`` (ids ≥ 1), the table grown or shifted down to hold them."""
        ids = track_ids[track_ids > 0]
        low, high = int(ids.min()), int(ids.max())
        if low <= self.base:  # an id below the rows kept (rare: one withheld from its first frame for long)
            self._shift(low - 1)
        if high - self.base >= self.codes.shape[0] - 1:
            self._resize(max(2 * self.codes.shape[0], high - self.base + 2))
        return track_ids - self.base

    def _resize(self, capacity: int) -> None:
        for name, fill in (("codes", NEVER_SEEN), ("last_index", 0)):
            old = getattr(self, name)
            grown = np.full(capacity, fill, np.int64)
            count = min(old.shape[0], capacity)
            grown[:count] = old[:count]
            grown[-1] = fill
            setattr(self, name, grown)

    def _shift(self, base: int) -> None:
        """Rebase: row 1 becomes id ``base + 1``."""
        offset = base - self.base
        capacity = max(self.codes.shape[0], self.codes.shape[0] - offset + 2)
        for name, fill in (("codes", NEVER_SEEN), ("last_index", 0)):
            old = getattr(self, name)
            moved = np.full(capacity, fill, np.int64)
            source = np.arange(1, old.shape[0] - 1)
            target = source - offset
            keep = (target >= 1) & (target < capacity - 1)
            moved[target[keep]] = old[source[keep]]
            setattr(self, name, moved)
        self.base = base

    def stale(self, before_index: int) -> list[int]:
        """The ids of the tracks last seen before frame ``before_index``."""
        if not self.states:
            return []
        ids = np.fromiter(self.states, np.int64, len(self.states))
        return ids[self.last_index[ids - self.base] < before_index].tolist()

    def remove(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            del self.states[track_id]
            self.codes[track_id - self.base] = NEVER_SEEN
        if self.states:
            oldest = min(self.states)
            if oldest - self.base > self.codes.shape[0] // 2:  # the rows below the oldest live track go
                self._shift(oldest - 1)
        else:  # no track left: the next ones start at row 1
            self.base = max([self.base, *track_ids])
            self.codes[:] = NEVER_SEEN
            self.last_index[:] = 0

    def restore(self, old: TrackTable) -> None:
        """Another table's tracks (a reload), each to be looked at again at its next frame."""
        self.base = old.base
        self.codes = np.full(old.codes.shape[0], NEVER_SEEN, np.int64)
        self.last_index = old.last_index.copy()


def set_bits(value: int) -> list[int]:
    """The positions of the set bits of ``value``, lowest first."""
    found = []
    while value:
        low = value & -value
        found.append(low.bit_length() - 1)
        value ^= low
    return found
