"""decoder = "nvdec": config validation, reader choice and clear errors where NVDEC cannot run (CPU, CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.config.schema import SourceConfig
from streamd.errors import ConfigError, SourceError
from streamd.sources import nvdec
from streamd.sources.device_image import DeviceNV12
from streamd.sources.readers import VideoFileReader, make_reader


def document(model: Path, source: dict) -> dict:
    return {"sources": [{"id": "cam1", **source}], "model": {"path": str(model)}}


def test_decoder_defaults_to_opencv_and_accepts_nvdec(tiny_model: Path, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    assert parse_config(document(tiny_model, {"kind": "file", "url": str(video)})).sources[0].decoder == "opencv"
    nvdec_document = document(tiny_model, {"kind": "file", "url": str(video), "decoder": "nvdec"})
    nvdec_document["model"].update(backend="tensorrt", max_batch=2)  # NVDEC frames need the batched GPU detector
    config = parse_config(nvdec_document)
    assert config.sources[0].decoder == "nvdec"


@pytest.mark.parametrize(("source", "message"), [
    ({"kind": "file", "url": "v.mp4", "decoder": "cuvid"}, "is not one of"),
    ({"kind": "synthetic", "decoder": "nvdec"}, "applies to file, rtsp sources, not synthetic"),
])
def test_bad_decoder_is_a_config_error(tiny_model: Path, source: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_config(document(tiny_model, source))
    assert "decoder" in str(raised.value)


def test_make_reader_picks_the_decoder() -> None:
    assert isinstance(make_reader(SourceConfig("a", "file", "v.mp4")), VideoFileReader)
    assert isinstance(make_reader(SourceConfig("a", "file", "v.mp4", decoder="nvdec")), nvdec.NvdecReader)


@pytest.mark.skipif(importlib.util.find_spec("PyNvVideoCodec") is not None, reason="PyNvVideoCodec is installed")
def test_missing_package_is_a_clear_error_naming_the_source() -> None:
    config = SourceConfig("door-cam", "file", "v.mp4", decoder="nvdec")
    with pytest.raises(SourceError, match=r"door-cam.*PyNvVideoCodec.*streamd\[nvdec\]"):
        nvdec.preflight(config)
    reader = make_reader(config)
    with pytest.raises(SourceError, match="PyNvVideoCodec"):
        reader.open()
    reader.close()


def test_device_frame_releases_once() -> None:
    calls = []
    image = DeviceNV12(0x1000, 0x2000, 640, 360, 640, 640, release=lambda: calls.append(1))
    assert image.shape == (360, 640, 3) and image.nbytes == 640 * 360 * 3 // 2
    image.release()
    image.release()
    assert calls == [1] and image.released


def test_rtsp_probe_fails_a_dead_or_silent_server_before_the_demuxer() -> None:
    """An nvdec RTSP source opens like an OpenCV one (OpenCV demuxes it): the OPTIONS probe refuses dead
    and silent servers first, before PyNvVideoCodec or a GPU is needed."""
    import socket  # noqa: PLC0415

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    reader = nvdec.NvdecReader(SourceConfig("cam", "rtsp", f"rtsp://127.0.0.1:{port}/x", decoder="nvdec"))
    with pytest.raises(SourceError, match=r"cannot open RTSP stream .* \(tcp\): connection refused"):
        reader.open()
    reader.close()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x"
        reader = nvdec.NvdecReader(SourceConfig("cam", "rtsp", url, decoder="nvdec", open_timeout_seconds=0.3))
        with pytest.raises(SourceError, match="no answer from"):
            reader.open()
        reader.close()
