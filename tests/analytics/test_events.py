"""The events message (streamd.events/1) and the detections message's zones field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamd.analytics.events import SCHEMA, Event, decode, encode, format_events, is_events_topic
from streamd.publish import message
from streamd.yolox.detections import Detections

CLASSES = ("person", "car")
EXAMPLES = [
    Event("zone_enter", "queue", 17, 0),
    Event("zone_exit", "queue", 17, 0, seconds=12.3456),
    Event("zone_dwell", "queue", 17, 0, seconds=120.0),
    Event("line_cross", "door", 9, 1, direction="in"),
    Event("occupancy_start", "queue", count=11, max_objects=10),
    Event("occupancy_end", "queue", count=9, max_objects=10, seconds=75.5),
]


def test_the_events_message() -> None:
    parts = encode("entrance", 3, 1234, 1795651200.123, 1795651200.135, EXAMPLES, CLASSES)
    assert parts[0] == b"events/entrance" and is_events_topic(parts[0])
    decoded = decode(parts)
    assert decoded == json.loads(parts[1])
    assert {key: decoded[key] for key in ("schema", "source", "source_sequence", "frame_index", "capture_time",
                                          "publish_time")} == {
        "schema": SCHEMA, "source": "entrance", "source_sequence": 3, "frame_index": 1234,
        "capture_time": 1795651200.123, "publish_time": 1795651200.135}
    assert decoded["events"] == [
        {"type": "zone_enter", "zone": "queue", "track_id": 17, "class_id": 0, "label": "person"},
        {"type": "zone_exit", "zone": "queue", "track_id": 17, "class_id": 0, "label": "person",
         "dwell_seconds": 12.346},
        {"type": "zone_dwell", "zone": "queue", "track_id": 17, "class_id": 0, "label": "person",
         "dwell_seconds": 120.0},
        {"type": "line_cross", "line": "door", "direction": "in", "track_id": 9, "class_id": 1, "label": "car"},
        {"type": "occupancy_start", "zone": "queue", "count": 11, "max_objects": 10},
        {"type": "occupancy_end", "zone": "queue", "count": 9, "max_objects": 10, "duration_seconds": 75.5},
    ]
    lines = format_events(decoded).splitlines()
    assert lines[0] == "entrance #1234: id 17 person entered queue"
    assert lines[3] == "entrance #1234: id 9 car crossed door in"
    assert "occupancy alarm" in lines[4]


def test_decode_refuses_what_is_not_an_events_message() -> None:
    parts = encode("a", 1, 1, 1.0, 1.0, EXAMPLES[:1], CLASSES)
    with pytest.raises(ValueError, match="topic and source"):
        decode([b"events/b", parts[1]])
    with pytest.raises(ValueError, match="unsupported schema"):
        decode([parts[0], parts[1].replace(b"events/1", b"events/2")])


def detections(tracked: bool = True) -> Detections:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 500, (6, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + 50], axis=1)
    track_ids = np.array([3, -1, 4, 5, -1, 9]) if tracked else None
    ages = np.array([10, 0, 2, 3, 0, 1]) if tracked else None
    return Detections(boxes, rng.uniform(0.3, 1, 6).astype(np.float32), np.array([0, 1, 0, 0, 1, 0], np.int32),
                      track_ids, ages)


@pytest.mark.parametrize("tracked", [True, False])
def test_the_zones_field_is_json_dumps_of_the_names(tracked: bool) -> None:
    zones = ['["door"]', "[]", '["door","queue"]', "[]", '["queue"]', "[]"]
    args = ("cam", 5, 6, 1795651200.5, 1795651200.6, 640, 480, "m", detections(tracked), CLASSES)
    parts = message.encode(*args, zones=zones)
    assert parts == message._encode_reference(*args, zones=zones)
    decoded = message.decode(parts)
    assert [d["zones"] for d in decoded["detections"]] == [json.loads(z) for z in zones]


def test_without_zones_the_message_is_byte_for_byte_what_it_was() -> None:
    args = ("cam", 5, 6, 1795651200.5, 1795651200.6, 640, 480, "m", detections(), CLASSES)
    assert message.encode(*args) == message.encode(*args, zones=None) == message._encode_reference(*args)
    assert b"zones" not in message.encode(*args)[1]
