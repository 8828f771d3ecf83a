"""Invalid configs: one clear message naming the key, exit status 2, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.errors import ConfigError
from tests.support import REPO


def valid_document(model: Path, image: Path) -> dict:
    return {
        "sources": [{"id": "cam1", "kind": "image", "url": str(image)}],
        "model": {"path": str(model)},
    }


def test_valid_config_resolves_paths_and_defaults(tiny_model: Path, tiny_image: Path) -> None:
    config = parse_config(valid_document(tiny_model, tiny_image))
    assert config.model.classes == ("a", "b", "c")  # from tiny.names beside the model
    assert config.sources[0].url == str(tiny_image)
    assert config.publish.endpoint == "tcp://127.0.0.1:5555"
    assert config.metrics.bind.startswith("127.0.0.1:")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path, tiny_model: Path, tiny_image: Path) -> None:
    document = valid_document(Path("tiny.onnx"), Path("tiny.png"))
    config = parse_config(document, base_dir=tmp_path)
    assert config.model.path == str(tmp_path / "tiny.onnx")


@pytest.mark.parametrize(("mutate", "key", "reason"), [
    (lambda d: d["model"].pop("path"), "model.path", "required key is missing"),
    (lambda d: d["sources"][0].pop("id"), "sources[0].id", "required key is missing"),
    (lambda d: d["model"].update(score_threshold="high"), "model.score_threshold", "expected a number"),
    (lambda d: d["sources"][0].update(loop="yes"), "sources[0].loop", "expected true or false"),
    (lambda d: d["sources"][0].update(kind="webcam"), "sources[0].kind", "unknown source kind 'webcam'"),
    (lambda d: d["model"].update(path="/nonexistent/model.onnx"), "model.path", "does not exist"),
    (lambda d: d["model"].update(colour="red"), "model.colour", "unknown key"),
    (lambda d: d["model"].update(score_threshold=1.5), "model.score_threshold", "between 0 and 1"),
    (lambda d: d.update(publish={"endpoint": "localhost"}), "publish.endpoint", "not a ZeroMQ endpoint"),
    (lambda d: d["sources"].append(dict(d["sources"][0])), "sources[1].id", "duplicate source id"),
    (lambda d: d.update(sources=[]), "sources", "at least one"),
])
def test_invalid_documents_name_the_key(tiny_model: Path, tiny_image: Path, mutate, key: str, reason: str) -> None:
    document = valid_document(tiny_model, tiny_image)
    mutate(document)
    with pytest.raises(ConfigError) as raised:
        parse_config(document)
    assert raised.value.key == key
    assert reason in str(raised.value)


CASES = {
    "missing_key": ("[[sources]]\nid = 'cam1'\nkind = 'image'\nurl = '{image}'\n[model]\nclasses = ['a']\n",
                    "model.path"),
    "wrong_type": ("[[sources]]\nid = 'cam1'\nkind = 'image'\nurl = '{image}'\n"
                   "[model]\npath = '{model}'\nnms_threshold = 'tight'\n", "model.nms_threshold"),
    "unknown_kind": ("[[sources]]\nid = 'cam1'\nkind = 'usb'\nurl = '{image}'\n[model]\npath = '{model}'\n",
                     "sources[0].kind"),
    "missing_model": ("[[sources]]\nid = 'cam1'\nkind = 'image'\nurl = '{image}'\n"
                      "[model]\npath = '/nope/missing.onnx'\nclasses = ['a']\n", "model.path"),
    "metrics_port_out_of_range": ("[[sources]]\nid = 'cam1'\nkind = 'image'\nurl = '{image}'\n"
                                  "[model]\npath = '{model}'\n[metrics]\nbind = '127.0.0.1:99999'\n", "metrics.bind"),
    "model_internal_key": ("[[sources]]\nid = 'cam1'\nkind = 'image'\nurl = '{image}'\n"
                           "[model]\npath = '{model}'\ninput_width = 416\n", "model.input_width"),
}


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_exits_2_naming_the_problem(tmp_path: Path, tiny_model: Path, tiny_image: Path,
                                        case: str, command: str) -> None:
    text, key = CASES[case]
    config = tmp_path / "bad.toml"
    config.write_text(text.format(image=tiny_image, model=tiny_model))
    result = subprocess.run([sys.executable, "-m", "streamd", command, "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert f"'{key}'" in result.stderr
    assert "invalid configuration" in result.stderr
    assert "publishing" not in result.stderr  # nothing started


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(tmp_path / "none.toml")],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert f"cannot read config file {tmp_path / 'none.toml'}: No such file or directory" in result.stderr
    assert "config key" not in result.stderr  # about the file, not a key


def test_config_that_is_not_toml_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[[sources]\nid = ")
    result = subprocess.run([sys.executable, "-m", "streamd", "check", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert f"config file {config} is not valid TOML" in result.stderr and "config key" not in result.stderr
