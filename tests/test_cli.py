"""The ``streamd`` command's help and messages: every command says what it does, its
flags say their defaults, messages name files once and normalised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO


def streamd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamd", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "COLUMNS": "1000"})


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_describe_themselves_and_their_log_level(command: str) -> None:
    result = streamd(command, "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    description = lines[lines.index("") + 1]  # the paragraph after the usage line
    assert description and not description.startswith(("options", "  "))
    assert "log messages at this level and above (default:" in result.stdout


def test_top_level_help_points_to_commands_an_install_has() -> None:
    result = streamd("--help")
    assert "tools/quantize.py" not in result.stdout
    assert "streamd quantize --help" in result.stdout


def test_check_of_a_synthetic_source_names_its_kind_once() -> None:
    result = streamd("check")  # the built-in demo: one synthetic source
    assert "source demo (synthetic): ok" in result.stdout
    assert "synthetic synthetic" not in result.stdout


def test_messages_show_normalised_paths(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    result = streamd("run", "--config", f"{tmp_path}/configs/../none.toml")
    assert result.returncode == 2
    assert f"cannot read config file {tmp_path}/none.toml" in result.stderr


@pytest.mark.parametrize("command", ["run", "check"])
def test_coco_default_is_said_where_the_user_sees_it(tmp_path: Path, tiny_image: Path, command: str) -> None:
    """Config loading logs the choice; logging is set up before it, for run and check alike."""
    from tests.support import write_tiny_yolox_model  # noqa: PLC0415

    model = write_tiny_yolox_model(tmp_path / "detector.onnx", num_classes=80)
    config = tmp_path / "coco.toml"
    config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                      f'[model]\npath = "{model}"\n[publish]\nendpoint = "tcp://127.0.0.1:*"\n'
                      f'[metrics]\nenabled = false\n')
    result = streamd(command, "--config", str(config))
    assert result.returncode == 0, result.stderr  # run: one image, no loop, ends by itself
    assert "using the COCO class names" in result.stderr


@pytest.mark.parametrize("command", ["run", "check", "subscribe", "bench", "keys", "proxy", "doctor", "quantize"])
def test_help_states_each_default_once_and_never_none(command: str) -> None:
    import re  # noqa: PLC0415

    result = streamd(command, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for empty in ("(default: None)", "(default: [])", "(default: False)", "(default: )"):
        assert empty not in text, f"streamd {command} --help: {empty}"
    # One "(default" per option: the help's own wording, or argparse's, not both.
    options = re.split(r"\n  (?=-)", text)
    doubled = [option for option in options if option.count("(default") > 1]
    assert not doubled, f"streamd {command} --help: {doubled}"
