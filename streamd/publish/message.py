"""The versioned message schema (documented in README, "Message schema").

Each message is two ZeroMQ frames: the topic (the source id, UTF-8) and a JSON object.
Bump SCHEMA when a field changes meaning or disappears; adding a field keeps the version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamd.yolox.detections import Detections

SCHEMA = "streamd.detections/1"


def encode(source_id: str, frame_index: int, sequence: int, capture_time: float, publish_time: float,
           frame_width: int, frame_height: int, model_id: str, detections: Detections,
           class_names: Sequence[str]) -> list[bytes]:
    """Multipart message ``[topic, payload]``."""
    # float64 before rounding, so JSON carries 0.9123 rather than float32 noise (0.91229999).
    boxes = detections.boxes_xyxy.astype(np.float64).round(1).tolist()
    scores = detections.scores.astype(np.float64).round(4).tolist()
    class_ids = detections.class_ids.tolist()
    items = [{"class_id": c, "label": class_names[c] if c < len(class_names) else str(c), "score": s, "box": b}
             for c, s, b in zip(class_ids, scores, boxes)]
    if detections.track_ids is not None:  # tracking on: every detection says which track it is (null: none)
        for item, track_id, age in zip(items, detections.track_ids.tolist(), detections.track_ages_frames.tolist()):
            item["track_id"] = track_id if track_id > 0 else None
            item["track_age_frames"] = age if track_id > 0 else None
    payload = {
        "schema": SCHEMA,
        "source": source_id,
        "frame_index": frame_index,
        "sequence": sequence,
        "capture_time": capture_time,
        "publish_time": publish_time,
        "frame_size": [frame_width, frame_height],
        "model": model_id,
        "detections": items,
    }
    return [source_id.encode(), json.dumps(payload, separators=(",", ":")).encode()]


def decode(parts: Sequence[bytes]) -> dict[str, Any]:
    """Parse ``[topic, payload]``; raises ValueError on anything that is not a v1 message."""
    if len(parts) != 2:
        raise ValueError(f"expected 2 message frames (topic, payload), got {len(parts)}")
    message = json.loads(parts[1])
    if message.get("schema") != SCHEMA:
        raise ValueError(f"unsupported schema {message.get('schema')!r}, expected {SCHEMA!r}")
    if message.get("source") != parts[0].decode():
        raise ValueError("topic and source field disagree")
    return message
