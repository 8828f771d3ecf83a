"""The webhook sink against a real HTTP(S) server in a thread that verifies every request's signature with
the function docs/sinks.md gives receivers: a daemon's events, counts and detections of a synthetic scene
arrive signed and in order per source; a receiver answering 503 for a while loses nothing the buffer holds
and the drops beyond it are counted exactly; Retry-After is honoured; a 400 is counted as rejected and
not retried; a host that does not resolve and a certificate that does not verify give one log line, the
messages stay buffered and the caller is never held up; configuration errors name the key (exit 2)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamd.config.load import parse_config
from streamd.config.schema import SinkConfig
from streamd.errors import ConfigError
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks import Sinks
from tests.sinks.receiver import Receiver, self_signed_certificate
from tests.support import free_port

SECRET = "correct horse battery staple"


def start_sink(url: str, **settings: object) -> tuple[Sinks, StreamdMetrics]:
    metrics = StreamdMetrics(CollectorRegistry())
    sinks = Sinks([SinkConfig(kind="webhook", name="hook", url=url, secret=SECRET, node="n", **settings)], [],
                  metrics)
    sinks.start()
    return sinks, metrics


def offer(sinks: Sinks, count: int, start: int = 0, sources: tuple[str, ...] = ("cam0", "cam1")) -> list[tuple]:
    """``count`` events messages, the sources taking turns; (source, sequence) of each, in offered order.
    Every offer returns at once, whatever the receiver does."""
    offered = []
    started = time.perf_counter()
    for index in range(start, start + count):
        source = sources[index % len(sources)]
        sequence = index // len(sources) + 1
        body = json.dumps({"source": source, "source_sequence": sequence, "events": []})
        sinks.offer([f"events/{source}".encode(), body.encode()])
        offered.append((source, sequence))
    assert time.perf_counter() - started < 0.05 + count * 100e-6
    return offered


def arrived(receiver: Receiver) -> list[tuple]:
    return [(json.loads(r.body)["source"], json.loads(r.body)["source_sequence"]) for r in receiver.accepted()]


def value(metrics: StreamdMetrics, name: str, *labels: str) -> float:
    return getattr(metrics, name).labels("hook", *labels)._value.get()


def lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_scene_arrives_signed_and_in_order_per_source(tmp_path: Path, daemon_factory) -> None:
    """Two synthetic sources with a line and a zone; the daemon runs to the end of its frames and stops."""
    receiver = Receiver(SECRET.encode())
    frames = 150
    sources = "".join(f"""
[[sources]]
id = "{name}"
kind = "synthetic"
seed = {seed}
pace = "fast"
max_frames = {frames}

[[sources.lines]]
name = "line"
points = [[0, 240], [640, 240]]

[[sources.zones]]
name = "left"
polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
units = "fractions"
max_objects = 1
""" for seed, name in ((3, "east"), (4, "west")))
    (tmp_path / "secret").write_text(SECRET + "\n")
    daemon = daemon_factory(sources + f"""
[model]
path = "builtin:synthetic-shapes"

[publish]
endpoint = "tcp://127.0.0.1:{free_port()}"

[metrics]
enabled = false

[daemon]
status_interval_seconds = 0
workers = 1

[[sinks]]
kind = "webhook"
name = "hook"
url = "{receiver.url}?token=abc"
secret_file = "{tmp_path / 'secret'}"
node = "testnode"
carries = ["events", "counts", "detections"]
""", name="webhook")
    try:
        assert daemon.process.wait(90) == 0, daemon.log()
        log = daemon.log()
        requests = receiver.accepted()
        assert requests and all(r.valid for r in receiver.requests), log
        assert "token=abc" not in log  # the query may hold a credential: log lines show the url without it
        for name in ("east", "west"):
            mine = [r for r in requests if r.headers["X-Streamd-Source"] == name]
            assert {r.headers["X-Streamd-Node"] for r in mine} == {"testnode"}
            kinds = [r.headers["X-Streamd-Kind"] for r in mine]
            detections = [json.loads(r.body)["frame_index"] for r, k in zip(mine, kinds) if k == "detections"]
            assert detections == list(range(frames)), name  # every frame, in order
            events = [json.loads(r.body) for r, k in zip(mine, kinds) if k == "events"]
            assert [e["source_sequence"] for e in events] == list(range(1, len(events) + 1)) and events, name
            # Counts follow the events message that changed them, and the last equals what the events say.
            counts = [json.loads(r.body) for r, k in zip(mine, kinds) if k == "counts"]
            crossings = {"in": 0, "out": 0}
            for event in (e for message in events for e in message["events"] if e["type"] == "line_cross"):
                crossings[event["direction"]] += 1
            assert counts and counts[-1]["lines"]["line"] == crossings, (name, counts[-1], crossings)
            assert set(counts[-1]["zones"]["left"]) == {"occupancy", "alarm"}
            assert all(c["schema"] == "streamd.counts/1" and c["source"] == name for c in counts)
            previous = 0
            for request, kind in zip(mine, kinds):  # each counts message right after its events message
                if kind == "events":
                    previous = json.loads(request.body)["source_sequence"]
                elif kind == "counts":
                    assert json.loads(request.body)["source_sequence"] == previous
        # One request per message; an events message and the counts it changed count as one.
        messages = sum(1 for r in requests if r.headers["X-Streamd-Kind"] != "counts")
        assert re.search(rf"sink hook: stopped; {messages} message\(s\) sent, 0 dropped", log), log
        assert len({r.headers["X-Streamd-Delivery"] for r in requests}) == len(requests)
    finally:
        receiver.close()


@pytest.mark.parametrize("buffer_messages", [1000, 20])
def test_an_outage_loses_nothing_the_buffer_holds(buffer_messages: int, caplog) -> None:
    """The receiver answers 503 while 80 messages are offered, then 200: with room for them all, all arrive in
    order; with a buffer of 20, exactly the oldest of the outage's messages are missing, as many as counted."""
    caplog.set_level(logging.INFO, "streamd.sinks")
    receiver = Receiver(SECRET.encode())
    sinks, metrics = start_sink(receiver.url, buffer_messages=buffer_messages, carries=("events",))
    try:
        offered = offer(sinks, 10)
        assert receiver.wait_for(lambda: len(receiver.accepted()) == 10, 5)
        receiver.status = 503
        offered += offer(sinks, 80, start=10)
        time.sleep(2.0)
        buffered = sinks.sinks[0].buffered
        # The message at the head (taken before the buffer filled, or after) and the buffer's.
        assert value(metrics, "sink_connected") == 0 and buffered in (min(80, buffer_messages),
                                                                      min(80, buffer_messages + 1))
        refused = len(receiver.requests) - 10
        receiver.status = 200
        dropped = value(metrics, "sink_dropped", "buffer_full")
        assert receiver.wait_for(lambda: len(receiver.accepted()) == len(offered) - dropped, 15), \
            (len(receiver.accepted()), dropped)
        got = arrived(receiver)
        assert all(r.valid for r in receiver.requests)
        if buffer_messages >= 80:
            assert dropped == 0 and got == offered
        else:
            assert dropped == 80 - buffered
            start = next(i for i, (a, b) in enumerate(zip(got, offered)) if a != b)
            assert got == offered[:start] + offered[start + int(dropped):]
        for source in ("cam0", "cam1"):  # in order per source
            sequences = [s for name, s in got if name == source]
            assert sequences == sorted(sequences)
        assert value(metrics, "sink_sent") == len(got) and value(metrics, "sink_connected") == 1
        # Backoff: 2 s of 503 took a few attempts, not hundreds; one line for it, one when it answered again.
        assert 1 <= refused <= 6, refused
        assert len(lines(caplog, "HTTP 503 Service Unavailable")) == 1
        assert len(lines(caplog, "answers again")) == 1
    finally:
        sinks.close()
        receiver.close()


def test_retry_after_is_honoured() -> None:
    receiver = Receiver(SECRET.encode())
    receiver.answer = lambda request: 429 if len(receiver.requests) == 1 else 200
    receiver.retry_after = "2"
    sinks, _ = start_sink(receiver.url, carries=("events",))
    try:
        offer(sinks, 1)
        assert receiver.wait_for(lambda: len(receiver.accepted()) == 1, 10)
        first, second = receiver.requests
        assert second.at - first.at >= 1.9
        # The same message (one delivery id), signed again for its own attempt.
        assert first.headers["X-Streamd-Delivery"] == second.headers["X-Streamd-Delivery"]
        assert first.valid and second.valid and first.body == second.body
    finally:
        sinks.close()
        receiver.close()


def test_a_400_is_rejected_not_retried(caplog) -> None:
    caplog.set_level(logging.INFO, "streamd.sinks")
    receiver = Receiver(SECRET.encode())
    receiver.answer = lambda request: 400 if json.loads(request.body)["source_sequence"] % 3 == 0 else 200
    sinks, metrics = start_sink(receiver.url, carries=("events",))
    try:
        offered = offer(sinks, 20)
        assert receiver.wait_for(lambda: len(receiver.requests) == 20, 10)
        time.sleep(0.3)
        assert len(receiver.requests) == 20  # none sent twice
        assert arrived(receiver) == [o for o in offered if o[1] % 3 != 0]
        rejected = sum(1 for o in offered if o[1] % 3 == 0)
        assert value(metrics, "sink_dropped", "rejected") == rejected
        assert value(metrics, "sink_sent") == 20 - rejected and value(metrics, "sink_connected") == 1
        logged = lines(caplog, "HTTP 400")
        assert len(logged) == 1 and "bad request body" in logged[0], logged
    finally:
        sinks.close()
        receiver.close()


def test_a_host_that_does_not_resolve(caplog) -> None:
    caplog.set_level(logging.INFO, "streamd.sinks")
    sinks, metrics = start_sink("http://no-such-host.invalid/hook", buffer_messages=50, carries=("events",))
    try:
        offer(sinks, 100)
        time.sleep(2.5)
        logged = lines(caplog, "cannot deliver")
        assert len(logged) == 1 and "no-such-host.invalid" in logged[0], logged
        assert value(metrics, "sink_connected") == 0
        assert sinks.sinks[0].buffered + value(metrics, "sink_dropped", "buffer_full") == 100
    finally:
        sinks.close()
    assert value(metrics, "sink_dropped", "buffer_full") + value(metrics, "sink_dropped", "stopped") == 100


def test_tls_verifies_the_receiver(tmp_path: Path, caplog) -> None:
    """A self-signed certificate: refused against the system's CAs (one line, messages kept), taken with
    ``ca_file`` naming it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    caplog.set_level(logging.INFO, "streamd.sinks")
    certificate = self_signed_certificate(tmp_path)
    receiver = Receiver(SECRET.encode(), certificate)
    try:
        sinks, metrics = start_sink(receiver.url, carries=("events",))
        try:
            offer(sinks, 30)
            time.sleep(2.0)
            logged = lines(caplog, "cannot deliver")
            assert len(logged) == 1 and "certificate verify failed" in logged[0], logged
            assert value(metrics, "sink_connected") == 0 and sinks.sinks[0].buffered == 30
            assert not receiver.requests
        finally:
            sinks.close()
        caplog.clear()
        sinks, metrics = start_sink(receiver.url, carries=("events",), ca_file=str(certificate[0]))
        try:
            offered = offer(sinks, 30)
            assert receiver.wait_for(lambda: len(receiver.accepted()) == 30, 10)
            assert arrived(receiver) == offered and all(r.valid for r in receiver.requests)
            assert not lines(caplog, "cannot deliver") and value(metrics, "sink_connected") == 1
        finally:
            sinks.close()
    finally:
        receiver.close()


BASE = {"sources": [{"id": "door", "kind": "synthetic"}], "model": {"path": "builtin:synthetic-shapes"}}


@pytest.mark.parametrize(("sink", "key", "message"), [
    ({"secret": "s"}, "sinks[0].url", "required"),
    ({"url": "ftp://host/x"}, "sinks[0].url", "http://HOST"),
    ({"url": "http://host:99999/"}, "sinks[0].url", "out of range"),
    ({"url": "https://user:pw@host/"}, "sinks[0].url", "holds credentials"),
    ({"url": "http://host/"}, "sinks[0].secret", "required"),
    ({"url": "http://host/", "secret_file": "missing"}, "sinks[0].secret_file", "cannot read"),
    ({"url": "http://host/", "secret": "s", "secret_file": "f"}, "sinks[0].secret_file", "not both"),
    ({"url": "http://host/", "secret": "s", "timeout_seconds": 0}, "sinks[0].timeout_seconds", "more than 0"),
    ({"url": "http://host/", "secret": "s", "ca_file": "ca.pem"}, "sinks[0].ca_file", "https:// url"),
    ({"url": "http://host/", "secret": "s", "tls": True}, "sinks[0].tls", "address is its url"),
    ({"url": "http://host/", "secret": "s", "host": "h"}, "sinks[0].host", "address is its url"),
    ({"url": "http://host/", "secret": "s", "qos": 1}, "sinks[0].qos", "applies to mqtt sinks"),
])
def test_config_errors_name_the_key(tmp_path: Path, sink: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "sinks": [{"kind": "webhook", **sink}]}, tmp_path)
    assert caught.value.key == key and message in str(caught.value), str(caught.value)


def test_mqtt_keys_and_webhook_keys_stay_apart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.url.*applies to webhook"):
        parse_config({**BASE, "sinks": [{"kind": "mqtt", "url": "http://host/"}]}, tmp_path)
    sink = parse_config({**BASE, "sinks": [{"kind": "webhook", "url": "https://h/x", "secret": "s"}]},
                        tmp_path).sinks[0]
    assert (sink.name, sink.tls, sink.carries, sink.timeout_seconds) == ("webhook-0", True, ("events", "counts"), 10)


def test_run_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[sources]]\nid = "s"\nkind = "synthetic"\n\n[model]\npath = "builtin:synthetic-shapes"\n\n'
                    '[[sinks]]\nkind = "webhook"\nurl = "http://127.0.0.1/x"\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "sinks[0].secret" in result.stderr, result.stderr
