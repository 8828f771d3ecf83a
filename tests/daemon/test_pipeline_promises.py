"""The latency promises (README, docs/sources.md) through the real pipeline (capture thread, slot, pipeline worker, ONNX
Runtime, ZeroMQ publisher), in this process so the detector can be slowed down: frames too old
are dropped and counted, and with inference slower than the source the frame age stays bounded."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from streamd.config import parse_config
from streamd.daemon.service import Service

INFERENCE_SECONDS = 0.1  # the slowed detector: 10 fps at best


def _config(model: Path, image: Path, source: dict, max_frame_age_seconds: float = 0.0):
    return parse_config({
        "sources": [{"id": "still", "kind": "image", "url": str(image), "loop": True, **source}],
        "model": {"path": str(model), "workers": 1},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
        "metrics": {"enabled": False},
        "daemon": {"max_frame_age_seconds": max_frame_age_seconds},
    })


def _slow_down(service: Service, seconds: float) -> None:
    """Every detector call takes ``seconds`` longer (patched before any frame flows)."""
    for detector in service.detectors:
        real_submit = detector.submit

        def submit(frame, real_submit=real_submit):
            time.sleep(seconds)
            return real_submit(frame)

        detector.submit = submit


def _sample(service: Service, name: str, **labels: str) -> float:
    return service.registry.get_sample_value(name, labels) or 0.0


def test_too_old_frames_are_dropped_and_counted(tiny_model: Path, tiny_image: Path) -> None:
    """A lossless source read flat out (pace = "fast") waits in the slot while inference runs, so
    every frame that waited through a whole 0.1 s inference is older than the 0.05 s limit when
    taken: it is dropped (reason too_old), never processed; a frame put in right after a take is
    young and is processed. Every frame is accounted for."""
    frames = 40
    limit_seconds = 0.05
    service = Service(_config(tiny_model, tiny_image, {"pace": "fast", "max_frames": frames}, limit_seconds))
    service.start_detector()
    try:
        _slow_down(service, INFERENCE_SECONDS)
        service.start_sources()
        assert service.pipeline is not None and service.pipeline.finished.wait(60)
    finally:
        service.stop()
    too_old = _sample(service, "streamd_frames_dropped_total", source="still", reason="too_old")
    processed = _sample(service, "streamd_frames_processed_total", source="still")
    print(f"{frames} frames: {processed:.0f} processed, {too_old:.0f} dropped as too old")
    assert too_old >= frames // 4 and processed >= 1
    assert processed + too_old == _sample(service, "streamd_frames_captured_total", source="still") == frames
    # What was processed was young when taken: every capture_wait observation is in the buckets
    # up to the limit (0.05 s is a bucket bound).
    waited = {"source": "still", "stage": "capture_wait"}
    assert _sample(service, "streamd_stage_seconds_bucket", **waited, le=str(limit_seconds)) == processed


def test_frame_age_stays_bounded_with_inference_slower_than_the_source(tiny_model: Path, tiny_image: Path) -> None:
    """A 30 fps source, a 10 fps detector, 6 s: the age at publish stays near one inference plus
    one frame interval (99th percentile under 2 x inference + one interval, as for RTSP in
    tests/sources/test_rtsp_latest_frame.py), it does not grow, and the superseded frames are
    counted. A queue instead of the latest-frame slot would make the age grow by 0.2 s a second."""
    fps = 30
    run_seconds = 6.0
    ages: list[tuple[float, float]] = []  # (time.monotonic() at publish, frame age)
    lock = threading.Lock()

    def record(_result, frame_age_seconds: float) -> None:
        with lock:
            ages.append((time.monotonic(), frame_age_seconds))

    service = Service(_config(tiny_model, tiny_image, {"fps": fps}), on_result=record)
    service.start_detector()
    try:
        _slow_down(service, INFERENCE_SECONDS)
        service.start_sources()
        started = time.monotonic()
        time.sleep(run_seconds)
    finally:
        service.stop()
    steady = sorted(age for t, age in ages if t - started > 1.0)
    early = statistics.median(age for t, age in ages if 1.0 < t - started < 3.0)
    late = statistics.median(age for t, age in ages if t - started > run_seconds - 2.0)
    p99 = steady[int(len(steady) * 0.99)]
    superseded = _sample(service, "streamd_frames_dropped_total", source="still", reason="superseded")
    print(f"{len(ages)} published, age p50 {statistics.median(steady) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {steady[-1] * 1000:.0f} ms; median drift {(late - early) * 1000:+.0f} ms; {superseded:.0f} superseded")
    assert len(steady) >= 20
    assert p99 < 2 * INFERENCE_SECONDS + 1.0 / fps
    assert steady[-1] < 1.0
    assert late - early < 0.05
    assert superseded > 0.5 * (fps - 1 / INFERENCE_SECONDS) * run_seconds  # about 20 a second
    captured = _sample(service, "streamd_frames_captured_total", source="still")
    processed = _sample(service, "streamd_frames_processed_total", source="still")
    assert captured - processed - superseded <= 2  # at most one in the slot, one in flight at stop
