"""A config error is the only line `streamd run`/`check` print: no warning about another key before it (the
COCO names guessed for an 80-class model wait until the whole config is valid), and a typo'd key or section
name gets the closest valid one."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.errors import ConfigError
from tests.support import REPO, write_tiny_yolox_model


def _config_text(model: Path, publish_key: str = "endpoint") -> str:
    return f"""
[[sources]]
id = "cam"
kind = "synthetic"

[model]
path = "{model}"

[publish]
{publish_key} = "tcp://127.0.0.1:5555"
"""


@pytest.fixture
def coco_sized_model(tmp_path: Path) -> Path:
    """80 classes and no names file beside it: loading it guesses the COCO names, with a warning."""
    return write_tiny_yolox_model(tmp_path / "model.onnx", num_classes=80)


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_config_error_is_the_only_line(tmp_path: Path, coco_sized_model: Path, command: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(_config_text(coco_sized_model, publish_key="endpont"))
    result = subprocess.run([sys.executable, "-m", "streamd", command, "--config", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "streamd: invalid configuration: config key 'publish.endpont': unknown key; did you mean 'endpoint'? "
        "expected one of ['curve_authorized_keys', 'curve_secret_key', 'endpoint', 'send_hwm', "
        "'wait_for_subscriber_seconds']"]


def _document(model: Path, **sections: dict) -> dict:
    return {"sources": [{"id": "cam", "kind": "synthetic"}], "model": {"path": str(model)}, **sections}


def test_the_coco_warning_comes_once_the_config_is_valid(coco_sized_model: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamd.config.load"):
        with pytest.raises(ConfigError):
            parse_config(_document(coco_sized_model, publish={"endpont": "tcp://127.0.0.1:5555"}))
        assert caplog.records == []
        config = parse_config(_document(coco_sized_model))
    assert len(config.model.classes) == 80
    assert [record.getMessage() for record in caplog.records] == [
        f"model.classes not set and no model.names or classes.txt beside {coco_sized_model}: the model has 80 "
        "classes, using the COCO class names"]


@pytest.mark.parametrize(("sections", "key", "hint"), [
    ({"publish": {"endpont": "tcp://127.0.0.1:5555"}}, "publish.endpont", "did you mean 'endpoint'? "),
    ({"metrics": {"bnid": "127.0.0.1:9400"}}, "metrics.bnid", "did you mean 'bind'? "),
    ({"preview": {"enable": True}}, "preview.enable", "did you mean 'enabled'? "),
    ({"metric": {"bind": "127.0.0.1:9400"}}, "metric", "did you mean 'metrics'? "),
    ({"publish": {"zzz": 1}}, "publish.zzz", ""),  # nothing close: no guess
])
def test_a_typo_gets_the_closest_key(tiny_model: Path, sections: dict, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_document(tiny_model, **sections))
    assert raised.value.key == key
    what = "section" if "." not in key else "key"
    assert raised.value.reason.startswith(f"unknown {what}; {hint}expected one of [")
