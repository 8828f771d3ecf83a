"""Every streamd metric, defined once against a registry passed in (tests use their own).

Names follow Prometheus conventions: ``streamd_`` prefix, base units (``_seconds``), counters end
in ``_total``. Labels are bounded: source ids come from the config, stages and states are fixed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

# ~1 ms to ~2 s: covers a CPU model at 8 ms, a GPU engine at 1 ms and a stalled source.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.0125, 0.015, 0.020, 0.025,
                   0.030, 0.040, 0.050, 0.075, 0.100, 0.150, 0.250, 0.500, 1.0, 2.0)
STAGES = ("capture_wait", "preprocess", "inference", "decode", "track", "analytics", "publish")
SOURCE_STATES = ("connecting", "streaming", "stalled", "backing_off", "finished", "stopped")
DROP_REASONS = ("superseded", "too_old")
# SIGHUP reloads (streamd.daemon.reload): applied, or refused with the previous config kept running.
RELOAD_RESULTS = ("applied", "refused")
# Why the CURVE publisher refused a connection (streamd.publish.curve.REFUSAL_REASONS, which a test compares).
AUTH_REFUSAL_REASONS = ("unknown_key", "plaintext", "crypto", "protocol")
# Why a sink lost a message (streamd.sinks).
SINK_DROP_REASONS = ("buffer_full", "refused", "rejected", "stopped")
# Frames per detector batch (model.max_batch; 1 unless the detector batches).
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class LastFrameCollector:
    """When each source last delivered a frame, exported two ways, for every source kind:
    ``streamd_source_last_frame_timestamp_seconds`` (Unix time; alert on ``time() - it``) and
    ``streamd_source_seconds_since_last_frame`` (computed at scrape time, so it keeps growing while
    a source is silent). Before a source's first frame both count from when the source started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_frame_time: dict[str, float] = {}

    def mark(self, source_id: str, unix_time: float) -> None:
        with self._lock:
            self._last_frame_time[source_id] = unix_time

    def last_frame_time(self, source_id: str) -> float | None:
        with self._lock:
            return self._last_frame_time.get(source_id)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            items = sorted(self._last_frame_time.items())
        now = time.time()
        timestamp = GaugeMetricFamily(
            "streamd_source_last_frame_timestamp_seconds", "Unix time of the source's last frame (of its start "
            "before the first frame).", labels=["source"])
        since = GaugeMetricFamily(
            "streamd_source_seconds_since_last_frame", "Seconds since the source last delivered a frame (since "
            "its start before the first frame).", labels=["source"])
        for source_id, unix_time in items:
            timestamp.add_metric([source_id], unix_time)
            since.add_metric([source_id], max(0.0, now - unix_time))
        yield timestamp
        yield since

    def describe(self) -> list[GaugeMetricFamily]:
        """The names without samples, so the registry can refuse a duplicate at registration."""
        return [GaugeMetricFamily(name, "", labels=["source"]) for name in (
            "streamd_source_last_frame_timestamp_seconds", "streamd_source_seconds_since_last_frame")]


@dataclass(frozen=True)
class SourceFrameMetrics:
    """One source's per-frame metric children (``StreamdMetrics.frame_metrics``)."""

    stage: dict[str, Histogram]  # by stage name (STAGES)
    frame_age: Histogram
    frames_captured: Counter
    frames_processed: Counter
    detections: Counter


class StreamdMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.stage_seconds = Histogram(
            "streamd_stage_seconds", "Time spent per pipeline stage per frame.",
            ["source", "stage"], buckets=LATENCY_BUCKETS, registry=registry)
        self.frame_age_seconds = Histogram(
            "streamd_frame_age_seconds", "Age of a frame when its detections are published "
            "(capture to publish).", ["source"], buckets=LATENCY_BUCKETS, registry=registry)
        self.frames_captured = Counter(
            "streamd_frames_captured_total", "Frames delivered by a source.", ["source"], registry=registry)
        self.frames_processed = Counter(
            "streamd_frames_processed_total", "Frames run through inference and published.",
            ["source"], registry=registry)
        self.frames_dropped = Counter(
            "streamd_frames_dropped_total", "Frames dropped before inference: superseded by a newer "
            "frame in the latest-frame slot, or older than daemon.max_frame_age_seconds.",
            ["source", "reason"], registry=registry)
        self.detections = Counter(
            "streamd_detections_total", "Detections published.", ["source"], registry=registry)
        self.messages_published = Counter(
            "streamd_messages_published_total", "Messages handed to the ZeroMQ socket.", registry=registry)
        self.messages_dropped = Counter(
            "streamd_messages_dropped_total", "Messages dropped because subscribers were too slow "
            "(send high-water mark reached).", registry=registry)
        self.source_up = Gauge(
            "streamd_source_up", "1 while a source delivers frames, else 0.", ["source"], registry=registry)
        self.source_state = Gauge(
            "streamd_source_state", "1 for the source's current state, 0 for the others.",
            ["source", "state"], registry=registry)
        self.source_reconnects = Counter(
            "streamd_source_reconnects_total", "Times a source was reopened after a failure or stall.",
            ["source"], registry=registry)
        self.source_errors = Counter(
            "streamd_source_errors_total", "Failed opens, failed reads and stalls of a source.",
            ["source", "kind"], registry=registry)
        self.last_frame = LastFrameCollector()
        registry.register(self.last_frame)
        self.batch_size = Histogram(
            "streamd_batch_size", "Frames per batch handed to the detector (at most model.max_batch).",
            buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self.batch_wait_seconds = Histogram(
            "streamd_batch_wait_seconds", "Time a batch waited for more frames after its first one "
            "(bounded by model.batch_window_seconds).", buckets=LATENCY_BUCKETS, registry=registry)
        self.tracks_active = Gauge(
            "streamd_tracks_active", "Confirmed tracks seen in the source's latest published frame "
            "(0 with tracking off).", ["source"], registry=registry)
        self.tracks_started = Counter(
            "streamd_tracks_started_total", "New ids: tracks whose id was published for the first time.", ["source"],
            registry=registry)
        self.tracks_ended = Counter(
            "streamd_tracks_ended_total", "Tracks whose id was published dropped: lost longer than "
            "tracking.lost_track_buffer_frames, or the source started over.", ["source"], registry=registry)
        self.track_ids_withheld = Counter(
            "streamd_track_ids_withheld_total", "Boxes of tracked objects published without track_id because another "
            "track claims them too (tracking.withhold_contested_ids).", ["source"], registry=registry)
        # Analytics (streamd.analytics): labelled by the config's zone and line names and the model's classes.
        self.line_crossings = Counter(
            "streamd_line_crossings_total", "Tracked objects that crossed a line (sources.lines), by direction "
            "(in, out) and class.", ["source", "line", "direction", "class"], registry=registry)
        self.zone_entries = Counter(
            "streamd_zone_entries_total", "Tracked objects that entered a zone (sources.zones), by class.",
            ["source", "zone", "class"], registry=registry)
        self.zone_occupancy = Gauge(
            "streamd_zone_occupancy", "Detections in a zone (of the classes it counts) in the source's latest "
            "published frame.", ["source", "zone"], registry=registry)
        self.build_info = Info("streamd_build", "streamd version, backend and model.", registry=registry)
        self.config_reloads = Counter(
            "streamd_config_reloads_total", "Config reloads (SIGHUP): applied, or refused (invalid config, a model "
            "that cannot load; the previous config keeps running).", ["result"], registry=registry)
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result)
        self.publish_auth_refused = Counter(
            "streamd_publish_auth_refused_total", "Connections to the CURVE publisher refused: unknown_key (not in "
            "the authorised-keys folder), plaintext (no CURVE), crypto (wrong server key, or a public key without "
            "its secret), protocol (not ZeroMQ).", ["reason"], registry=registry)
        for reason in AUTH_REFUSAL_REASONS:
            self.publish_auth_refused.labels(reason)
        # Sinks (streamd.sinks): labelled by the config's sink names.
        self.sink_sent = Counter(
            "streamd_sink_sent_total", "Messages a sink handed to its broker (QoS 1: acknowledged by it; NATS: "
            "stored, acknowledged by JetStream; a webhook: answered 2xx).", ["sink"], registry=registry)
        self.sink_dropped = Counter(
            "streamd_sink_dropped_total", "Messages a sink lost: buffer_full (the oldest buffered message, while the "
            "broker was slow or away), refused (the client or JetStream refused it), rejected (the receiver answered "
            "that it will not take it: a webhook's HTTP 4xx), stopped (still buffered when the daemon stopped).",
            ["sink", "reason"], registry=registry)
        self.sink_buffered = Gauge(
            "streamd_sink_buffered_messages", "Messages waiting in a sink's buffer.", ["sink"], registry=registry)
        self.sink_connected = Gauge(
            "streamd_sink_connected", "1 while a sink is connected to its broker (a webhook: while its receiver "
            "answers).", ["sink"], registry=registry)
        self.sink_connects = Counter(
            "streamd_sink_connects_total", "Connections a sink made to its broker (the first and each reconnect).",
            ["sink"], registry=registry)
        self._frame_metrics: dict[str, SourceFrameMetrics] = {}

    def frame_metrics(self, source_id: str) -> SourceFrameMetrics:
        """The labelled children a source's every frame updates, looked up once per source: ``labels()``
        costs about as much as the update itself, and the pipeline made 11 lookups a frame."""
        children = self._frame_metrics.get(source_id)
        if children is None:  # a race only builds the same children twice (labels() is idempotent)
            children = SourceFrameMetrics(
                stage={stage: self.stage_seconds.labels(source_id, stage) for stage in STAGES},
                frame_age=self.frame_age_seconds.labels(source_id),
                frames_captured=self.frames_captured.labels(source_id),
                frames_processed=self.frames_processed.labels(source_id),
                detections=self.detections.labels(source_id))
            self._frame_metrics[source_id] = children
        return children

    def declare_source(self, source_id: str) -> None:
        """Create every labelled child up front so a scrape shows zeros, not absent series."""
        for stage in STAGES:
            self.stage_seconds.labels(source_id, stage)
        self.frame_age_seconds.labels(source_id)
        for metric in (self.frames_captured, self.frames_processed, self.detections,
                       self.source_reconnects, self.tracks_active, self.tracks_started, self.tracks_ended,
                       self.track_ids_withheld):
            metric.labels(source_id)
        for reason in DROP_REASONS:
            self.frames_dropped.labels(source_id, reason)
        for kind in ("open", "read", "stall"):
            self.source_errors.labels(source_id, kind)
        self.source_up.labels(source_id).set(0)
        self.set_source_state(source_id, "connecting")
        if self.last_frame.last_frame_time(source_id) is None:
            self.last_frame.mark(source_id, time.time())

    # What a capture thread reports (streamd.sources.report.CaptureReport).
    def frame_captured(self, source_id: str) -> None:
        self.frame_metrics(source_id).frames_captured.inc()

    def frame_dropped(self, source_id: str, reason: str) -> None:
        self.frames_dropped.labels(source_id, reason).inc()

    def source_error(self, source_id: str, kind: str) -> None:
        self.source_errors.labels(source_id, kind).inc()

    def source_reconnected(self, source_id: str) -> None:
        self.source_reconnects.labels(source_id).inc()

    def mark_last_frame(self, source_id: str, unix_time: float) -> None:
        self.last_frame.mark(source_id, unix_time)

    def set_source_state(self, source_id: str, state: str) -> None:
        if state not in SOURCE_STATES:
            raise ValueError(f"unknown source state {state!r}")
        for known in SOURCE_STATES:
            self.source_state.labels(source_id, known).set(1 if known == state else 0)
        self.source_up.labels(source_id).set(1 if state == "streaming" else 0)
