from __future__ import annotations

from pathlib import Path

import pytest

from streamd.quantize.errors import QuantizeError
from streamd.quantize.model import MIN_OPSET, load_model
from tests.quantize.tiny_conv_yolox import CHANNELS, INPUT_SIZE, write_tiny_conv_yolox


def test_opset_11_is_upgraded_and_conv_macs_counted(tiny_conv_model: Path) -> None:
    info = load_model(tiny_conv_model)
    opset = next(o.version for o in info.model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == MIN_OPSET
    assert (info.input_name, info.input_width, info.input_height) == ("images", INPUT_SIZE, INPUT_SIZE)
    # stage0: 3x3 conv, 3 -> 8 channels, stride 2 on 64x64 -> 8 x 32 x 32 outputs x 27 MACs each
    assert info.conv_macs["stage0"] == CHANNELS * 32 * 32 * 27
    assert len(info.conv_macs) == 5 + 9


def test_dynamic_input_needs_a_size(tmp_path: Path) -> None:
    path = write_tiny_conv_yolox(tmp_path / "dynamic.onnx", dynamic_input=True)
    with pytest.raises(QuantizeError, match="--input-size"):
        load_model(path)
    info = load_model(path, input_size=(64, 64))
    assert (info.input_width, info.input_height) == (64, 64)


def test_unreadable_and_missing_models_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf")
    with pytest.raises(QuantizeError, match="cannot read"):
        load_model(garbage)
    with pytest.raises(QuantizeError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")
