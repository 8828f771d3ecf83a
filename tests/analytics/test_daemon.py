"""Through the daemon: a synthetic scene with lines and a zone, read frame by frame; a ZeroMQ subscriber
receives the events/<source> messages; the line counts equal the truth derived from the scene's own
object paths, and SIGHUP changes the zones and lines without restarting the source."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from streamd.evaluation.count_accuracy import true_crossings
from streamd.publish.subscriber import Subscriber
from tests.support import free_port, http_get, wait_for_http

FRAMES = 300
DEADLINE_SECONDS = 90.0
WIDTH, HEIGHT = 640, 480
# (seed, line start, line end): scenes whose tracks keep their ids across the line (no switch).
SCENES = [(3, (0.0, 240.0), (640.0, 240.0)), (7, (320.0, 0.0), (320.0, 480.0))]


def config_text(seed: int, start: tuple, end: tuple, publish_port: int, metrics_port: int, line_name: str = "line",
                frames: int = FRAMES, pace: str = "fast") -> str:
    return f"""
[[sources]]
id = "scene"
kind = "synthetic"
seed = {seed}
pace = "{pace}"
max_frames = {frames}
fps = 10

[[sources.lines]]
name = "{line_name}"
points = [[{start[0]}, {start[1]}], [{end[0]}, {end[1]}]]

[[sources.zones]]
name = "left"
polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
units = "fractions"

[model]
path = "builtin:synthetic-shapes"

[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
send_hwm = 100000
wait_for_subscriber_seconds = 30

[metrics]
bind = "127.0.0.1:{metrics_port}"

[daemon]
status_interval_seconds = 0
"""


def receive_all(subscriber: Subscriber, done: callable, deadline: float) -> list[dict]:
    messages = []
    while time.monotonic() < deadline and not done(messages):
        message = subscriber.receive(0.2)
        if message is not None:
            messages.append(message)
    return messages


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if found == wanted:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(("seed", "start", "end"), SCENES)
def test_line_counts_through_the_daemon_equal_the_truth(daemon_factory, seed: int, start: tuple, end: tuple) -> None:
    publish_port, metrics_port = free_port(), free_port()
    daemon = daemon_factory(config_text(seed, start, end, publish_port, metrics_port), name=f"analytics{seed}")
    with Subscriber(f"tcp://127.0.0.1:{publish_port}", ("events/scene", "scene")) as subscriber:
        messages = receive_all(subscriber, lambda m: sum("detections" in x for x in m) >= FRAMES,
                               time.monotonic() + DEADLINE_SECONDS)
        _, metrics_text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    log = daemon.log()
    detections = [m for m in messages if "detections" in m]
    events = [e for m in messages if "events" in m for e in m["events"]]
    assert len(detections) == FRAMES, log
    assert all("zones" in d for m in detections for d in m["detections"])
    crossings = {"in": 0, "out": 0}
    for event in events:
        if event["type"] == "line_cross":
            crossings[event["direction"]] += 1
    truth = true_crossings(seed, FRAMES, start, end)
    assert crossings == truth and sum(truth.values()) >= 2, log
    counted = {direction: sum(metric(metrics_text, "streamd_line_crossings_total", source="scene", line="line",
                                     direction=direction, **{"class": label})
                              for label in ("circle", "square", "triangle", "cross"))
               for direction in ("in", "out")}
    assert counted == truth
    sequences = [m["source_sequence"] for m in messages if "events" in m]
    assert sequences == list(range(1, len(sequences) + 1))
    # Each events message follows its frame's detections.
    order = [(m["frame_index"], "events" in m) for m in messages]
    assert all(order.index((frame, False)) < position for position, (frame, is_events) in enumerate(order)
               if is_events)


def test_sighup_changes_lines_without_restarting_the_source(daemon_factory, tmp_path: Path) -> None:
    publish_port, metrics_port = free_port(), free_port()
    frames = 100_000
    text = config_text(7, (320.0, 0.0), (320.0, 480.0), publish_port, metrics_port, frames=frames, pace="native")
    daemon = daemon_factory(text, name="analytics-reload")
    config_path = tmp_path / "analytics-reload.toml"  # where daemon_factory wrote it
    wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", DEADLINE_SECONDS)
    with Subscriber(f"tcp://127.0.0.1:{publish_port}", ("scene",)) as subscriber:
        before = receive_all(subscriber, lambda m: len(m) >= 10, time.monotonic() + DEADLINE_SECONDS)
        config_path.write_text(text.replace('name = "line"', 'name = "moved"').replace(
            "[[320.0, 0.0], [320.0, 480.0]]", "[[300.0, 0.0], [300.0, 480.0]]"))
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            _, metrics_text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            if metric(metrics_text, "streamd_config_reloads_total", result="applied") >= 1:
                break
            time.sleep(0.1)
        after = receive_all(subscriber, lambda m: len(m) >= 20, time.monotonic() + DEADLINE_SECONDS)
    log = daemon.log()
    assert "zones or lines updated scene" in log, log
    indices = [m["frame_index"] for m in before + after]
    assert indices == sorted(indices) and indices[-1] > 25, log  # not restarted: the frame index runs on
