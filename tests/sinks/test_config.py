"""[[sinks]] in the config: defaults, and impossible settings refused with the key named (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamd.config.load import parse_config
from streamd.errors import ConfigError
from streamd.sinks.mqtt import MqttSink

BASE = {"sources": [{"id": "door", "kind": "synthetic",
                     "zones": [{"name": "hall.way", "polygon": [[0, 0], [1, 0], [1, 1]], "units": "fractions",
                                "max_objects": 2}],
                     "lines": [{"name": "gate", "points": [[0, 10], [100, 10]]}]},
                    {"id": "yard", "kind": "synthetic"}],
        "model": {"path": "builtin:synthetic-shapes"}}


def config(tmp_path: Path, **sink):
    return parse_config({**BASE, "sinks": [{"kind": "mqtt", **sink}]}, tmp_path)


def test_defaults(tmp_path: Path) -> None:
    sink = config(tmp_path).sinks[0]
    assert (sink.name, sink.carries, sink.qos, sink.port, sink.buffer_messages) == ("mqtt-0", ("events", "counts"),
                                                                                    1, 0, 10000)
    assert parse_config(BASE, tmp_path).sinks == ()


def test_password_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\nignored\n")
    sink = config(tmp_path, username="u", password_file="pw").sinks[0]
    assert sink.password == "s3cret" and sink.password_file == str(tmp_path / "pw")


@pytest.mark.parametrize(("sink", "key", "message"), [
    ({"kind": "kafka"}, "sinks[0].kind", "not one of"),
    ({"qos": 2}, "sinks[0].qos", "0 or 1"),
    ({"carries": []}, "sinks[0].carries", "carries nothing"),
    ({"carries": ["event"]}, "sinks[0].carries", "'event' is not one of"),
    ({"carries": "events"}, "sinks[0].carries", "list of strings"),
    ({"carries": ["detections"], "sources": ["dor"]}, "sinks[0].sources", "did you mean 'door'"),
    ({"carries": ["detections"], "classes": ["circel"]}, "sinks[0].classes", "did you mean 'circle'"),
    ({"sources": ["door"]}, "sinks[0].sources", "carries has no \"detections\""),
    ({"port": 70000}, "sinks[0].port", "out of range"),
    ({"host": ""}, "sinks[0].host", "required"),
    ({"node": "a/b"}, "sinks[0].node", "one MQTT topic level"),
    ({"discovery_prefix": ""}, "sinks[0].discovery_prefix", "one MQTT topic level"),
    ({"username": "u", "password": "p", "password_file": "pw"}, "sinks[0].password_file", "not both"),
    ({"password": "p"}, "sinks[0].username", "required with a password"),
    ({"password_file": "missing"}, "sinks[0].password_file", "cannot read"),
    ({"ca_file": "ca.pem"}, "sinks[0].ca_file", "only with tls"),
    ({"tls": True, "ca_file": "missing.pem"}, "sinks[0].ca_file", "does not exist"),
    ({"buffer_messages": 0}, "sinks[0].buffer_messages", "at least 1"),
    ({"keepalive_seconds": 1}, "sinks[0].keepalive_seconds", "5 to 3600"),
    ({"name": "a b"}, "sinks[0].name", "letters, digits"),
    ({"hots": "x"}, "sinks[0].hots", "did you mean 'host'"),
])
def test_errors_name_the_key(tmp_path: Path, sink: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, **sink)
    assert caught.value.key == key and message in str(caught.value), str(caught.value)


def test_two_sinks_with_one_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sinks\[1\]\.name"):
        parse_config({**BASE, "sinks": [{"kind": "mqtt", "name": "a"}, {"kind": "mqtt", "name": "a"}]}, tmp_path)


def test_run_exits_2_on_a_sink_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[sources]]\nid = "s"\nkind = "synthetic"\n\n[model]\npath = "builtin:synthetic-shapes"\n\n'
                    '[[sinks]]\nkind = "mqtt"\nqos = 2\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "sinks[0].qos" in result.stderr


def test_home_assistant_discovery_payloads(tmp_path: Path) -> None:
    """Each config: the keys Home Assistant's MQTT discovery requires, topics that are one level each, and
    state topics that are the sink's count topics."""
    parsed = parse_config({**BASE, "sinks": [{"kind": "mqtt", "node": "gate", "home_assistant": True}]}, tmp_path)
    sink = MqttSink(parsed.sinks[0], parsed.sources, None, "yolox_s")
    items = dict(sink.discovery())
    assert set(items) == {
        "homeassistant/sensor/streamd_gate/door_hall_way_occupancy/config",
        "homeassistant/binary_sensor/streamd_gate/door_hall_way_alarm/config",
        "homeassistant/sensor/streamd_gate/door_gate_in/config",
        "homeassistant/sensor/streamd_gate/door_gate_out/config"}
    for topic, payload in items.items():
        assert {"name", "unique_id", "state_topic", "availability_topic", "device"} <= set(payload)
        assert payload["state_topic"].startswith("streamd/gate/door/counts/")
        assert payload["availability_topic"] == "streamd/gate/availability"
        assert payload["device"]["identifiers"] == ["streamd_gate"]
        if "binary_sensor" in topic:
            assert (payload["payload_on"], payload["payload_off"]) == ("ON", "OFF")
        else:
            assert payload["state_class"] in ("measurement", "total_increasing")
    counts = sink._update_counts("door", {"events": [
        {"type": "line_cross", "line": "gate", "direction": "in"}, {"type": "zone_enter", "zone": "hall.way",
                                                                    "track_id": 4},
        {"type": "occupancy_start", "zone": "hall.way"}]})
    assert dict(counts) == {"streamd/gate/door/counts/gate/in": 1, "streamd/gate/door/counts/hall_way/occupancy": 1,
                            "streamd/gate/door/counts/hall_way/alarm": "ON"}
    assert {payload["state_topic"] for payload in items.values()} >= {topic for topic, _ in counts}
