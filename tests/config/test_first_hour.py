"""Config behaviour a new user meets first: ports in range, the [model] keys a user
writes, COCO names by default, normalised paths, a missing media file left to the source."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.config.coco import COCO_CLASSES
from streamd.errors import ConfigError
from tests.support import COCO_CLASSES as COCO_CLASSES_FILE
from tests.support import YOLOX_NANO, require_shared, write_tiny_yolox_model


def _document(model: Path, image: Path, **sections: dict) -> dict:
    return {"sources": [{"id": "cam1", "kind": "image", "url": str(image)}], "model": {"path": str(model)},
            **sections}


@pytest.mark.parametrize(("section", "key", "value"), [
    ("metrics", "bind", "127.0.0.1:99999"),
    ("publish", "endpoint", "tcp://127.0.0.1:70000"),
])
def test_port_out_of_range_is_a_config_error(tiny_model: Path, tiny_image: Path, section: str, key: str,
                                             value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_document(tiny_model, tiny_image, **{section: {key: value}}))
    assert raised.value.key == f"{section}.{key}"
    assert "out of range" in raised.value.reason


def test_model_key_typo_lists_the_keys_a_user_writes(tiny_model: Path, tiny_image: Path) -> None:
    document = _document(tiny_model, tiny_image)
    document["model"]["score_treshold"] = 0.5
    with pytest.raises(ConfigError) as raised:
        parse_config(document)
    assert raised.value.key == "model.score_treshold"
    for user_key in ("'path'", "'classes'", "'input_size'", "'score_threshold'"):
        assert user_key in raised.value.reason
    assert "input_width" not in raised.value.reason and "input_height" not in raised.value.reason


@pytest.mark.parametrize("internal_key", ["input_width", "input_height"])
def test_internal_size_keys_are_rejected(tiny_model: Path, tiny_image: Path, internal_key: str) -> None:
    document = _document(tiny_model, tiny_image)
    document["model"][internal_key] = 416
    with pytest.raises(ConfigError) as raised:
        parse_config(document)
    assert raised.value.key == f"model.{internal_key}"
    assert "input_size = [width, height]" in raised.value.reason


def test_an_80_class_model_without_names_gets_the_coco_names(tmp_path: Path, tiny_image: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    model = write_tiny_yolox_model(tmp_path / "detector.onnx", num_classes=80)  # no names file beside it
    with caplog.at_level(logging.INFO, logger="streamd.config"):
        config = parse_config(_document(model, tiny_image))
    assert config.model.classes == COCO_CLASSES
    assert "using the COCO class names" in caplog.text


def test_yolox_nano_alone_gets_names_that_match_coco_classes_txt(tmp_path: Path, tiny_image: Path) -> None:
    require_shared(YOLOX_NANO, COCO_CLASSES_FILE)
    model = Path(shutil.copy(YOLOX_NANO, tmp_path / "yolox_nano.onnx"))
    config = parse_config(_document(model, tiny_image))
    assert config.model.classes == tuple(COCO_CLASSES_FILE.read_text().split("\n")[:80])


def test_a_model_with_other_class_counts_still_asks_for_names(tmp_path: Path, tiny_image: Path) -> None:
    model = write_tiny_yolox_model(tmp_path / "detector.onnx", num_classes=3)
    with pytest.raises(ConfigError) as raised:
        parse_config(_document(model, tiny_image))
    assert raised.value.key == "model.classes"
    assert "the model has 3 classes" in raised.value.reason


def test_paths_are_normalised(tmp_path: Path, tiny_model: Path, tiny_image: Path) -> None:
    (tmp_path / "configs").mkdir()
    document = _document(Path("../tiny.onnx"), Path("../configs/../tiny.png"))
    config = parse_config(document, base_dir=tmp_path / "configs")
    assert config.model.path == str(tiny_model)
    assert config.sources[0].url == str(tiny_image)


def test_a_missing_media_file_is_left_to_the_source(tmp_path: Path, tiny_model: Path) -> None:
    """Not a config error: the source retries it like a dead camera (tests/daemon/test_missing_media.py)."""
    config = parse_config(_document(tiny_model, Path("not-there-yet.png")), base_dir=tmp_path)
    assert config.sources[0].url == str(tmp_path / "not-there-yet.png")


def test_status_interval_must_not_be_negative(tiny_model: Path, tiny_image: Path) -> None:
    assert parse_config(_document(tiny_model, tiny_image)).daemon.status_interval_seconds == 60
    with pytest.raises(ConfigError) as raised:
        parse_config(_document(tiny_model, tiny_image, daemon={"status_interval_seconds": -1}))
    assert raised.value.key == "daemon.status_interval_seconds"
