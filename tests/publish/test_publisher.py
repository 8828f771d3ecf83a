"""Publishing never blocks the pipeline: a subscriber that never reads costs counted drops."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from prometheus_client.utils import floatToGoString

from streamd.config import parse_config
from streamd.daemon.service import Service
from streamd.metrics.definitions import LATENCY_BUCKETS
from streamd.publish.message import decode, encode
from streamd.publish.publisher import Publisher, shared_context
from streamd.publish.subscriber import Subscriber
from streamd.yolox.detections import Detections

FRAMES = 4000


def fast_config(model: Path, image: Path, endpoint: str = "tcp://127.0.0.1:*", send_hwm: int = 20):
    return parse_config({
        "sources": [{"id": "still", "kind": "image", "url": str(image), "loop": True, "pace": "fast",
                     "max_frames": FRAMES}],
        "model": {"path": str(model)},
        "publish": {"endpoint": endpoint, "send_hwm": send_hwm},
        "metrics": {"enabled": False},
    })


def run_until_finished(service: Service, timeout: float = 120.0) -> None:
    service.start_sources()
    assert service.pipeline is not None
    assert service.pipeline.finished.wait(timeout), "pipeline did not finish: blocked on a subscriber?"


def publish_p99_seconds(service: Service) -> float:
    """Upper bound of the histogram bucket that holds the publish stage's 99th percentile."""
    labels = {"source": "still", "stage": "publish"}
    total = service.registry.get_sample_value("streamd_stage_seconds_count", labels)
    for bound in LATENCY_BUCKETS:
        bucket = {**labels, "le": floatToGoString(bound)}
        below = service.registry.get_sample_value("streamd_stage_seconds_bucket", bucket)
        if below >= 0.99 * total:
            return bound
    return math.inf


def run_timed(service: Service) -> float:
    started = time.monotonic()
    run_until_finished(service)
    return time.monotonic() - started


def test_subscriber_that_never_reads_costs_counted_drops_not_progress(tiny_model: Path, tiny_image: Path) -> None:
    """A subscriber that never reads, against a run with no subscriber at all: the same frames go
    through in about the same time, and the publish stage's p99 stays within 10 ms of the run
    without one (a connected peer costs ZeroMQ a little more per message than none). A blocking
    send would instead hang at the first full queue."""
    alone = Service(fast_config(tiny_model, tiny_image))
    alone.start_detector()
    try:
        alone_seconds = run_timed(alone)
    finally:
        alone.stop()

    service = Service(fast_config(tiny_model, tiny_image))
    service.start_detector()
    stuck = shared_context().socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 5)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.connect(service.publisher_endpoint())
    try:
        assert service.wait_for_subscriber(5.0)
        stuck_seconds = run_timed(service)
        processed = service.registry.get_sample_value("streamd_frames_processed_total", {"source": "still"})
        dropped = service.registry.get_sample_value("streamd_messages_dropped_total")
        published = service.registry.get_sample_value("streamd_messages_published_total")
        assert processed == FRAMES  # every frame went through the pipeline
        assert dropped > 0  # the stuck subscriber's queue filled up...
        assert dropped + published == FRAMES  # ...and every message is accounted for
    finally:
        stuck.close(0)
        service.stop()
    alone_p99, stuck_p99 = publish_p99_seconds(alone), publish_p99_seconds(service)
    print(f"{FRAMES} frames: no subscriber {alone_seconds:.2f} s (publish p99 <= {alone_p99 * 1000:g} ms), "
          f"stuck subscriber {stuck_seconds:.2f} s (publish p99 <= {stuck_p99 * 1000:g} ms)")
    assert stuck_p99 <= alone_p99 + 0.010
    assert stuck_seconds < 2 * alone_seconds + 2.0  # generous for a busy 2-core machine


def test_reading_subscriber_gets_every_message_in_order(tiny_model: Path, tiny_image: Path) -> None:
    service = Service(fast_config(tiny_model, tiny_image, send_hwm=100000))
    service.start_detector()
    received: list[dict] = []
    subscriber = Subscriber(service.publisher_endpoint())
    reader = threading.Thread(target=lambda: received.extend(subscriber.messages(idle_timeout_seconds=3.0)))
    try:
        assert service.wait_for_subscriber(5.0)
        reader.start()
        run_until_finished(service)
        reader.join(30)
    finally:
        subscriber.close()
        service.stop()
    assert [m["frame_index"] for m in received] == list(range(FRAMES))
    assert all(len(m["detections"]) == 12 for m in received)
    assert {d["label"] for d in received[0]["detections"]} == {"a", "b", "c"}


def test_bind_conflict_is_a_clear_error() -> None:
    first = Publisher("tcp://127.0.0.1:*", 10)
    try:
        try:
            Publisher(first.bound_endpoint, 10)
        except Exception as error:  # noqa: BLE001 - asserting on the message
            assert "cannot bind publisher" in str(error) and "publish.endpoint" in str(error)
        else:
            raise AssertionError("binding the same endpoint twice must fail")
    finally:
        first.close()


def test_message_round_trip() -> None:
    detections = Detections(np.array([[1.04, 2.0, 30.0, 40.0]], np.float32), np.array([0.91234], np.float32),
                            np.array([1], np.int32))
    parts = encode("cam", 7, 9, 100.0, 100.5, 640, 480, "m", detections, ("a", "b"))
    message = decode(parts)
    assert parts[0] == b"cam"
    assert message["detections"] == [{"class_id": 1, "label": "b", "score": 0.9123, "box": [1.0, 2.0, 30.0, 40.0]}]
    assert message["frame_size"] == [640, 480] and message["sequence"] == 9
