"""RTSP source keys: timeouts must be positive, the backoff cap at least its start."""

from __future__ import annotations

import pytest

from streamd.config.load import parse_config
from streamd.errors import ConfigError


def _document(tiny_model, **rtsp: object) -> dict:
    return {"sources": [{"id": "cam", "kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam", **rtsp}],
            "model": {"path": str(tiny_model)}}


def test_rtsp_defaults_and_transport(tiny_model) -> None:
    source = parse_config(_document(tiny_model, transport="udp")).sources[0]
    assert (source.transport, source.stall_timeout_seconds, source.backoff_max_seconds) == ("udp", 5.0, 10.0)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("stall_timeout_seconds", 0, "more than 0"),
    ("open_timeout_seconds", 0.0, "more than 0"),
    ("backoff_max_seconds", 0.1, "at least backoff_initial_seconds"),
    ("transport", "http", "not one of"),
])
def test_rtsp_rejects_bad_values(tiny_model, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_config(_document(tiny_model, **{key: value}))
    assert raised.value.key == f"sources[0].{key}"
