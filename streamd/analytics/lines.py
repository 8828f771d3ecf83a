"""Directed line crossings of tracked objects.

Each track has a side of each line: +1 inside, -1 outside, 0 not yet known. An anchor changes its
track's side only once it is more than the line's margin past it (hysteresis): a box jittering on
the line keeps its side. A crossing is a change from one known side to the other, so it counts once
per change of direction: in, then out after a U-turn, never twice for one passage.

It counts only between the line's end points: the track's path (straight from each of its frames to
the next) last met the line, before the change of side, at a point between them. An object walking
round the end of the line changes side without counting. A track's path is made of its own frames:
one whose id was withheld, or that went unseen, for a few frames is joined from where it was last seen
to where it is seen again; a new id starts with no side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from streamd.analytics.tracks import TrackState, set_bits


def update(state: TrackState, code: int, zones: int) -> list[int]:
    """One frame of a track whose ``code`` changed: its side of each line where it is clearly on one, and
    the lines it changed side of (each a crossing, if between the end points). Updates ``state``."""
    changed = []
    previous = state.code if state.code >= 0 else 0
    for k in set_bits((code ^ previous) >> zones):
        line = k // 2
        if line in changed:
            continue
        clear = ((code >> (zones + 2 * line)) & 1) - ((code >> (zones + 2 * line + 1)) & 1)
        if clear == 0:
            continue
        if state.sides[line] == -clear:
            changed.append(line)
        state.sides[line] = clear
    return changed


class History:
    """The last few frames' track ids and rows (references, no copies): where a track was before."""

    def __init__(self, frames: int) -> None:
        self._frames: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=max(2, frames))

    def add(self, track_ids: np.ndarray, rows: np.ndarray) -> None:
        self._frames.append((track_ids, rows))

    def clear(self) -> None:
        self._frames.clear()

    def crossing_point(self, track_id: int, distance: float, along: float,
                       measure: Callable[[np.ndarray, int], tuple[float, float]]) -> float:
        """Where along the line (0 to 1 between its points) the track's path last met it before reaching
        ``distance``, ``along`` this frame. ``measure(rows, box)`` gives an earlier frame's (distance,
        along) of a box. Its frames are walked back until one on the other side; the path between that
        one and the next is met where the distance is 0. None found: this frame's position."""
        later_d, later_t = distance, along
        for track_ids, rows in reversed(self._frames):
            try:
                box = track_ids.tolist().index(track_id)  # cheaper than a comparison and nonzero at this size
            except ValueError:
                continue
            d, t = measure(rows, box)
            if d * later_d < 0 or (d == 0 and later_d != 0):
                return t + (later_t - t) * (d / (d - later_d))
            later_d, later_t = d, t
        return along
