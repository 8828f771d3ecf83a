"""Built-in models and the out-of-the-box demo config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamd.config.load import load_config, parse_config
from streamd.errors import ConfigError
from streamd.models import DEMO_CONFIG_TOML, builtin_model, demo_config_document
from streamd.sources.synthetic import CLASSES, TRAINING_SEED_BASE

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
MAX_PACKAGE_DATA_BYTES = 4 * 1024 * 1024


def test_synthetic_shapes_ships_with_its_classes() -> None:
    model = builtin_model("synthetic-shapes")
    assert model.onnx_path.is_file()
    assert model.classes == CLASSES
    data_bytes = sum(p.stat().st_size for p in model.onnx_path.parent.iterdir() if p.is_file())
    assert data_bytes <= MAX_PACKAGE_DATA_BYTES


def test_the_model_has_the_official_yolox_layout() -> None:
    import onnxruntime  # noqa: PLC0415

    from streamd.yolox.layout import OutputInfo, detect_layout  # noqa: PLC0415

    session = onnxruntime.InferenceSession(str(builtin_model("synthetic-shapes").onnx_path),
                                           providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "images" and model_input.shape == [1, 3, 320, 320]
    outputs = [OutputInfo(o.name, tuple(o.shape)) for o in session.get_outputs()]
    assert detect_layout(outputs, 320, 320, len(CLASSES)) == "yolox"


def test_unknown_builtin_is_a_config_error_naming_model_path() -> None:
    with pytest.raises(ConfigError) as caught:
        builtin_model("no-such-model")
    assert caught.value.key == "model.path"
    assert "synthetic-shapes" in str(caught.value)
    with pytest.raises(ConfigError):
        parse_config({"sources": [{"id": "s", "kind": "synthetic"}], "model": {"path": "builtin:nope"}})


def test_demo_config_file_and_builtin_default_are_the_same() -> None:
    assert (REPO / "configs" / "demo.toml").read_text() == DEMO_CONFIG_TOML
    assert tomllib.loads(DEMO_CONFIG_TOML) == demo_config_document()
    from_file = load_config(REPO / "configs" / "demo.toml")
    builtin = parse_config(demo_config_document())
    assert from_file.sources == builtin.sources and from_file.model == builtin.model
    (source,) = builtin.sources
    assert source.kind == "synthetic" and source.seed < TRAINING_SEED_BASE  # a held-out scene
    assert builtin.model.classes == CLASSES and builtin.model.backend == "onnxruntime"
