"""The daemon as users run it: a subprocess, a real ZeroMQ subscriber on 127.0.0.1, real HTTP
scrapes, SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from streamd.publish.message import SCHEMA
from streamd.publish.subscriber import Subscriber
from tests.support import COCO_CLASSES, DOG, VTEST, YOLOX_NANO, free_port, http_get, require_shared, wait_for_http


def yolox_config(publish_port: int, metrics_port: int) -> str:
    return f"""
[[sources]]
id = "street"
kind = "file"
url = "{VTEST}"
loop = true

[[sources]]
id = "dog"
kind = "image"
url = "{DOG}"
loop = true
fps = 2

[model]
path = "{YOLOX_NANO}"
classes = "{COCO_CLASSES}"

[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"

[metrics]
bind = "127.0.0.1:{metrics_port}"
"""


@pytest.fixture
def running_daemon(daemon_factory):
    require_shared(YOLOX_NANO, COCO_CLASSES, VTEST, DOG)
    publish_port, metrics_port = free_port(), free_port()
    daemon = daemon_factory(yolox_config(publish_port, metrics_port))
    status, body = wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz")
    assert status == 200 and '"pipeline": "alive"' in body, (status, body, daemon.log())
    return daemon, publish_port, metrics_port


def test_subscriber_receives_well_formed_detections(running_daemon) -> None:
    daemon, publish_port, _ = running_daemon
    with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
        messages = subscriber.collect(4.0)
    sources = {m["source"] for m in messages}
    assert sources == {"street", "dog"}, daemon.log()
    street = [m for m in messages if m["source"] == "street"]
    assert len(street) >= 10  # 10 fps file
    for message in messages:
        assert message["schema"] == SCHEMA
        assert message["model"] == "yolox_nano"
        assert message["publish_time"] >= message["capture_time"]
        assert message["frame_size"] == [768, 576]  # vtest.avi and dog.jpg happen to share a size
    indices = [m["frame_index"] for m in street]
    assert indices == sorted(indices)
    sequences = [m["sequence"] for m in messages]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    people = [d for m in street for d in m["detections"] if d["label"] == "person"]
    assert people, "vtest.avi is full of pedestrians"
    for detection in people:
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
        assert 0.3 < detection["score"] <= 1.0


# The official YOLOX demo's published scores for yolox_nano on dog.jpg.
PUBLISHED_DOG_SCORES = {"dog": 0.86, "bicycle": 0.80, "car": 0.80, "truck": 0.31}


def reference_best_detections(image_path: Path, model_path: Path, names: list[str]) -> dict[str, tuple]:
    """(score, box in image pixels) of the best cell per class, from plain ONNX Runtime and a
    decode written here, independent of streamd's: the official demo's preprocessing (BGR 0-255,
    resized by r = min(416 / h, 416 / w) into the top left of a 114-grey canvas), box = (offset +
    grid cell) x stride, size = exp(log size) x stride, score = objectness x class probability. The
    best cell of a class is the box class-aware NMS keeps first."""
    import cv2  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[2]
    image = cv2.imread(str(image_path))
    height, width = image.shape[:2]
    ratio = min(size / height, size / width)
    resized = cv2.resize(image, (int(width * ratio), int(height * ratio)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    raw = session.run(None, {session.get_inputs()[0].name: canvas.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
    cells, strides = [], []
    for stride in (8, 16, 32):
        side = size // stride
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((side * side, 1), stride))
    grid, stride = np.concatenate(cells), np.concatenate(strides)
    centre, extent = (raw[:, :2] + grid) * stride, np.exp(raw[:, 2:4]) * stride
    boxes = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1) / ratio
    scores = raw[:, 4:5] * raw[:, 5:]
    best = {}
    for class_id in np.flatnonzero(scores.max(axis=0) > 0.3):
        cell = int(scores[:, class_id].argmax())
        best[names[class_id]] = (float(scores[cell, class_id]), boxes[cell])
    return best


def test_dog_image_detections_in_original_pixels(running_daemon) -> None:
    _, publish_port, _ = running_daemon
    with Subscriber(f"tcp://127.0.0.1:{publish_port}", topics=("dog",)) as subscriber:
        message = subscriber.receive(10.0)
    assert message is not None
    names = [line.strip() for line in COCO_CLASSES.read_text().splitlines() if line.strip()]
    reference = reference_best_detections(DOG, YOLOX_NANO, names)
    # The reference decode agrees with the published numbers, so it is a fair yardstick.
    assert {label: round(score, 2) for label, (score, _) in reference.items()} == PUBLISHED_DOG_SCORES
    # The best detection per label (a dict built in ascending score order keeps the highest).
    found = {d["label"]: d for d in sorted(message["detections"], key=lambda d: d["score"])}
    assert set(found) == set(reference), message["detections"]
    for label, (score, box) in reference.items():
        assert found[label]["score"] == pytest.approx(score, abs=0.01), label
        # In dog.jpg's 768x576 pixels, not the 416x416 network input's.
        np.testing.assert_allclose(found[label]["box"], box, atol=3.0, err_msg=label)


def test_metrics_scrape_shows_filled_histograms(running_daemon) -> None:
    daemon, _, metrics_port = running_daemon
    time.sleep(3.0)
    status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    samples = parse_samples(text)
    for stage in ("capture_wait", "preprocess", "inference", "decode", "publish"):
        count = samples[f'streamd_stage_seconds_count{{source="street",stage="{stage}"}}']
        assert count >= 10, (stage, daemon.log())
        assert samples[f'streamd_stage_seconds_sum{{source="street",stage="{stage}"}}'] > 0
    assert samples['streamd_frame_age_seconds_count{source="street"}'] >= 10
    assert samples['streamd_stage_seconds_bucket{le="2.0",source="street",stage="inference"}'] >= 10
    assert samples['streamd_frames_processed_total{source="street"}'] >= 10
    assert samples['streamd_source_up{source="street"}'] == 1
    assert samples['streamd_source_state{source="street",state="streaming"}'] == 1
    assert 'streamd_frames_dropped_total{reason="superseded",source="street"}' in samples
    assert "streamd_messages_dropped_total" in samples
    status, body = http_get(f"http://127.0.0.1:{metrics_port}/readyz")
    assert status == 200 and '"street": "streaming"' in body
    assert http_get(f"http://127.0.0.1:{metrics_port}/nope")[0] == 404


def test_sigterm_stops_cleanly_within_5_seconds(running_daemon) -> None:
    daemon, _, metrics_port = running_daemon
    time.sleep(1.0)
    status, seconds = daemon.terminate(timeout=10)
    assert status == 0, daemon.log()
    assert seconds < 5.0
    assert "streamd stopped" in daemon.log()
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=1.0)


def parse_samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_finite_sources_end_the_daemon(daemon_factory, tiny_model: Path, tiny_image: Path) -> None:
    """A one-image source without loop: the daemon publishes it and exits 0 by itself."""
    publish_port = free_port()
    daemon = daemon_factory(f"""
[[sources]]
id = "still"
kind = "image"
url = "{tiny_image}"
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
[metrics]
enabled = false
""")
    assert daemon.process.wait(30) == 0, daemon.log()
    assert "finished after 1 frame\n" in daemon.log()  # singular
