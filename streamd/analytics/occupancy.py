"""Time in a zone and how full it is: dwell events per tracked object, occupancy alarms per zone.

Times are source time: each frame's capture time (a camera's, or a file's read at its own pace), or
frame index / fps for a source read flat out. Neither the pipeline's wall clock nor how late a frame is
processed changes a dwell or a hold time.
"""

from __future__ import annotations

import heapq
import math

# Frame times are sums of float periods: a hold or dwell time reached to within this counts as reached.
EPSILON_SECONDS = 1e-6


class DwellTimers:
    """When each tracked object in a zone with ``dwell_seconds`` is due its dwell event: a heap of (due, track,
    zone, enter time). An entry whose object left (or left and came back) since is stale: the caller checks
    the enter time against the track's."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, float]] = []
        self.next_due = math.inf  # the soonest timer's due time

    def start(self, due: float, track_id: int, zone: int, since: float) -> None:
        heapq.heappush(self._heap, (due, track_id, zone, since))
        self.next_due = self._heap[0][0]

    def pop_due(self, now: float) -> list[tuple[int, int, float]]:
        """(track, zone, enter time) of every timer due by ``now``."""
        due = []
        while self._heap and self._heap[0][0] <= now + EPSILON_SECONDS:
            _, track_id, zone, since = heapq.heappop(self._heap)
            due.append((track_id, zone, since))
        self.next_due = self._heap[0][0] if self._heap else math.inf
        return due

    def entries(self) -> list[tuple[float, int, int, float]]:
        return list(self._heap)


class OccupancyAlarm:
    """One zone's alarm: starts once more than ``max_objects`` have been in the zone for ``hold_seconds``,
    ends once at most ``max_objects`` have been for ``hold_seconds``. ``update`` returns "start", "end" or
    None for each frame's count."""

    def __init__(self, max_objects: int, hold_seconds: float) -> None:
        self.max_objects = max_objects
        self.hold_seconds = hold_seconds
        self.active = False
        self.active_since = math.nan
        self._changing_since: float | None = None  # when the count first disagreed with the alarm's state

    def update(self, count: int, now: float) -> str | None:
        if (count > self.max_objects) == self.active:
            self._changing_since = None
            return None
        if self._changing_since is None:
            self._changing_since = now
        if now - self._changing_since < self.hold_seconds - EPSILON_SECONDS:
            return None
        self._changing_since = None
        self.active = not self.active
        if self.active:
            self.active_since = now
            return "start"
        return "end"
