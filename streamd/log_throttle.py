"""Repeating warnings, logged the first time and then as a periodic summary with a count: corrupt
stretches of a looping file, decode errors, refused subscribers. Neutral ground: imports no stage."""

from __future__ import annotations

import time
from collections.abc import Callable

# After the first line, at most one summary line per this many seconds.
REPEAT_SUMMARY_SECONDS = 60.0


class LogThrottle:
    """The first occurrence of a repeating event is logged at once, then at most one summary line per
    ``interval_seconds``, counting what happened since the last line (logged when the next
    occurrence comes after the interval, so a quiet source costs nothing)."""

    def __init__(self, interval_seconds: float = REPEAT_SUMMARY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._last_line: float | None = None
        self.occurrences = 0  # since the last line
        self.amount = 0  # what they add up to (frames...) since the last line
        self.total = 0  # occurrences ever

    def occurred(self, amount: int = 1) -> tuple[int, int] | None:
        """Note one occurrence; ``(occurrences, amount)`` since the last line, this one included, when a
        line is due now, else None."""
        self.occurrences += 1
        self.amount += amount
        self.total += 1
        now = self._clock()
        if self._last_line is not None and now - self._last_line < self.interval_seconds:
            return None
        self._last_line = now
        due = (self.occurrences, self.amount)
        self.occurrences = self.amount = 0
        return due
