"""Metric definitions and the HTTP endpoints, scraped over real HTTP."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from streamd.errors import StreamdError
from streamd.metrics.definitions import STAGES, StreamdMetrics
from streamd.metrics.http import MetricsServer
from tests.support import http_get


def test_declared_source_shows_zero_series_before_any_frame() -> None:
    registry = CollectorRegistry()
    metrics = StreamdMetrics(registry)
    metrics.declare_source("cam")
    for stage in STAGES:
        assert registry.get_sample_value("streamd_stage_seconds_count", {"source": "cam", "stage": stage}) == 0
    assert registry.get_sample_value("streamd_frames_dropped_total", {"source": "cam", "reason": "superseded"}) == 0
    assert registry.get_sample_value("streamd_source_state", {"source": "cam", "state": "connecting"}) == 1
    assert registry.get_sample_value("streamd_source_up", {"source": "cam"}) == 0


def test_state_gauge_has_exactly_one_current_state() -> None:
    registry = CollectorRegistry()
    metrics = StreamdMetrics(registry)
    metrics.set_source_state("cam", "streaming")
    metrics.set_source_state("cam", "stalled")
    states = {s: registry.get_sample_value("streamd_source_state", {"source": "cam", "state": s})
              for s in ("connecting", "streaming", "stalled", "backing_off")}
    assert states == {"connecting": 0, "streaming": 0, "stalled": 1, "backing_off": 0}
    assert registry.get_sample_value("streamd_source_up", {"source": "cam"}) == 0
    with pytest.raises(ValueError, match="unknown source state"):
        metrics.set_source_state("cam", "sleeping")


def test_http_endpoints_report_health_and_readiness() -> None:
    registry = CollectorRegistry()
    metrics = StreamdMetrics(registry)
    metrics.stage_seconds.labels("cam", "inference").observe(0.007)
    healthy = {"ok": True}
    server = MetricsServer("127.0.0.1", 0, registry, lambda: (healthy["ok"], {"pipeline": "x"}),
                           lambda: (False, {"sources": {"cam": "connecting"}}))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, text = http_get(f"{base}/metrics")
        assert status == 200
        assert 'streamd_stage_seconds_bucket{le="0.008",source="cam",stage="inference"} 1.0' in text
        assert http_get(f"{base}/healthz")[0] == 200
        healthy["ok"] = False
        assert http_get(f"{base}/healthz")[0] == 503
        status, body = http_get(f"{base}/readyz")
        assert status == 503 and '"cam": "connecting"' in body
        with pytest.raises(StreamdError, match="metrics.bind"):
            MetricsServer("127.0.0.1", server.port, registry, lambda: (True, {}), lambda: (True, {}))
    finally:
        server.close()
