"""Exponential backoff with jitter, capped: the wait between reconnect attempts of one source."""

from __future__ import annotations

import random

# A zero initial delay would turn a refused port into a busy loop; this is the floor.
MIN_DELAY_SECONDS = 0.05
# Each wait is drawn from [(1 - JITTER) * d, d]: cameras that fail together (a switch reboot) do
# not all come back at the same instant, and no wait ever exceeds the cap.
JITTER = 0.5


class Backoff:
    """``next_delay()`` grows ×2 per call up to ``max_seconds``; ``reset()`` after a good connection."""

    def __init__(self, initial_seconds: float, max_seconds: float, rng: random.Random | None = None) -> None:
        self.initial_seconds = max(initial_seconds, MIN_DELAY_SECONDS)
        self.max_seconds = max(max_seconds, self.initial_seconds)
        self._rng = rng or random.Random()
        self._next_seconds = self.initial_seconds
        self.failures = 0  # consecutive, since the last reset

    def next_delay(self) -> float:
        delay = self._next_seconds * self._rng.uniform(1.0 - JITTER, 1.0)
        self._next_seconds = min(self._next_seconds * 2.0, self.max_seconds)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self._next_seconds = self.initial_seconds
        self.failures = 0
