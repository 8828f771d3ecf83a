"""The events message schema (documented in docs/output.md): what the analytics saw happen in one frame.

Each message is two ZeroMQ frames: the topic ``events/<source id>`` and a JSON object. A source's events
messages follow its detections message of the same frame. Bump SCHEMA when a field changes meaning or
disappears; adding a field keeps the version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

SCHEMA = "streamd.events/1"
TOPIC_PREFIX = "events/"
EVENT_TYPES = ("zone_enter", "zone_exit", "zone_dwell", "line_cross", "occupancy_start", "occupancy_end")


class Event(NamedTuple):
    """One thing that happened. ``name``: the zone's or the line's; ``seconds``: the time in the zone
    (zone_exit, zone_dwell) or the alarm's length (occupancy_end); ``count``: detections in the zone
    (occupancy_start, occupancy_end)."""

    type: str
    name: str
    track_id: int | None = None
    class_id: int | None = None
    direction: str | None = None
    seconds: float | None = None
    count: int | None = None
    max_objects: int | None = None

    def as_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        where = "line" if self.type == "line_cross" else "zone"
        item: dict[str, Any] = {"type": self.type, where: self.name}
        if self.direction is not None:
            item["direction"] = self.direction
        if self.track_id is not None:
            class_id = int(self.class_id or 0)
            item.update(track_id=self.track_id, class_id=class_id,
                        label=class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id))
        if self.count is not None:
            item.update(count=self.count, max_objects=self.max_objects)
        if self.seconds is not None:
            item["duration_seconds" if self.type == "occupancy_end" else "dwell_seconds"] = round(self.seconds, 3)
        return item


def topic(source_id: str) -> str:
    return f"{TOPIC_PREFIX}{source_id}"


def encode(source_id: str, source_sequence: int, frame_index: int, capture_time: float, publish_time: float,
           events: Sequence[Event], class_names: Sequence[str]) -> list[bytes]:
    """Multipart message ``[topic, payload]``."""
    payload = {"schema": SCHEMA, "source": source_id, "source_sequence": source_sequence,
               "frame_index": frame_index, "capture_time": capture_time, "publish_time": publish_time,
               "events": [event.as_json(class_names) for event in events]}
    return [topic(source_id).encode(), json.dumps(payload, separators=(",", ":")).encode()]


def is_events_topic(topic_bytes: bytes) -> bool:
    return topic_bytes.startswith(TOPIC_PREFIX.encode())


def decode(parts: Sequence[bytes]) -> dict[str, Any]:
    """Parse ``[topic, payload]``; raises ValueError on anything that is not a v1 events message."""
    if len(parts) != 2:
        raise ValueError(f"expected 2 message frames (topic, payload), got {len(parts)}")
    message = json.loads(parts[1])
    if message.get("schema") != SCHEMA:
        raise ValueError(f"unsupported schema {message.get('schema')!r}, expected {SCHEMA!r}")
    if topic(str(message.get("source"))) != parts[0].decode():
        raise ValueError("topic and source field disagree")
    return message


def format_events(message: dict[str, Any]) -> str:
    """One line per event, for humans (``streamd subscribe --events``)."""
    head = f"{message['source']} #{message['frame_index']}"
    return "\n".join(f"{head}: {describe(event)}" for event in message["events"])


def describe(event: dict[str, Any]) -> str:
    kind = event["type"]
    who = f"id {event['track_id']} {event['label']}" if event.get("track_id") is not None else ""
    if kind == "line_cross":
        return f"{who} crossed {event['line']} {event['direction']}"
    if kind == "zone_enter":
        return f"{who} entered {event['zone']}"
    if kind == "zone_exit":
        return f"{who} left {event['zone']} after {event['dwell_seconds']:.1f} s"
    if kind == "zone_dwell":
        return f"{who} in {event['zone']} for {event['dwell_seconds']:.1f} s"
    if kind == "occupancy_start":
        return f"{event['zone']} holds {event['count']} (over {event['max_objects']}): occupancy alarm"
    if kind == "occupancy_end":
        return (f"{event['zone']} holds {event['count']}: occupancy alarm over after "
                f"{event['duration_seconds']:.1f} s")
    return json.dumps(event)
