"""Fixtures shared by every test package; helpers live in tests/support.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import DaemonProcess, required, write_tiny_yolox_model


def pytest_configure(config: pytest.Config) -> None:
    required()  # before any test runs: an unknown name in STREAMD_REQUIRE is a usage error


def pytest_report_header(config: pytest.Config) -> str:
    names = required()
    return f"STREAMD_REQUIRE: {', '.join(sorted(names)) if names else '(none: missing test prerequisites skip)'}"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A tiny model that finds 12 objects (classes a/b/c) on any 64x64-letterboxed frame."""
    planted = {cell: (0.5, 0.5, 0.5, 0.5, 0.9 - 0.01 * cell, cell % 3) for cell in range(0, 48, 4)}
    write_tiny_yolox_model(tmp_path / "tiny.onnx", planted=planted)
    (tmp_path / "tiny.names").write_text("a\nb\nc\n")
    return tmp_path / "tiny.onnx"


@pytest.fixture
def tiny_image(tmp_path: Path) -> Path:
    import cv2  # noqa: PLC0415

    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 90, np.uint8))
    return path


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    started: list[DaemonProcess] = []

    def start(config_text: str, env: dict[str, str] | None = None, name: str = "daemon") -> DaemonProcess:
        config_path = tmp_path / f"{name}.toml"
        config_path.write_text(config_text)
        daemon = DaemonProcess(config_path, tmp_path / f"{name}.log", env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
