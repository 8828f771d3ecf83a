"""A NATS server the sink cannot reach, that refuses it, that has no JetStream, whose stream does not take the
sink's subjects or whose certificate does not verify: one clear log line per kind of failure (not one per
retry), the messages stay buffered, the caller is never held up; the daemon runs on and counts them."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamd.config.schema import SinkConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks import Sinks
from tests.sinks.nats_server import NATS_SERVER, NatsServer, nats_server, require_nats  # noqa: F401
from tests.sinks.test_nats import config_text, stopped_totals
from tests.sinks.test_refusals import _certificates
from tests.support import free_port


def run_sink(config: SinkConfig, seconds: float) -> tuple[Sinks, StreamdMetrics]:
    metrics = StreamdMetrics(CollectorRegistry())
    sinks = Sinks([config], [], metrics)
    sinks.start()
    started = time.perf_counter()
    for _ in range(100):
        sinks.offer([b"events/cam", b'{"events":[]}'])
    assert time.perf_counter() - started < 0.05
    time.sleep(seconds)
    return sinks, metrics


def failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]


def sink_config(url: str, **settings) -> SinkConfig:
    return SinkConfig(**{"kind": "nats", "name": "n", "servers": (url,), "node": "box", **settings})


def assert_refused(caplog, sinks: Sinks, metrics: StreamdMetrics, *phrases: str) -> None:
    lines = failures(caplog)
    assert len(lines) == 1 and all(phrase in lines[0] for phrase in phrases), lines
    assert metrics.sink_connected.labels("n")._value.get() == 0
    assert sinks.sinks[0].buffered == 100


def test_a_host_that_does_not_resolve(caplog) -> None:
    require_nats()
    caplog.set_level(logging.INFO, "streamd.sinks")
    sinks, metrics = run_sink(sink_config("nats://no-such-host.invalid:4222"), 2.5)
    try:
        assert_refused(caplog, sinks, metrics, "nats://no-such-host.invalid:4222", "gaierror")
    finally:
        sinks.close()


def test_wrong_credentials(tmp_path: Path, caplog) -> None:
    require_nats()
    caplog.set_level(logging.INFO, "streamd.sinks")
    server = NatsServer(tmp_path, password="right")
    server.start()
    try:
        sinks, metrics = run_sink(sink_config(server.url, username="streamd", password="wrong"), 2.5)
        try:
            assert_refused(caplog, sinks, metrics, "refused the credentials")
        finally:
            sinks.close()
        caplog.clear()
        sinks, metrics = run_sink(sink_config(server.url, username="streamd", password="right"), 1.0)
        try:
            assert not failures(caplog)
            assert metrics.sink_connected.labels("n")._value.get() == 1
            assert metrics.sink_sent.labels("n")._value.get() == 100
        finally:
            sinks.close()
    finally:
        server.stop()


def test_a_server_without_jetstream(tmp_path: Path, caplog) -> None:
    require_nats()
    caplog.set_level(logging.INFO, "streamd.sinks")
    port = free_port()
    process = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        sinks, metrics = run_sink(sink_config(f"nats://127.0.0.1:{port}"), 3.0)
        try:
            assert_refused(caplog, sinks, metrics, "JetStream does not answer", "-js")
        finally:
            sinks.close()
    finally:
        process.terminate()
        process.wait(10)


def test_a_stream_that_does_not_take_the_subjects(nats_server: NatsServer, caplog) -> None:  # noqa: F811
    async def make_stream() -> None:
        import nats  # noqa: PLC0415

        client = await nats.connect(nats_server.url)
        await client.jetstream().add_stream(name="STREAMD", subjects=["other.>"])
        await client.close()

    asyncio.run(make_stream())
    caplog.set_level(logging.INFO, "streamd.sinks")
    sinks, metrics = run_sink(sink_config(nats_server.url), 2.5)
    try:
        assert_refused(caplog, sinks, metrics, "['other.>']", "do not take streamd.box.*.*")
    finally:
        sinks.close()


def test_tls_verifies_the_server(tmp_path: Path, caplog) -> None:
    """A server whose certificate another CA signed: one line, no connection; the right CA: connected."""
    require_nats()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    caplog.set_level(logging.INFO, "streamd.sinks")
    right = _certificates(tmp_path, "right")
    other = _certificates(tmp_path, "other")
    server = NatsServer(tmp_path)
    server.config.write_text(server.config.read_text() + f'tls {{\n  cert_file: "{tmp_path}/right-server.pem"\n'
                                                          f'  key_file: "{tmp_path}/right-server.key"\n}}\n')
    server.start()
    try:
        sinks, metrics = run_sink(sink_config(server.url, tls=True, ca_file=str(other)), 2.5)
        try:
            assert_refused(caplog, sinks, metrics, "certificate verify failed")
        finally:
            sinks.close()
        caplog.clear()
        sinks, metrics = run_sink(sink_config(server.url, tls=True, ca_file=str(right)), 1.5)
        try:
            assert not failures(caplog)
            assert metrics.sink_sent.labels("n")._value.get() == 100
        finally:
            sinks.close()
    finally:
        server.stop()


def test_the_daemon_runs_on_and_counts(daemon_factory) -> None:
    """A daemon whose NATS server does not resolve: it processes every frame, says so once, and counts what its
    sink could not send."""
    require_nats()
    frames = 60
    daemon = daemon_factory(config_text("nats://no-such-host.invalid:4222", free_port(), free_port(), frames=frames,
                                        sources=("cam",), carries='["detections"]'), name="unresolved")
    assert daemon.process.wait(60) == 0, daemon.log()
    log = daemon.log()
    assert len(re.findall(r"sink fleet: cannot connect to nats://no-such-host\.invalid:4222", log)) == 1, log
    assert stopped_totals(log) == (0, frames)
    assert f"dropped (stopped {frames})" in log
