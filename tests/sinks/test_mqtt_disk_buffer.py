"""The MQTT sink with ``buffer_path``: messages offered while the broker is away and the sink stopped are kept
on disk, not dropped, and the next start sends them first, in order (streamd.sinks.journal; the NATS sink's
crash test covers what a SIGKILL keeps)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from streamd.config.schema import SinkConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks import Sinks
from tests.sinks.broker import Broker, Recorder, require_mqtt


def run_sink(port: int, folder: Path) -> Sinks:
    sinks = Sinks([SinkConfig(kind="mqtt", name="m", port=port, node="n", carries=("detections",),
                              buffer_path=str(folder), keepalive_seconds=5)], [], StreamdMetrics(CollectorRegistry()))
    sinks.start()
    return sinks


def offer_frames(sinks: Sinks, first: int, count: int) -> None:
    for index in range(first, first + count):
        sinks.offer([b"cam", json.dumps({"frame_index": index, "detections": []}).encode()])


def test_a_clean_restart_during_an_outage_loses_nothing(tmp_path: Path) -> None:
    require_mqtt()
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    folder = tmp_path / "buffer"
    sinks = run_sink(broker.port, folder)  # nothing listens yet
    offer_frames(sinks, 0, 300)
    time.sleep(0.5)
    sinks.close()
    sink = sinks.sinks[0]
    assert (sink.sent, sink.dropped, sink.kept) == (0, 0, 300)
    broker.start()
    recorder = Recorder(broker.port, ["streamd/n/cam/detections"], client_id="disk")
    try:
        sinks = run_sink(broker.port, folder)
        try:
            offer_frames(sinks, 300, 10)
            assert recorder.wait_for(lambda: len(recorder.on("streamd/n/cam/detections")) >= 310, 20)
        finally:
            sinks.close()
        assert (sinks.sinks[0].sent, sinks.sinks[0].kept) == (310, 0)
        indices = [json.loads(p)["frame_index"] for p in recorder.on("streamd/n/cam/detections")]
        assert indices == list(range(310))
    finally:
        recorder.close()
        broker.stop()
