"""Jetson config keys: model.zero_copy (auto/on/off) and the jetson/auto decoders."""

from __future__ import annotations

import pytest

from streamd.config import parse_config
from streamd.errors import ConfigError
from tests.config.test_gpu_config import document, shared_model  # noqa: F401 - the autouse fixture


def test_zero_copy_defaults_to_auto_and_is_read() -> None:
    assert parse_config(document()).model.zero_copy == "auto"
    for mode in ("on", "off"):
        assert parse_config(document(zero_copy=mode, backend="tensorrt")).model.zero_copy == mode


def test_unknown_zero_copy_names_the_key() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document(zero_copy="yes"))
    assert error.value.key == "model.zero_copy" and "'auto', 'on', 'off'" in str(error.value)


@pytest.mark.parametrize("decoder", ["jetson", "auto"])
def test_jetson_and_auto_decoders_run_on_onnxruntime(decoder: str) -> None:
    """Both hand host BGR frames over, so unlike nvdec any detector takes them."""
    config = parse_config(document(decoder))
    assert config.sources[1].decoder == decoder and config.model.backend == "onnxruntime"


def test_jetson_decoder_is_for_file_and_rtsp_sources() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"id": "s", "kind": "synthetic", "decoder": "jetson"}],
                      "model": document()["model"]})
    assert error.value.key == "sources[0].decoder"
