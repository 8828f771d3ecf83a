"""Fixtures of the quantize tests: a tiny Conv YOLOX model and a folder of images for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.quantize.tiny_conv_yolox import write_images, write_tiny_conv_yolox


@pytest.fixture(scope="session")
def tiny_conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_conv_yolox(tmp_path_factory.mktemp("model") / "tiny_conv.onnx")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_images(folder, 24)
    return folder
