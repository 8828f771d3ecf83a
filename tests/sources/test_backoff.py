"""Backoff: doubling, capped, jittered downwards only, reset after a good connection."""

from __future__ import annotations

import random

from streamd.sources.backoff import JITTER, MIN_DELAY_SECONDS, Backoff


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    nominal = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in nominal]
    for delay, expected in zip(delays, nominal):
        assert (1 - JITTER) * expected <= delay <= expected
    assert backoff.failures == len(nominal)
    assert len({round(d, 6) for d in delays[3:]}) == 3  # jittered, not identical


def test_reset_and_degenerate_settings() -> None:
    backoff = Backoff(0.5, 4.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.5
    assert Backoff(0.0, 0.0).next_delay() >= (1 - JITTER) * MIN_DELAY_SECONDS  # never a busy loop
    assert Backoff(2.0, 1.0).next_delay() <= 2.0  # a cap below the start means: no growth
