"""[[sinks]] kind = "nats" in the config: defaults, subjects, and impossible settings refused with the key
named (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamd.config.load import parse_config
from streamd.config.subjects import covers, is_subject, subject_token
from streamd.errors import ConfigError
from streamd.sinks.nats import NatsSink, server_names

BASE = {"sources": [{"id": "door", "kind": "synthetic"}, {"id": "yard.west", "kind": "synthetic"}],
        "model": {"path": "builtin:synthetic-shapes"}}


def config(tmp_path: Path, sources: list | None = None, **sink):
    return parse_config({**BASE, **({"sources": sources} if sources else {}), "sinks": [{"kind": "nats", **sink}]},
                        tmp_path)


def test_defaults(tmp_path: Path) -> None:
    sink = config(tmp_path).sinks[0]
    assert (sink.name, sink.servers, sink.stream, sink.stream_subjects, sink.subject_prefix) == (
        "nats-0", ("nats://127.0.0.1:4222",), "STREAMD", (), "streamd")
    assert (sink.retention, sink.storage, sink.max_age_seconds, sink.max_bytes, sink.duplicate_window_seconds) == (
        "limits", "file", 0.0, 0, 120.0)
    assert not sink.tls and config(tmp_path, servers=["tls://a:4222"]).sinks[0].tls


def test_subjects(tmp_path: Path) -> None:
    parsed = config(tmp_path, node="gate", subject_prefix="acme.cams", servers=["nats://a:1"])
    sink = NatsSink(parsed.sinks[0], parsed.sources, None)
    assert sink.prefix == "acme.cams.gate" and sink.stream_subjects == ["acme.cams.>"]
    assert subject_token("yard.west") == "yard_west"
    assert covers("acme.>", "acme.gate.*.*") and covers("acme.*.*.*", "acme.gate.*.*")
    assert not covers("acme.gate.*.events", "acme.gate.*.*") and not covers("acme.gate", "acme.>")
    assert is_subject("a.*.>") and not is_subject("a.>.b") and not is_subject("a..b")
    assert server_names(["nats://a:4222", "tls://b"]) == "nats://a:4222, tls://b"


@pytest.mark.parametrize(("sink", "key", "message"), [
    ({"host": "a"}, "sinks[0].host", "addresses are its servers"),
    ({"port": 4222}, "sinks[0].port", "addresses are its servers"),
    ({"qos": 1}, "sinks[0].qos", "applies to mqtt sinks, not nats"),
    ({"url": "http://a"}, "sinks[0].url", "applies to webhook sinks, not nats"),
    ({"servers": []}, "sinks[0].servers", "at least one"),
    ({"servers": "nats://a:4222"}, "sinks[0].servers", "list of strings"),
    ({"servers": ["http://a:4222"]}, "sinks[0].servers", "nats://HOST:PORT"),
    ({"servers": ["nats://a:99999"]}, "sinks[0].servers", "not a URL"),
    ({"servers": ["nats://u:p@a:4222"]}, "sinks[0].servers", "holds credentials"),
    ({"subject_prefix": "a.*"}, "sinks[0].subject_prefix", "without '*'"),
    ({"subject_prefix": ""}, "sinks[0].subject_prefix", "subject tokens"),
    ({"node": "gate.1"}, "sinks[0].node", "one NATS subject token"),
    ({"stream": "a.b"}, "sinks[0].stream", "stream name"),
    ({"stream_subjects": ["x.>"]}, "sinks[0].stream_subjects", "do not take"),
    ({"stream_subjects": ["a.>.b"]}, "sinks[0].stream_subjects", "not a NATS subject filter"),
    ({"retention": "forever"}, "sinks[0].retention", "not one of"),
    ({"storage": "tape"}, "sinks[0].storage", "not one of"),
    ({"max_age_seconds": -1}, "sinks[0].max_age_seconds", "0 (no limit) or more"),
    ({"max_bytes": -1}, "sinks[0].max_bytes", "0 (no limit) or more"),
    ({"duplicate_window_seconds": 0}, "sinks[0].duplicate_window_seconds", "more than 0"),
    ({"max_age_seconds": 60}, "sinks[0].duplicate_window_seconds", "longer than max_age_seconds"),
    ({"keepalive_seconds": 1}, "sinks[0].keepalive_seconds", "5 to 3600"),
    ({"password": "p"}, "sinks[0].username", "required with a password"),
    ({"ca_file": "ca.pem"}, "sinks[0].ca_file", "only with tls"),
    ({"buffer_messages": 0}, "sinks[0].buffer_messages", "at least 1"),
])
def test_errors_name_the_key(tmp_path: Path, sink: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, **sink)
    assert caught.value.key == key and message in str(caught.value), str(caught.value)


def test_buffer_path(tmp_path: Path) -> None:
    assert config(tmp_path, buffer_path="spool").sinks[0].buffer_path == str(tmp_path / "spool")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.buffer_path.*is not a folder"):
        config(tmp_path, buffer_path="file")
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.buffer_path.*applies to mqtt, nats sinks, not webhook"):
        parse_config({**BASE, "sinks": [{"kind": "webhook", "url": "http://a/", "secret": "s",
                                         "buffer_path": "spool"}]}, tmp_path)


def test_two_source_ids_one_subject_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, sources=[{"id": "yard.west", "kind": "synthetic"}, {"id": "yard_west", "kind": "synthetic"}])
    assert caught.value.key == "sources[1].id" and "one NATS subject token" in str(caught.value)


def test_run_exits_2_on_a_nats_sink_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[sources]]\nid = "s"\nkind = "synthetic"\n\n[model]\npath = "builtin:synthetic-shapes"\n\n'
                    '[[sinks]]\nkind = "nats"\nservers = ["nats://127.0.0.1:4222"]\nstream_subjects = ["other.>"]\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "sinks[0].stream_subjects" in result.stderr
