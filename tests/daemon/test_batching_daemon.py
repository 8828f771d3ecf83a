"""Cross-stream batching through the daemon's real parts: config from TOML, yolox_nano on ONNX Runtime
(its fixed batch of 1 made dynamic), capture threads, the pipeline, a ZeroMQ subscriber."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamd.config.load import parse_config
from streamd.config.schema import Config
from streamd.daemon.service import Service
from streamd.publish.subscriber import Subscriber
from tests.support import COCO_CLASSES, DOG, VTEST, YOLOX_NANO, free_port, require_shared

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

FRAMES_PER_SOURCE = 16


def config(sources: str, max_batch: int, publish_port: int, window_seconds: float = 0.02) -> Config:
    text = f"""
{sources}
[model]
path = "{YOLOX_NANO}"
classes = "{COCO_CLASSES}"
max_batch = {max_batch}
batch_window_seconds = {window_seconds}
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
[metrics]
enabled = false
"""
    return parse_config(tomllib.loads(text), Path.cwd())


# Three different scenes and two frame sizes (768x576, 640x480) in one batch; every frame read flat
# out without drops (pace "fast"), so every frame must be published.
FINITE_SOURCES = f"""
[[sources]]
id = "street"
kind = "file"
url = "{VTEST}"
pace = "fast"
max_frames = {FRAMES_PER_SOURCE}
[[sources]]
id = "dog"
kind = "image"
url = "{DOG}"
pace = "fast"
loop = true
max_frames = {FRAMES_PER_SOURCE}
[[sources]]
id = "shapes"
kind = "synthetic"
pace = "fast"
seed = 3
max_frames = {FRAMES_PER_SOURCE}
"""


def run_to_the_end(cfg: Config, expected: int, timeout_seconds: float = 120.0) -> tuple[list[dict[str, Any]], Service]:
    """Start the service, subscribe before the sources start, receive until every frame came."""
    service = Service(cfg)
    service.start_detector()
    messages: list[dict[str, Any]] = []
    try:
        with Subscriber(service.publisher_endpoint()) as subscriber:
            assert service.wait_for_subscriber(10.0)
            service.start_sources()
            deadline = time.monotonic() + timeout_seconds
            while len(messages) < expected and time.monotonic() < deadline:
                message = subscriber.receive(1.0)
                if message is not None:
                    messages.append(message)
    finally:
        service.stop()
    return messages, service


def by_source(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in messages:
        grouped[message["source"]].append(message)
    return grouped


def same_detections(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Same classes, boxes within 1 px, scores within 0.01 (in any order)."""
    if len(a) != len(b):
        return False
    unmatched = list(b)
    for detection in a:
        for candidate in unmatched:
            if (candidate["label"] == detection["label"]
                    and max(abs(p - q) for p, q in zip(candidate["box"], detection["box"])) <= 1.0
                    and abs(candidate["score"] - detection["score"]) <= 0.01):
                unmatched.remove(candidate)
                break
        else:
            return False
    return True


def test_batched_daemon_publishes_every_frame_in_order_with_unbatched_detections() -> None:
    require_shared(YOLOX_NANO, COCO_CLASSES, VTEST, DOG)
    expected = 3 * FRAMES_PER_SOURCE
    batched, service = run_to_the_end(config(FINITE_SOURCES, 4, free_port()), expected)
    registry = service.registry
    assert service.pipeline is not None and service.pipeline.max_batch == 4
    assert len(batched) == expected
    sequences = [m["sequence"] for m in batched]
    assert sequences == sorted(sequences)
    grouped = by_source(batched)
    for source in ("street", "dog", "shapes"):
        assert [m["frame_index"] for m in grouped[source]] == list(range(FRAMES_PER_SOURCE)), source
    # Frames really went through in batches: most frames shared their batch with another.
    batches = registry.get_sample_value("streamd_batch_size_count")
    frames = registry.get_sample_value("streamd_batch_size_sum")
    alone = registry.get_sample_value("streamd_batch_size_bucket", {"le": "1.0"})
    assert frames == expected and batches < expected
    assert frames - alone >= expected / 2, (batches, alone)

    unbatched, service = run_to_the_end(config(FINITE_SOURCES, 1, free_port()), expected)
    assert service.pipeline is not None and service.pipeline.max_batch == 1
    assert service.registry.get_sample_value("streamd_batch_size_sum") == expected
    assert service.registry.get_sample_value("streamd_batch_size_count") == expected
    reference = {(m["source"], m["frame_index"]): m for m in unbatched}
    assert len(reference) == expected
    for message in batched:
        twin = reference[(message["source"], message["frame_index"])]
        assert message["frame_size"] == twin["frame_size"]
        assert same_detections(message["detections"], twin["detections"]), (message, twin)
    assert any(m["detections"] for m in batched if m["source"] == "street")
    assert any(m["detections"] for m in batched if m["source"] == "dog")


def test_batches_never_wait_for_sources_that_are_not_streaming() -> None:
    """A live camera beside an unreachable RTSP camera and a file that has ended: each batch closes
    as soon as it holds the live frame, however wide the window cap."""
    require_shared(YOLOX_NANO, COCO_CLASSES, VTEST, DOG)
    sources = f"""
[[sources]]
id = "live"
kind = "image"
url = "{DOG}"
loop = true
fps = 20
[[sources]]
id = "unreachable"
kind = "rtsp"
url = "rtsp://127.0.0.1:{free_port()}/nothing"
open_timeout_seconds = 1
[[sources]]
id = "ended"
kind = "file"
url = "{VTEST}"
max_frames = 2
"""
    cfg = config(sources, 4, free_port(), window_seconds=1.0)
    service = Service(cfg)
    try:
        service.start()
        states = {s.source_id: s for s in service.sources}
        deadline = time.monotonic() + 60
        while not states["ended"].finished.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)  # while "ended" still streams, batches rightly wait for its frames
        assert states["ended"].finished.is_set()
        registry = service.registry
        batches_before = registry.get_sample_value("streamd_batch_size_count")
        quick_before = registry.get_sample_value("streamd_batch_wait_seconds_bucket", {"le": "0.01"})
        with Subscriber(service.publisher_endpoint(), topics=("live",)) as subscriber:
            received = 0
            while received < 30 and time.monotonic() < deadline:
                received += subscriber.receive(1.0) is not None
        assert received >= 30
        batches = registry.get_sample_value("streamd_batch_size_count") - batches_before
        quick = registry.get_sample_value("streamd_batch_wait_seconds_bucket", {"le": "0.01"}) - quick_before
        assert batches >= 20  # a batch closed before the snapshot may be among the 30 received
        # Waiting for the other two would take the window (1 s capped, the live camera's 50 ms period
        # minus the batch time derived) on every batch. The median, not 90 %, is asserted: on a busy
        # 2-core CI machine a few waits overrun 10 ms from scheduling alone (26 of 30 seen once).
        assert quick >= 0.5 * batches, (quick, batches)
        assert states["unreachable"].state != "streaming"
    finally:
        service.stop()


@pytest.mark.parametrize("max_batch", [0, -2])
def test_max_batch_must_be_positive(max_batch: int) -> None:
    require_shared(YOLOX_NANO, COCO_CLASSES, VTEST, DOG)
    from streamd.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="model.max_batch"):
        config(FINITE_SOURCES, max_batch, free_port())
