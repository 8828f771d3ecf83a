"""The status line's numbers (streamd/daemon/status.py), from a real metrics registry."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from streamd.daemon.status import StatusReporter, bucket_quantile
from streamd.metrics.definitions import StreamdMetrics


def test_bucket_quantile_interpolates_within_the_bucket() -> None:
    buckets = [(0.01, 0.0), (0.02, 10.0), (float("inf"), 10.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.015)
    assert bucket_quantile(0.5, [(0.01, 0.0), (float("inf"), 0.0)]) is None
    assert bucket_quantile(0.5, [(0.01, 0.0), (float("inf"), 4.0)]) == 0.01  # past the last bound: that bound


def test_reporter_logs_each_interval_from_the_counters(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = StreamdMetrics(registry)
    metrics.declare_source("cam")
    now = [0.0]
    reporter = StatusReporter(registry, lambda: {"cam": "streaming"}, 10.0, clock=lambda: now[0])
    metrics.frames_captured.labels("cam").inc(100)
    metrics.frames_dropped.labels("cam", "superseded").inc(3)
    for _ in range(100):
        metrics.frame_age_seconds.labels("cam").observe(0.009)
    with caplog.at_level(logging.INFO, logger="streamd.status"):
        now[0] = 5.0
        reporter.tick()
        assert not caplog.records  # not yet an interval
        now[0] = 10.0
        reporter.tick()
        metrics.frames_captured.labels("cam").inc(50)
        now[0] = 20.0
        reporter.tick()
    assert [r.getMessage() for r in caplog.records] == [
        "status: source cam streaming, 10.0 fps, frame age p50 9 ms, 3 dropped in 10 s",
        "status: source cam streaming, 5.0 fps, frame age p50 -, 0 dropped in 10 s",  # only this interval's
    ]


def test_interval_0_never_logs(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    reporter = StatusReporter(CollectorRegistry(), lambda: {"cam": "streaming"}, 0.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="streamd.status"):
        now[0] = 1e6
        reporter.tick()
    assert not caplog.records
