"""A periodic status line per source (``daemon.status_interval_seconds``): a daemon under journald
says it is alive, and how well, without anyone scraping /metrics.

Numbers are read from the metrics registry, as a scrape would see them, and are for the interval
since the previous line: fps captured, frame age at publish p50 (interpolated in the histogram's
buckets, as PromQL's ``histogram_quantile`` does), frames dropped, the current state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

log = logging.getLogger("streamd.status")


@dataclass(frozen=True)
class SourceCounts:
    """Cumulative counters of one source at one moment."""

    captured: float
    dropped: float
    age_buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last


def read_counts(registry: CollectorRegistry, source_ids: Sequence[str]) -> dict[str, SourceCounts]:
    captured: dict[str, float] = {}
    dropped: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            source = sample.labels.get("source")
            if source is None:
                continue
            if sample.name == "streamd_frames_captured_total":
                captured[source] = sample.value
            elif sample.name == "streamd_frames_dropped_total":
                dropped[source] = dropped.get(source, 0.0) + sample.value
            elif sample.name == "streamd_frame_age_seconds_bucket":
                buckets.setdefault(source, []).append((float(sample.labels["le"]), sample.value))
    return {s: SourceCounts(captured.get(s, 0.0), dropped.get(s, 0.0), tuple(sorted(buckets.get(s, []))))
            for s in source_ids}


def bucket_quantile(quantile: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The quantile of observations in cumulative ``buckets`` (linear within a bucket); None when
    there are none. Past the last finite bound it answers that bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = quantile * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if count >= rank:
            if upper_bound == float("inf"):
                return lower_bound
            in_bucket = count - lower_count
            fraction = (rank - lower_count) / in_bucket if in_bucket else 1.0
            return lower_bound + (upper_bound - lower_bound) * fraction
        lower_bound, lower_count = upper_bound, count
    return lower_bound


def _difference(now: SourceCounts, before: SourceCounts | None) -> tuple[float, float, list[tuple[float, float]]]:
    if before is None:
        return now.captured, now.dropped, list(now.age_buckets)
    earlier = dict(before.age_buckets)
    buckets = [(bound, count - earlier.get(bound, 0.0)) for bound, count in now.age_buckets]
    return now.captured - before.captured, now.dropped - before.dropped, buckets


def format_status(source_id: str, state: str, interval_seconds: float, captured: float, dropped: float,
                  age_p50_seconds: float | None) -> str:
    age = f"{age_p50_seconds * 1000:.0f} ms" if age_p50_seconds is not None else "-"
    return (f"status: source {source_id} {state}, {captured / interval_seconds:.1f} fps, frame age p50 {age}, "
            f"{dropped:.0f} dropped in {interval_seconds:.0f} s")


class StatusReporter:
    """Call ``tick()`` often (the service's main loop does, every second); it logs one line per
    source once ``interval_seconds`` have passed since the last lines. ``interval_seconds`` 0: never."""

    def __init__(self, registry: CollectorRegistry, states: Callable[[], dict[str, str]], interval_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._states = states
        self._interval_seconds = interval_seconds
        self._clock = clock
        self._last_monotonic = clock()
        self._last_counts: dict[str, SourceCounts] = {}

    def tick(self) -> None:
        if not self._interval_seconds:
            return
        now = self._clock()
        if now - self._last_monotonic < self._interval_seconds:
            return
        elapsed, self._last_monotonic = now - self._last_monotonic, now
        states = self._states()
        counts = read_counts(self._registry, list(states))
        for source_id, state in states.items():
            captured, dropped, buckets = _difference(counts[source_id], self._last_counts.get(source_id))
            log.info("%s", format_status(source_id, state, elapsed, captured, dropped,
                                         bucket_quantile(0.5, buckets)))
        self._last_counts = counts
