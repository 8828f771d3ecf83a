"""Wire the parts, run until told to stop (or every source has ended), tear down in reverse."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from streamd import __version__
from streamd.analytics.sources import Analytics
from streamd.config.load import split_bind
from streamd.config.schema import Config, ModelConfig, SourceConfig
from streamd.daemon.pipeline import Pipeline
from streamd.daemon.reload import Reloader
from streamd.daemon.sdnotify import SystemdNotifier
from streamd.daemon.status import StatusReporter
from streamd.errors import ConfigError
from streamd.inference.detector import DetectionResult, Detector
from streamd.inference.factory import build_detectors
from streamd.metrics.definitions import StreamdMetrics
from streamd.metrics.http import MetricsServer
from streamd.metrics.jetson import register_board_metrics
from streamd.preview.http import PreviewServer, build_preview
from streamd.publish.publisher import Publisher
from streamd.sinks import Sinks
from streamd.sources.capture import CaptureSource
from streamd.sources.frame_pool import FramePool
from streamd.sources.latest_frame import FrameSignal
from streamd.sources.nvdec import reader_factory as nvdec_reader_factory
from streamd.sources.readers import make_reader
from streamd.sources.synthetic import DEFAULT_FPS as SYNTHETIC_FPS
from streamd.tracking.sources import SourceTrackers

log = logging.getLogger(__name__)

# The pipeline must have looked for a frame this recently to count as alive (/healthz, watchdog).
HEARTBEAT_LIMIT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 2.0


@dataclass
class Service:
    """A running daemon's parts, in start order (torn down in reverse)."""

    config: Config
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    on_result: Callable[[DetectionResult, float], None] | None = None
    detectors: list[Detector] = field(default_factory=list)
    publisher: Publisher | None = None
    http: MetricsServer | None = None
    preview: PreviewServer | None = None
    sources: list[CaptureSource] = field(default_factory=list)
    frame_pools: list[FramePool] = field(default_factory=list)
    pipeline: Pipeline | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    # What building a source or a pipeline needs again on a reload (streamd.daemon.reload).
    metrics: StreamdMetrics | None = None
    frame_signal: FrameSignal | None = None
    frame_allocator: Callable | None = None
    trackers: SourceTrackers | None = None
    analytics: Analytics | None = None
    sinks: Sinks | None = None  # [[sinks]]: read at start (a reload keeps them as they are)
    result_hook: Callable[[DetectionResult, float], None] | None = None
    source_pools: dict[CaptureSource, FramePool] = field(default_factory=dict)
    # (model config, its detectors) built before the service (a standby worker's): used when the model matches.
    prebuilt: tuple[ModelConfig, list[Detector]] | None = None

    def start(self) -> None:
        self.start_detector()
        wait_seconds = self.config.publish.wait_for_subscriber_seconds
        if wait_seconds > 0 and not self.wait_for_subscriber(wait_seconds):
            log.warning("no subscriber after %.1f s (publish.wait_for_subscriber_seconds): starting anyway",
                        wait_seconds)
        self.start_sources()

    def start_detector(self) -> None:
        """Everything but the sources: model, publisher, HTTP endpoints, the pipeline thread."""
        preflight(self.config)
        self.metrics = metrics = StreamdMetrics(self.registry)
        register_board_metrics(self.registry)  # Jetson power/thermal gauges; nothing elsewhere
        self.detectors = self.build_detectors(self.config.model, self.config)
        first = self.detectors[0]
        metrics.build_info.info({"version": __version__, "model": first.model_id,
                                 "backend": getattr(getattr(first, "backend", None), "name", "gpu"),
                                 "workers": str(len(self.detectors))})
        publish = self.config.publish
        self.publisher = Publisher(publish.endpoint, publish.send_hwm, metrics, publish.curve_secret_key,
                                   publish.curve_authorized_keys)
        if self.config.sinks:
            self.sinks = Sinks(self.config.sinks, self.config.sources, metrics, first.model_id)
            self.sinks.start()
        self.frame_signal = FrameSignal()
        self.frame_allocator = first.frame_allocator()
        for source_config in self.config.sources:
            self.sources.append(self.build_source(source_config, self.config))
        on_result = self.on_result
        # Always there, so that a reload may give any source zones or lines without a new pipeline.
        self.analytics = Analytics(self.config.sources, self.config.tracking.lost_track_buffer_frames + 1, metrics,
                                   fps_of=self.source_fps)
        if self.config.preview.enabled:  # bound now, served once the pipeline runs
            self.preview = build_preview(self.config.preview, lambda: {s.source_id: s.state for s in self.sources},
                                         lambda: self.detectors[0].class_names, on_result,
                                         overlay=self.analytics.overlay)
            on_result = self.preview.on_result
        self.result_hook = on_result
        if self.config.tracking.enabled:
            # build_pipeline's retain tells it which sources are read flat out.
            self.trackers = SourceTrackers(self.config.tracking, [s.id for s in self.config.sources], metrics)
        self.pipeline = self.build_pipeline(self.sources, self.detectors, self.config)
        self.pipeline.start()
        # Served once the pipeline runs, so the first /healthz already reflects it.
        if self.config.metrics.enabled:
            host, port = split_bind(self.config.metrics.bind)
            self.http = MetricsServer(host, port, self.registry, self.health, self.readiness)
            self.http.start()
        if self.preview is not None:
            self.preview.start()

    # -- the parts a start and a reload (streamd.daemon.reload) build -----------------------------
    def build_detectors(self, model: ModelConfig, config: Config) -> list[Detector]:
        prebuilt, self.prebuilt = self.prebuilt, None
        if prebuilt is not None and prebuilt[0] != model:
            for detector in prebuilt[1]:
                detector.close()
            prebuilt = None
        detectors = prebuilt[1] if prebuilt is not None else build_detectors(model)
        try:
            check_device_frames(config, detectors[0])
        except BaseException:
            for detector in detectors:
                detector.close()
            raise
        return detectors

    def check_sources(self, config: Config) -> None:
        """A reload's new sources: the start-up preflight (nvdec, jetson) for them."""
        preflight(config)

    def build_source(self, source: SourceConfig, config: Config) -> CaptureSource:
        """A source, not started; its pinned-frame pool when the detector wants one."""
        pool = FramePool(self.frame_allocator) if self.frame_allocator is not None else None
        reader_factory = nvdec_reader_factory(config.model.device) if source.decoder == "nvdec" else make_reader
        capture = CaptureSource(source, self.metrics, reader_factory=reader_factory, frame_ready=self.frame_signal,
                                frame_pool=pool)
        if pool is not None:
            self.frame_pools.append(pool)
            self.source_pools[capture] = pool
        return capture

    def build_pipeline(self, sources: Sequence[CaptureSource], detectors: Sequence[Detector], config: Config,
                       first_sequence: int = 0, restarted: Collection[str] = ()) -> Pipeline:
        if self.publisher is None or self.metrics is None or self.frame_signal is None:
            raise RuntimeError("build_pipeline before start_detector")
        fast = [s.source_id for s in sources if s.config.pace == "fast"]
        if self.trackers is not None:
            self.trackers.retain([s.source_id for s in sources], restarted, fast)
        if self.analytics is not None:
            self.analytics.retain(config.sources, restarted, fast)
        return Pipeline(sources, detectors, self.publisher, self.metrics, self.frame_signal,
                        config.daemon.max_frame_age_seconds, self.result_hook, config.model.batch_window_seconds,
                        self.trackers, first_sequence, self.analytics, self.sinks)

    def update_analytics(self, sources: Sequence[SourceConfig]) -> None:
        """A reload's new zones and lines of running sources, taken up at their next frame."""
        if self.analytics is not None:
            self.analytics.configure(sources)

    def source_fps(self, source_id: str) -> float:
        """A source's frame rate, for the analytics' clock of a source read flat out (0: not known)."""
        source = next((s.config for s in self.sources if s.source_id == source_id), None)
        if source is None:
            return 0.0
        if source.fps:
            return source.fps
        if source.kind == "synthetic":
            return SYNTHETIC_FPS
        if source.kind == "file":
            import cv2  # noqa: PLC0415 - once per source read flat out

            capture = cv2.VideoCapture(source.url)
            try:
                return float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            finally:
                capture.release()
        return 0.0

    def release_source(self, source: CaptureSource) -> None:
        """A source that left on a reload (thread joined): its last untaken frame, then its pinned buffers."""
        leftover = source.slot.take(0)
        if leftover is not None:
            leftover.release()
        pool = self.source_pools.pop(source, None)
        if pool is not None:
            self.frame_pools.remove(pool)
            pool.close()

    def count_reload(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.config_reloads.labels(result).inc()

    def wait_for_subscriber(self, timeout_seconds: float) -> bool:
        """Hold until a subscriber has subscribed (True) or ``timeout_seconds`` passed (False)."""
        if self.publisher is None:
            raise RuntimeError("publisher not started")
        deadline = time.monotonic() + timeout_seconds
        while self.publisher.poll_subscriptions(0.02) == 0:
            if time.monotonic() >= deadline:
                return False
        return True

    def start_sources(self) -> None:
        # Everything start-up made (model, engine, torch or TensorRT, modules) moves out of the garbage
        # collector's reach: a full collection then scans only what the running daemon allocates, and
        # no longer pauses the pipeline for tens of milliseconds at many cameras (docs/gpu.md).
        gc.freeze()
        for source in self.sources:
            source.start()
        self.ready.set()
        log.info("streamd %s publishing on %s, %d source(s)", __version__, self.publisher.bound_endpoint,
                 len(self.sources))

    def addresses(self) -> dict[str, str]:
        """Where this daemon serves its metrics and preview (the READY=1 a supervisor reads)."""
        found = {}
        if self.http is not None:
            found["STREAMD_METRICS"] = f"{self.http.host}:{self.http.port}"
        if self.preview is not None:
            found["STREAMD_PREVIEW"] = f"{self.preview.host}:{self.preview.port}"
        return found

    def publisher_endpoint(self) -> str:
        if self.publisher is None:
            raise RuntimeError("publisher not started")
        return self.publisher.bound_endpoint

    def health(self) -> tuple[bool, dict]:
        pipeline = self.pipeline
        alive = bool(pipeline and pipeline.alive and pipeline.error is None
                     and time.monotonic() - pipeline.heartbeat_monotonic < HEARTBEAT_LIMIT_SECONDS)
        return alive, {"pipeline": "alive" if alive else "dead"}

    def readiness(self) -> tuple[bool, dict]:
        alive, _ = self.health()
        states = {s.source_id: s.state for s in self.sources}
        ready = self.ready.is_set() and alive and any(state == "streaming" for state in states.values())
        return ready, {"sources": states}

    def stop(self) -> None:
        self.stop_sources()
        if self.pipeline is not None:
            self.pipeline.stop(STOP_TIMEOUT_SECONDS)
        # Frame pools last: their memory may be read by the detector until it is closed.
        # Sinks after the pipeline (nothing more comes) and before the rest: they send what they hold.
        for part in (self.preview, self.sinks, self.publisher, self.http, *self.detectors, *self.frame_pools):
            if part is not None:
                try:
                    part.close()
                except Exception:  # keep tearing down the rest
                    log.exception("closing %s failed", type(part).__name__)
        gc.unfreeze()  # what start_sources froze is collectable again (services started one after another)

    def stop_sources(self) -> None:
        """Stop every source in parallel against one deadline. Joined one after another, each frozen
        camera would add its read timeout, and a few frozen cameras would reach the units'
        TimeoutStopSec=10."""
        for source in self.sources:
            source.request_stop()
        budget_seconds = max((s.join_timeout(STOP_TIMEOUT_SECONDS) for s in self.sources), default=0.0)
        deadline = time.monotonic() + budget_seconds
        for source in self.sources:
            if not source.join(deadline - time.monotonic()):
                log.warning("source %s still running %.1f s after stop; abandoned", source.source_id,
                            budget_seconds)


def _nvdec_sources(config: Config) -> list[SourceConfig]:
    return [source for source in config.sources if source.decoder == "nvdec"]


def preflight(config: Config) -> None:
    """Checks before anything starts: every nvdec source's package and GPU (``model.device``), so a
    missing PyNvVideoCodec or GPU is one error naming the source (SourceError: exit 1), not a source
    that retries for ever."""
    sources = _nvdec_sources(config)
    if sources:
        from streamd.sources.nvdec import preflight as nvdec_preflight  # noqa: PLC0415

        for source in sources:
            nvdec_preflight(source, config.model.device)
    jetson_sources = [source for source in config.sources if source.decoder == "jetson"]
    if jetson_sources:
        from streamd.sources.gstreamer import preflight as gstreamer_preflight  # noqa: PLC0415

        for source in jetson_sources:
            gstreamer_preflight(source)


def check_device_frames(config: Config, detector: Detector) -> None:
    """nvdec frames stay in GPU memory: the detector must read them (backend "auto" may have chosen
    ONNX Runtime on this machine; the config check covers the explicit backends)."""
    sources = _nvdec_sources(config)
    if sources and not getattr(detector, "reads_device_frames", False):
        raise ConfigError(f"sources[{config.sources.index(sources[0])}].decoder",
                          f"'nvdec' keeps frames in GPU memory, but the model runs on {type(detector).__name__}, "
                          "which cannot read them: use the GPU path (model.backend = \"tensorrt\", "
                          "model.max_batch >= 2) or decoder = \"opencv\"")


def run_service(config: Config, stop: threading.Event, notifier: SystemdNotifier | None = None,
                reload_requested: threading.Event | None = None,
                loader: Callable[[str], Config] | None = None,
                prebuilt: tuple[ModelConfig, list[Detector]] | None = None) -> int:
    """Run until ``stop`` is set or every source has ended. Exit status: 0 ok, 1 pipeline failure.
    ``reload_requested`` (set by SIGHUP) re-reads the config file (streamd.daemon.reload), through
    ``loader`` when given (a worker reads its share from the supervisor's spec file)."""
    notifier = notifier or SystemdNotifier()
    service = Service(config, prebuilt=prebuilt)
    started = False
    try:
        service.start()
        started = True
        notifier.ready(f"{len(service.sources)} source(s)", **service.addresses())
        if service.pipeline is None:
            raise RuntimeError("service started without a pipeline")
        status = StatusReporter(service.registry, lambda: {s.source_id: s.state for s in service.sources},
                                config.daemon.status_interval_seconds)
        reloader = Reloader(service) if loader is None else Reloader(service, loader)
        tick_seconds = min(1.0, notifier.watchdog_seconds / 2) if notifier.watchdog_seconds else 1.0
        while not stop.wait(tick_seconds):
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                notifier.reloading()
                reloader.reload()
                notifier.ready(f"{len(service.sources)} source(s)")
            pipeline = service.pipeline  # a reload replaces it
            if pipeline.finished.is_set():
                break
            if service.health()[0]:
                # Only a pipeline that is still looking for frames keeps the watchdog quiet.
                notifier.watchdog()
            status.tick()
        if service.pipeline.error is not None:
            log.error("stopping: the pipeline failed: %s", service.pipeline.error)
            return 1
        return 0
    finally:
        notifier.stopping()
        service.stop()
        if started:  # a daemon that failed to start says why instead (the caller prints the error)
            log.info("streamd stopped")
