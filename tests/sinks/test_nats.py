"""The NATS sink against a real ``nats-server -js``: a daemon on two synthetic scenes with a line and a zone
fills a JetStream stream with every message, in order per source, each once (checked by stream sequence
and message id). The server SIGKILLed mid-stream and started again: nothing lost that the buffer holds,
and beyond it exactly the dropped messages (counted) missing. Acknowledgements lost while the server
had stored the messages: sent again, stored once. With ``buffer_path``, a restart or a crash during an outage
loses nothing that reached the disk. ``streamd subscribe --nats`` reads the stream."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamd.config.schema import SinkConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.publish.subscriber import Subscriber
from streamd.sinks import Sinks
from tests.sinks.nats_server import NatsServer, Stored, nats_server, read_stream, require_nats  # noqa: F401
from tests.support import REPO, free_port, http_get

NODE = "testnode"


def config_text(server_url: str, publish_port: int, metrics_port: int, *, frames: int, sources: tuple[str, ...],
                pace: str = "fast", fps: int = 20, carries: str = '["events", "detections", "counts"]',
                buffer_messages: int = 10000, wait_for_subscriber: float = 0.0, extra: str = "") -> str:
    text = ""
    for index, source in enumerate(sources):
        text += f"""
[[sources]]
id = "{source}"
kind = "synthetic"
seed = {3 + index}
pace = "{pace}"
max_frames = {frames}
fps = {fps}

[[sources.lines]]
name = "line"
points = [[0, 240], [640, 240]]

[[sources.zones]]
name = "left"
polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
units = "fractions"
max_objects = 1
hold_seconds = 0.5
"""
    return text + f"""
[model]
path = "builtin:synthetic-shapes"

[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
send_hwm = 100000
wait_for_subscriber_seconds = {wait_for_subscriber}

[metrics]
bind = "127.0.0.1:{metrics_port}"

[daemon]
status_interval_seconds = 0
workers = 1

[[sinks]]
kind = "nats"
name = "fleet"
servers = ["{server_url}"]
node = "{NODE}"
carries = {carries}
buffer_messages = {buffer_messages}
keepalive_seconds = 5
{extra}
"""


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def stopped_totals(log: str) -> tuple[int, int]:
    match = re.search(r"sink fleet: stopped; (\d+) message\(s\) sent, (\d+) dropped", log)
    assert match, log[-3000:]
    return int(match[1]), int(match[2])


def assert_stored_once(stored: list[Stored]) -> None:
    """The stream's sequence has no gap and no message id twice: nothing stored twice, none removed."""
    assert [s.sequence for s in stored] == list(range(1, len(stored) + 1))
    ids = [s.message_id for s in stored]
    assert all(ids) and len(set(ids)) == len(ids), "a message id stored twice"


def on(stored: list[Stored], subject: str) -> list[dict]:
    return [json.loads(s.data) for s in stored if s.subject == subject]


def test_every_message_arrives_in_order_exactly_once(nats_server: NatsServer, daemon_factory) -> None:  # noqa: F811
    frames, sources = 200, ("door", "yard.west")
    daemon = daemon_factory(config_text(nats_server.url, free_port(), free_port(), frames=frames, sources=sources),
                            name="nats")
    assert daemon.process.wait(90) == 0, daemon.log()
    log = daemon.log()
    stored = read_stream(nats_server.url)
    assert_stored_once(stored)
    assert {s.subject.rsplit(".", 1)[0] for s in stored} == {f"streamd.{NODE}.door", f"streamd.{NODE}.yard_west"}
    events_messages = 0
    for source, token in (("door", "door"), ("yard.west", "yard_west")):
        base = f"streamd.{NODE}.{token}"
        detections = on(stored, f"{base}.detections")
        assert [m["frame_index"] for m in detections] == list(range(frames)), log[-2000:]  # all, in order
        assert {m["source"] for m in detections} == {source}
        events = on(stored, f"{base}.events")
        assert [m["source_sequence"] for m in events] == list(range(1, len(events) + 1)), log[-2000:]
        events_messages += len(events)
        crossings = {"in": 0, "out": 0}
        for message in events:
            for event in message["events"]:
                if event["type"] == "line_cross":
                    crossings[event["direction"]] += 1
        counts = on(stored, f"{base}.counts")
        assert counts, f"{source}: no counts"
        assert counts[-1]["lines"]["line"] == crossings and counts[-1]["schema"] == "streamd.counts/1"
        # Each counts document follows the events message that changed it.
        assert [c["source_sequence"] for c in counts] == sorted(c["source_sequence"] for c in counts)
    assert events_messages >= 2, log[-2000:]
    assert stopped_totals(log) == (2 * frames + events_messages, 0)
    assert re.search(r"sink fleet: connected to nats://127\.0\.0\.1:\d+, created .* the stream STREAMD", log)


@pytest.mark.parametrize("buffer_messages", [10000, 20])
def test_server_killed_mid_stream_loses_only_what_is_counted(
        nats_server: NatsServer, daemon_factory, buffer_messages: int) -> None:  # noqa: F811
    """20 frames a second for 8 s; the server SIGKILLed from 2.5 s to 5 s (about 50 frames' detections)."""
    frames, fps = 160, 20
    publish_port, metrics_port = free_port(), free_port()
    daemon = daemon_factory(config_text(nats_server.url, publish_port, metrics_port, frames=frames, sources=("cam",),
                                        pace="native", fps=fps, carries='["detections"]',
                                        buffer_messages=buffer_messages, wait_for_subscriber=30),
                            name=f"outage{buffer_messages}")
    published: list[int] = []
    during = ""
    with Subscriber(f"tcp://127.0.0.1:{publish_port}", ("cam",)) as subscriber:
        deadline = time.monotonic() + 60
        started = killed = restarted = 0.0
        while time.monotonic() < deadline:
            message = subscriber.receive(0.1)
            if message is None and daemon.process.poll() is not None:
                break
            if message is not None:
                published.append(message["frame_index"])
                started = started or time.monotonic()
            if not started:
                continue
            elapsed = time.monotonic() - started
            if not killed and elapsed > 2.5:
                nats_server.stop(signal.SIGKILL)
                killed = time.monotonic()
            elif killed and not during and elapsed > 4.7:
                during = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
            elif during and not restarted and elapsed > 5:
                nats_server.start()
                restarted = time.monotonic()
    assert daemon.process.wait(30) == 0, daemon.log()
    log = daemon.log()
    assert restarted, "the server was never started again"
    assert metric(during, "streamd_sink_connected", sink="fleet") == 0
    assert 0 < metric(during, "streamd_sink_buffered_messages", sink="fleet") <= buffer_messages
    assert len(re.findall(r"sink fleet: lost ", log)) == 1, log[-3000:]
    stored = read_stream(nats_server.url)
    assert_stored_once(stored)
    indices = [m["frame_index"] for m in on(stored, f"streamd.{NODE}.cam.detections")]
    sent, dropped = stopped_totals(log)
    print(f"buffer {buffer_messages}: published {len(published)}, stored {len(indices)}, sent {sent}, "
          f"dropped {dropped}")
    assert sent + dropped == len(published) and len(indices) == sent, (sent, dropped, len(published))
    if buffer_messages >= frames:
        assert dropped == 0 and indices == published, log[-3000:]
    else:
        # The oldest of the outage's messages went: one run of the published frames, exactly the dropped count.
        start = next(i for i, (a, b) in enumerate(zip(indices, published)) if a != b)
        assert dropped > 0 and indices == published[:start] + published[start + dropped:], (dropped, log[-3000:])
        assert re.search(r"sink fleet: stopped; .* \(buffer_full \d+\)", log)


def run_sink(url: str, **settings) -> tuple[Sinks, StreamdMetrics]:
    metrics = StreamdMetrics(CollectorRegistry())
    config = SinkConfig(**{"kind": "nats", "name": "n", "servers": (url,), "node": "box",
                           "carries": ("detections",), **settings})
    sinks = Sinks([config], [], metrics)
    sinks.start()
    return sinks, metrics


def offer_frames(sinks: Sinks, first: int, count: int) -> None:
    for index in range(first, first + count):
        sinks.offer([b"cam", json.dumps({"source": "cam", "frame_index": index, "detections": []}).encode()])


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_resend_after_lost_acknowledgements_is_stored_once(nats_server: NatsServer, monkeypatch) -> None:  # noqa: F811
    """The server frozen (SIGSTOP) while 100 messages are in flight: no acknowledgement comes, the sink gives
    the connection up and connects again once the server runs (SIGCONT), which meanwhile stored them from the
    old connection. The resend carries the same message ids: JetStream answers "duplicate", stores nothing."""
    monkeypatch.setattr("streamd.sinks.nats.ACK_TIMEOUT_SECONDS", 1.0)
    sinks, _ = run_sink(nats_server.url)
    sink = sinks.sinks[0]
    try:
        offer_frames(sinks, 0, 100)
        assert wait_until(lambda: sink.sent == 100, 10)
        nats_server.process.send_signal(signal.SIGSTOP)
        offer_frames(sinks, 100, 100)
        assert wait_until(lambda: not sink.connected, 5)  # the acknowledgement timeout
        nats_server.process.send_signal(signal.SIGCONT)
        assert wait_until(lambda: sink.sent == 200, 20), (sink.sent, sink.buffered)
        print(f"resent and found stored already: {sink.duplicates}")
        assert sink.duplicates > 0
    finally:
        nats_server.process.send_signal(signal.SIGCONT)
        sinks.close()
    stored = read_stream(nats_server.url)
    assert_stored_once(stored)
    assert [json.loads(s.data)["frame_index"] for s in stored] == list(range(200))


def test_offer_never_waits_and_counts_every_drop() -> None:
    """No server at all: 20000 messages into a buffer of 1000 from this thread return at once, and exactly
    the 19000 oldest are counted as dropped."""
    require_nats()
    sinks, metrics = run_sink(f"nats://127.0.0.1:{free_port()}", buffer_messages=1000)
    try:
        payload = b'{"frame_index":0,"detections":[]}'
        started = time.perf_counter()
        for _ in range(20000):
            sinks.offer([b"cam", payload])
        seconds = time.perf_counter() - started
        sink = sinks.sinks[0]
        assert sink.buffered == 1000 and not sink.connected
        assert metrics.sink_dropped.labels("n", "buffer_full")._value.get() == 19000
        print(f"offer: {seconds / 20000 * 1e6:.1f} us a message")
        assert seconds / 20000 < 100e-6
    finally:
        sinks.close()
    assert metrics.sink_dropped.labels("n", "stopped")._value.get() == 1000


def test_subscribe_prints_the_stream(nats_server: NatsServer, tmp_path: Path) -> None:  # noqa: F811
    """``streamd subscribe --nats``: every message once; a durable consumer goes on where it stopped."""
    sinks, _ = run_sink(nats_server.url, carries=("events", "detections", "counts"))
    try:
        for index in range(3):
            sinks.offer([b"cam", json.dumps({"source": "cam", "frame_index": index, "capture_time": 1.0,
                                             "publish_time": 1.012, "detections": []}).encode()])
            sinks.offer([b"events/cam", json.dumps({
                "source": "cam", "frame_index": index, "source_sequence": index + 1,
                "events": [{"type": "line_cross", "line": "gate", "direction": "in", "track_id": 7,
                            "label": "person"}]}).encode()])
        assert wait_until(lambda: sinks.sinks[0].sent == 6, 10)
    finally:
        sinks.close()

    def subscribe(*args: str) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", "--nats", nats_server.url, *args],
                                capture_output=True, text=True, timeout=30, cwd=REPO)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert subscribe("--count", "9") == [
        "box cam #0 (12 ms): -", "box cam #0: id 7 person crossed gate in", "box cam counts: gate in 1 out 0",
        "box cam #1 (12 ms): -", "box cam #1: id 7 person crossed gate in", "box cam counts: gate in 2 out 0",
        "box cam #2 (12 ms): -", "box cam #2: id 7 person crossed gate in", "box cam counts: gate in 3 out 0"]
    filtered = ("--subject", "streamd.*.cam.counts", "--durable", "tally", "--count", "2")
    assert subscribe(*filtered) == ["box cam counts: gate in 1 out 0", "box cam counts: gate in 2 out 0"]
    assert subscribe(*filtered[:-1], "1") == ["box cam counts: gate in 3 out 0"]


def test_a_clean_restart_during_an_outage_loses_nothing(tmp_path: Path) -> None:
    """buffer_path: 300 messages offered while no server listens and the sink stopped: kept on disk, not
    dropped; the next start with the server up sends them first, then its own, each once, in order."""
    require_nats()
    server = NatsServer(tmp_path)
    folder = tmp_path / "buffer"
    sinks, metrics = run_sink(server.url, buffer_path=str(folder))
    offer_frames(sinks, 0, 300)
    time.sleep(0.5)
    sinks.close()
    sink = sinks.sinks[0]
    assert (sink.sent, sink.dropped, sink.kept) == (0, 0, 300)
    assert metrics.sink_dropped.labels("n", "stopped")._value.get() == 0
    server.start()
    try:
        sinks, _ = run_sink(server.url, buffer_path=str(folder))
        try:
            assert sinks.sinks[0].buffered >= 300
            offer_frames(sinks, 300, 10)
            assert wait_until(lambda: sinks.sinks[0].sent == 310, 20), sinks.sinks[0].sent
        finally:
            sinks.close()
        assert sinks.sinks[0].kept == 0
        stored = read_stream(server.url)
    finally:
        server.stop()
    assert_stored_once(stored)
    assert [json.loads(s.data)["frame_index"] for s in stored] == list(range(310))


def test_a_crash_during_an_outage_loses_only_what_had_not_reached_the_disk(
        tmp_path: Path, daemon_factory) -> None:
    """A daemon with buffer_path and its server away is SIGKILLed after 3 s; started again with the server up,
    it sends what it kept first: the frames published before the crash, in order, each once, all but the
    last half second's at most (the sink's thread writes to disk every quarter of a second)."""
    require_nats()
    server = NatsServer(tmp_path)
    publish_port = free_port()
    extra = f'buffer_path = "{tmp_path / "buffer"}"'
    daemon = daemon_factory(config_text(server.url, publish_port, free_port(), frames=100000, sources=("cam",),
                                        pace="native", fps=20, carries='["detections"]', wait_for_subscriber=30,
                                        extra=extra), name="crash")
    published: list[int] = []
    with Subscriber(f"tcp://127.0.0.1:{publish_port}", ("cam",)) as subscriber:
        deadline = time.monotonic() + 60
        started = 0.0
        while time.monotonic() < deadline and (not started or time.monotonic() - started < 3):
            message = subscriber.receive(0.1)
            if message is not None:
                published.append(message["frame_index"])
                started = started or time.monotonic()
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(10)
    server.start()
    try:
        again = daemon_factory(config_text(server.url, free_port(), free_port(), frames=1, sources=("cam",),
                                           carries='["detections"]', extra=extra), name="after")
        assert again.process.wait(60) == 0, again.log()
        log = again.log()
        stored = read_stream(server.url)
    finally:
        server.stop()
    assert_stored_once(stored)
    indices = [json.loads(s.data)["frame_index"] for s in stored]
    kept = int(re.search(r"sink fleet: (\d+) message\(s\) kept in .* from before, sent first", log)[1])
    print(f"published before the crash {len(published)}, kept {kept}, stored {len(indices)}")
    # The subscriber may have missed the last frames published before the kill: compare what both saw.
    both = min(kept, len(published))
    assert indices[:both] == published[:both] and indices[:kept] == sorted(set(indices[:kept]))
    assert indices[kept:] == [0]  # then the new run's one frame
    assert kept >= len(published) - 10, (kept, len(published))
