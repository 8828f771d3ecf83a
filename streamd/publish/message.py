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
           class_names: Sequence[str], zones: Sequence[str] | None = None) -> list[bytes]:
    """Multipart message ``[topic, payload]``.

    Written by hand, one f-string a detection: the same bytes as ``json.dumps`` of the whole object
    (``_encode_reference``, which non-finite values and unusual types still take), in less time. Most of
    json.dumps's time is float repr; a box's corners, at a tenth of a pixel, are looked up in a table of
    the texts of tenths (``_box_texts``). Each class's start of an item and each source's start and end of
    the message are made once (``_item_prefixes``, ``_frame_text``).
    """
    # float64 before rounding, so JSON carries 0.9123 rather than float32 noise (0.91229999).
    scores = detections.scores.astype(np.float64).round(4).tolist()
    # A NaN or an infinity makes the sum non-finite (float32 values cannot overflow a float64 sum); those
    # take json.dumps's path, which spells them NaN / Infinity. So do times and counts that are not a plain
    # finite float and int, which the hand-written head would spell otherwise.
    if (not math.isfinite(sum(scores)) or type(capture_time) is not float
            or type(publish_time) is not float or not math.isfinite(capture_time + publish_time)
            or type(frame_index) is not int or type(sequence) is not int or type(frame_width) is not int
            or type(frame_height) is not int):
        return _encode_reference(source_id, frame_index, sequence, capture_time, publish_time, frame_width,
                                 frame_height, model_id, detections, class_names, zones)
    boxes = _box_texts(detections.boxes_xyxy)
    if boxes is None:  # a corner below 0 (or -0.0), beyond the table or not finite: each one's repr
        boxes_array = detections.boxes_xyxy.astype(np.float64).round(1)
        if not math.isfinite(boxes_array.sum()):
            return _encode_reference(source_id, frame_index, sequence, capture_time, publish_time, frame_width,
                                     frame_height, model_id, detections, class_names, zones)
        boxes = [f"{b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r}" for b in boxes_array.tolist()]
    class_ids = detections.class_ids.tolist()
    prefix = _item_prefixes(class_names)
    # float repr is what json.dumps writes for a finite float.
    # A source with zones (streamd.analytics): each detection ends with its zones, a JSON list of names, written
    # in the same f-string (a second pass over the items would copy each one again).
    if detections.track_ids is None:
        if zones is None:
            items = [f'{prefix[c]}{s!r},"box":[{b}]}}' for c, s, b in zip(class_ids, scores, boxes)]
        else:
            items = [f'{prefix[c]}{s!r},"box":[{b}],"zones":{z}}}' for c, s, b, z in zip(class_ids, scores, boxes,
                                                                                        zones)]
    elif zones is None:  # tracking on: every detection says which track it is (null: none)
        items = [f'{prefix[c]}{s!r},"box":[{b}],"track_id":{t},"track_age_frames":{a}}}' if t > 0 else
                 f'{prefix[c]}{s!r},"box":[{b}],"track_id":null,"track_age_frames":null}}'
                 for c, s, b, t, a in zip(class_ids, scores, boxes, detections.track_ids.tolist(),
                                          detections.track_ages_frames.tolist())]
    else:
        items = [f'{prefix[c]}{s!r},"box":[{b}],"track_id":{t},"track_age_frames":{a},"zones":{z}}}' if t > 0 else
                 f'{prefix[c]}{s!r},"box":[{b}],"track_id":null,"track_age_frames":null,"zones":{z}}}'
                 for c, s, b, t, a, z in zip(class_ids, scores, boxes, detections.track_ids.tolist(),
                                             detections.track_ages_frames.tolist(), zones)]
    start, end = _frame_text(source_id, frame_width, frame_height, model_id)
    return [start[0], f'{start[1]}{frame_index},"sequence":{sequence},"capture_time":{capture_time!r},'
                      f'"publish_time":{publish_time!r}{end}{",".join(items)}]}}'.encode()]


# The table: _TENTHS[0][k] is repr(k / 10), what json.dumps writes for a corner that rounds to k tenths of a
# pixel; _TENTHS[1], the bits of float(its length) (see _box_texts). Grown to the largest corner met, up to
# _TENTHS_LIMIT (beyond: each corner's repr). One tuple, replaced whole, so another thread reads both of one.
_TENTHS: tuple[list[str], int] = ([], 0)
_TENTHS_LIMIT = 10 * 16384


def _float_bits(value: float) -> int:
    """A float64's bits as an unsigned integer."""
    return int(np.float64(value).view(np.uint64))


_TENTHS_LIMIT_BITS = _float_bits(_TENTHS_LIMIT)


def _grow_tenths(top: int) -> list[str]:
    """The table, past ``top``."""
    global _TENTHS
    table = _TENTHS[0]
    table = table + [repr(k / 10) for k in range(len(table), min(_TENTHS_LIMIT, top + 4096))]
    _TENTHS = (table, _float_bits(len(table)))
    return table


def _box_texts(boxes_xyxy: np.ndarray) -> list[str] | None:
    """Each box's corners as ``x1,y1,x2,y2``, rounded to a tenth of a pixel and written as json.dumps writes
    ``round(corner, 1)``: the table's entry k for k = rint(10 corner), which numpy's round divides by 10 (it
    scales, rounds to an integer and scales back). None where a corner is negative (-0.0 included: its
    repr has the sign), not finite or beyond the table."""
    if boxes_xyxy.size == 0:
        return []
    tenths = np.multiply(boxes_xyxy, 10.0, dtype=np.float64)  # in float64, as astype(float64) * 10
    np.rint(tenths, out=tenths)
    # One test for all: read as unsigned integers, the bits of non-negative floats are in their order, and
    # those of infinity, NaN, -0.0 and anything below 0 come after every finite one's.
    top = int(np.maximum.reduce(tenths.view(np.uint64).reshape(-1)))
    if top >= _TENTHS_LIMIT_BITS:
        return None
    table, end_bits = _TENTHS
    if top >= end_bits:
        table = _grow_tenths(int(np.maximum.reduce(tenths.reshape(-1))))
    return [f"{table[x1]},{table[y1]},{table[x2]},{table[y2]}"
            for x1, y1, x2, y2 in tenths.astype(np.intp).reshape(-1, 4).tolist()]


class _ItemPrefixes(dict):
    """Class id -> the start of a detection's JSON, up to its score: ``{"class_id":c,"label":"...","score":``."""

    def __init__(self, class_names: Sequence[str]) -> None:
        super().__init__()
        self._labels = tuple(json.dumps(name) for name in class_names)  # json.dumps-ed once per class list

    def __missing__(self, class_id: int) -> str:
        # A class beyond the names is labelled by its number; a negative one indexes the names from the
        # end, as class_names[c] does in _encode_reference.
        label = self._labels[class_id] if class_id < len(self._labels) else _json_str(class_id)
        text = self[class_id] = f'{{"class_id":{class_id},"label":{label},"score":'
        return text


_dumps = json.JSONEncoder(separators=(",", ":")).encode
# id of a class-name tuple -> (the tuple, its item prefixes); the tuple is held, so its id stays its own.
_PREFIXES: dict[int, tuple[tuple[str, ...], _ItemPrefixes]] = {}


def _item_prefixes(class_names: Sequence[str]) -> _ItemPrefixes:
    if not isinstance(class_names, tuple):  # a list may change between calls: no cache
        return _ItemPrefixes(class_names)
    cached = _PREFIXES.get(id(class_names))
    if cached is None or cached[0] is not class_names:
        if len(_PREFIXES) >= 16:
            _PREFIXES.clear()
        cached = _PREFIXES[id(class_names)] = (class_names, _ItemPrefixes(class_names))
    return cached[1]


# (source id, frame width, frame height, model id) -> ((topic, the payload up to the frame index), the
# payload from after the publish time up to the detections' opening bracket).
_FRAME_TEXT: dict[tuple[str, int, int, str], tuple[tuple[bytes, str], str]] = {}


def _frame_text(source_id: str, frame_width: int, frame_height: int, model_id: str) -> tuple[tuple[bytes, str], str]:
    key = (source_id, frame_width, frame_height, model_id)
    cached = _FRAME_TEXT.get(key)
    if cached is None:
        if len(_FRAME_TEXT) >= 4096:
            _FRAME_TEXT.clear()
        # The fields in json.dumps's order, written by it: only the four that change every frame are left out.
        start = _dumps({"schema": SCHEMA, "source": source_id})[:-1] + ',"frame_index":'
        end = "," + _dumps({"frame_size": [frame_width, frame_height], "model": model_id})[1:-1] + ',"detections":['
        cached = _FRAME_TEXT[key] = ((source_id.encode(), start), end)
    return cached


def _json_str(class_id: int) -> str:
    return json.dumps(str(class_id))


def _encode_reference(source_id: str, frame_index: int, sequence: int, capture_time: float, publish_time: float,
                      frame_width: int, frame_height: int, model_id: str, detections: Detections,
                      class_names: Sequence[str], zones: Sequence[str] | None = None) -> list[bytes]:
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
    if zones is not None:
        for item, zone_list in zip(items, zones):
            item["zones"] = json.loads(zone_list)
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
