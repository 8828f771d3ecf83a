"""Track ids in messages (schema streamd.detections/1, fields added) and in ``streamd subscribe``'s lines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamd.config.load import parse_config
from streamd.errors import ConfigError
from streamd.publish.message import SCHEMA, decode, encode
from streamd.publish.subscriber import format_message
from streamd.yolox.detections import Detections


def detections(track_ids: list[int] | None) -> Detections:
    plain = Detections(np.array([[1.0, 2.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]], np.float32),
                       np.array([0.9, 0.4], np.float32), np.array([0, 1], np.int32))
    if track_ids is None:
        return plain
    return dataclasses.replace(plain, track_ids=np.array(track_ids, np.int64),
                               track_ages_frames=np.array([12, 0], np.int64))


def test_tracked_detections_carry_their_id_and_age_and_null_when_in_no_track() -> None:
    message = decode(encode("cam", 7, 9, 100.0, 100.5, 640, 480, "m", detections([3, -1]), ("a", "b")))
    assert message["schema"] == SCHEMA == "streamd.detections/1"
    first, second = message["detections"]
    assert (first["track_id"], first["track_age_frames"]) == (3, 12)
    assert (second["track_id"], second["track_age_frames"]) == (None, None)
    assert format_message(message) == "cam #7 (500 ms): id 3 a 0.90 [1, 2, 30, 40], b 0.40 [50, 60, 70, 80]"


def test_without_tracking_messages_are_as_before() -> None:
    message = decode(encode("cam", 7, 9, 100.0, 100.5, 640, 480, "m", detections(None), ("a", "b")))
    assert set(message["detections"][0]) == {"class_id", "label", "score", "box"}


BASE = {"sources": [{"id": "a", "kind": "synthetic"}], "model": {"path": "builtin:synthetic-shapes"}}


def test_tracking_is_on_by_default_and_configurable() -> None:
    assert parse_config(BASE).tracking.enabled
    config = parse_config({**BASE, "tracking": {"enabled": False, "lost_track_buffer_frames": 60}})
    assert not config.tracking.enabled and config.tracking.lost_track_buffer_frames == 60


@pytest.mark.parametrize(("table", "key"), [
    ({"high_score_threshold": 1.5}, "tracking.high_score_threshold"),
    ({"high_score_threshold": 0.7, "new_track_score_threshold": 0.6}, "tracking.new_track_score_threshold"),
    ({"lost_track_buffer_frames": -1}, "tracking.lost_track_buffer_frames"),
    ({"buffer": 30}, "tracking.buffer"),
])
def test_bad_tracking_values_name_their_key(table: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({**BASE, "tracking": table})
    assert key in str(error.value)


def test_tracking_page_and_example_config_document_every_tracking_key() -> None:
    from streamd.config.schema import TrackingConfig
    from tests.support import REPO

    page = (REPO / "docs" / "tracking.md").read_text()
    table = page[page.index("`[tracking]` ("):]
    table = table[:table.index("\n\n", table.index("| key |"))]
    example = (REPO / "configs" / "example.toml").read_text()
    example = example[example.index("[tracking]"):]
    for field in dataclasses.fields(TrackingConfig):
        assert f"| `{field.name}` | `{str(getattr(TrackingConfig(), field.name)).lower()}` |" in table, field.name
        assert f"\n{field.name} = " in example, f"configs/example.toml's [tracking] lacks {field.name}"
