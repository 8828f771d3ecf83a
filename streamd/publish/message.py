"""The versioned message schema (documented in docs/output.md).

Each message is two ZeroMQ frames: the topic (the source id, UTF-8) and a JSON object.
Bump SCHEMA when a field changes meaning or disappears; adding a field keeps the version.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamd.yolox.detections import Detections

SCHEMA = "streamd.detections/1"


def encode(source_id: str, frame_index: int, sequence: int, capture_time: float, publish_time: float,
           frame_width: int, frame_height: int, model_id: str, detections: Detections,
           class_names: Sequence[str]) -> list[bytes]:
    """Multipart message ``[topic, payload]``.

    The detections are written by hand, one f-string each, and the rest by ``json.dumps``: the same
    bytes as ``json.dumps`` of the whole object (``_encode_reference``, which non-finite values still
    take), in less time: 23.4 against 32.0 µs for 9 tracked detections, 51.7 against 82.2 µs for 30 (2-core VM).
    """
    # float64 before rounding, so JSON carries 0.9123 rather than float32 noise (0.91229999).
    boxes_array = detections.boxes_xyxy.astype(np.float64).round(1)
    scores_array = detections.scores.astype(np.float64).round(4)
    # A NaN or an infinity makes its sum non-finite (float32 values cannot overflow a float64 sum); those
    # take json.dumps's path, which spells them NaN / Infinity.
    if not math.isfinite(boxes_array.sum() + scores_array.sum()):
        return _encode_reference(source_id, frame_index, sequence, capture_time, publish_time, frame_width,
                                 frame_height, model_id, detections, class_names)
    boxes = boxes_array.tolist()
    scores = scores_array.tolist()
    class_ids = detections.class_ids.tolist()
    labels = _json_labels(class_names)
    count = len(labels)
    # float repr is what json.dumps writes for a finite float; labels are json.dumps-ed once per class list.
    if detections.track_ids is None:
        items = [f'{{"class_id":{c},"label":{labels[c] if c < count else _json_str(c)},"score":{s!r},'
                 f'"box":[{b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r}]}}'
                 for c, s, b in zip(class_ids, scores, boxes)]
    else:  # tracking on: every detection says which track it is (null: none)
        items = [f'{{"class_id":{c},"label":{labels[c] if c < count else _json_str(c)},"score":{s!r},'
                 f'"box":[{b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r}],'
                 f'"track_id":{t if t > 0 else "null"},"track_age_frames":{a if t > 0 else "null"}}}'
                 for c, s, b, t, a in zip(class_ids, scores, boxes, detections.track_ids.tolist(),
                                          detections.track_ages_frames.tolist())]
    head = _dumps({"schema": SCHEMA, "source": source_id, "frame_index": frame_index, "sequence": sequence,
                   "capture_time": capture_time, "publish_time": publish_time,
                   "frame_size": [frame_width, frame_height], "model": model_id})
    return [source_id.encode(), f'{head[:-1]},"detections":[{",".join(items)}]}}'.encode()]


_dumps = json.JSONEncoder(separators=(",", ":")).encode
# id of a class-name tuple -> (the tuple, its names json.dumps-ed); the tuple is held, so its id stays its own.
_LABELS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _json_labels(class_names: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(class_names, tuple):  # a list may change between calls: no cache
        return tuple(json.dumps(name) for name in class_names)
    cached = _LABELS.get(id(class_names))
    if cached is None or cached[0] is not class_names:
        if len(_LABELS) >= 16:
            _LABELS.clear()
        cached = _LABELS[id(class_names)] = (class_names, tuple(json.dumps(name) for name in class_names))
    return cached[1]


def _json_str(class_id: int) -> str:
    return json.dumps(str(class_id))


def _encode_reference(source_id: str, frame_index: int, sequence: int, capture_time: float, publish_time: float,
                      frame_width: int, frame_height: int, model_id: str, detections: Detections,
                      class_names: Sequence[str]) -> list[bytes]:
    """The message built as one object and ``json.dumps``-ed: what ``encode`` must equal byte for byte."""
    boxes = detections.boxes_xyxy.astype(np.float64).round(1).tolist()
    scores = detections.scores.astype(np.float64).round(4).tolist()
    class_ids = detections.class_ids.tolist()
    items = [{"class_id": c, "label": class_names[c] if c < len(class_names) else str(c), "score": s, "box": b}
             for c, s, b in zip(class_ids, scores, boxes)]
    if detections.track_ids is not None:
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
