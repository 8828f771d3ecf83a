"""A broker the sink cannot reach, that refuses it or whose certificate does not verify: one clear log line
per kind of failure (not one per retry), the sink keeps retrying, and the caller is never held up."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamd.config.schema import SinkConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks import Sinks
from tests.sinks.broker import MOSQUITTO_PASSWD, Broker, Recorder, require_mqtt


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


def test_a_host_that_does_not_resolve(caplog) -> None:
    require_mqtt()
    caplog.set_level(logging.INFO, "streamd.sinks")
    sinks, metrics = run_sink(SinkConfig(kind="mqtt", name="far", host="no-such-host.invalid", port=1883), 2.5)
    try:
        lines = failures(caplog)
        assert len(lines) == 1 and "no-such-host.invalid" in lines[0], lines
        assert metrics.sink_connected.labels("far")._value.get() == 0
        assert sinks.sinks[0].buffered == 100
    finally:
        sinks.close()


def test_wrong_credentials(tmp_path: Path, caplog) -> None:
    require_mqtt()
    caplog.set_level(logging.INFO, "streamd.sinks")
    broker = Broker(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwords), "streamd", "right"], check=True)
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true",
                                                               f"allow_anonymous false\npassword_file {passwords}"))
    broker.start()
    try:
        sinks, metrics = run_sink(SinkConfig(kind="mqtt", name="auth", port=broker.port, username="streamd",
                                             password="wrong"), 2.5)
        try:
            lines = failures(caplog)
            assert len(lines) == 1 and "refused" in lines[0], lines
            assert metrics.sink_connected.labels("auth")._value.get() == 0
        finally:
            sinks.close()
        caplog.clear()
        sinks, metrics = run_sink(SinkConfig(kind="mqtt", name="auth", port=broker.port, username="streamd",
                                             password="right"), 1.0)
        try:
            assert not failures(caplog)
            assert metrics.sink_connected.labels("auth")._value.get() == 1
            assert metrics.sink_sent.labels("auth")._value.get() == 100
        finally:
            sinks.close()
    finally:
        broker.stop()


def _certificates(folder: Path, name: str) -> Path:
    """A CA (``name``.pem) and, signed by it, a certificate for 127.0.0.1 (``name``-server.pem/.key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-server.key", "-out", f"{name}.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}.pem", "-CAkey", f"{name}.key", "-CAcreateserial",
            "-out", f"{name}-server.pem", "-days", "2", "-extfile", "ext")
    return folder / f"{name}.pem"


def test_tls_verifies_the_broker(tmp_path: Path, caplog) -> None:
    """A broker whose certificate another CA signed: one line, no connection; the right CA: connected."""
    require_mqtt()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    caplog.set_level(logging.INFO, "streamd.sinks")
    right = _certificates(tmp_path, "right")
    other = _certificates(tmp_path, "other")
    broker = Broker(tmp_path)
    broker.config.write_text(broker.config.read_text() + f"certfile {tmp_path}/right-server.pem\n"
                                                         f"keyfile {tmp_path}/right-server.key\n")
    broker.start()
    try:
        sinks, metrics = run_sink(SinkConfig(kind="mqtt", name="tls", port=broker.port, tls=True,
                                             ca_file=str(other)), 2.5)
        try:
            lines = failures(caplog)
            assert len(lines) == 1 and "certificate verify failed" in lines[0], lines
            assert metrics.sink_connected.labels("tls")._value.get() == 0
        finally:
            sinks.close()
        caplog.clear()
        sinks, metrics = run_sink(SinkConfig(kind="mqtt", name="tls", port=broker.port, tls=True,
                                             ca_file=str(right)), 1.5)
        try:
            assert not failures(caplog)
            assert metrics.sink_connected.labels("tls")._value.get() == 1
            assert metrics.sink_sent.labels("tls")._value.get() == 100
        finally:
            sinks.close()
    finally:
        broker.stop()


def test_counts_survive_an_outage_once(tmp_path: Path) -> None:
    """Events offered steadily while the broker is killed (SIGKILL: acknowledgements lost) and started again:
    the retained line count ends equal to the crossings offered, each counted once, although messages in
    flight at the kill are sent again."""
    require_mqtt()
    broker = Broker(tmp_path)
    broker.start()
    recorder = Recorder(broker.port, ["streamd/n/cam/counts/#"], client_id="counts")
    sinks, _ = run_sink(SinkConfig(kind="mqtt", name="c", port=broker.port, node="n", carries=("events", "counts")),
                        0.5)
    try:
        crossing = b'{"source_sequence":0,"events":[{"type":"line_cross","line":"l","direction":"in"}]}'
        for index in range(600):
            sinks.offer([b"events/cam", crossing])
            if index == 200:
                broker.stop(signal.SIGKILL)
            if index == 400:
                broker.start()
            time.sleep(0.005)
        assert recorder.wait_for(lambda: recorder.on("streamd/n/cam/counts/l/in")[-1:] == [b"600"], 20), \
            recorder.on("streamd/n/cam/counts/l/in")[-5:]
    finally:
        sinks.close()
        recorder.close()
        broker.stop()
