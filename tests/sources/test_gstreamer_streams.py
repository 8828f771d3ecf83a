"""decoder = "jetson" against cameras that are not the plain test stream: H.264 with an audio stream (listed
first or second; only the video is linked), and H.265, which fails the open saying it is not H.264."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.sources.gstreamer import GStreamerReader
from tests.sources.rtsp_support import SYSTEM_PYTHON, gstreamer_capture_missing_reason
from tests.support import skip_unless_required

SERVER = Path(__file__).with_name("av_rtsp_server.py")


@pytest.fixture(scope="module")
def av_server(rtsp_available: None) -> Iterator[tuple[int, list[str]]]:
    reason = gstreamer_capture_missing_reason()
    if reason:
        skip_unless_required("gstreamer", reason)
    process = subprocess.Popen([SYSTEM_PYTHON, str(SERVER)], stdout=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline().split()
        assert ready[:1] == ["READY"], ready
        yield int(ready[1]), ready[2:]
    finally:
        process.kill()
        process.wait(10)
        process.stdout.close()


def _reader(port: int, path: str) -> GStreamerReader:
    return GStreamerReader(SourceConfig(id="cam", kind="rtsp", url=f"rtsp://127.0.0.1:{port}{path}",
                                        decoder="jetson", open_timeout_seconds=5, read_timeout_seconds=3))


@pytest.mark.parametrize("path", ["/av", "/audiofirst"])
def test_video_with_audio(av_server, path: str) -> None:
    port, _ = av_server
    reader = _reader(port, path)
    reader.open()
    try:
        images = [reader.read() for _ in range(5)]
    finally:
        reader.close()
    assert all(item is not None and item[0].shape == (240, 320, 3) for item in images)


def test_h265_is_refused_with_the_reason(av_server) -> None:
    port, paths = av_server
    if "/h265" not in paths:
        pytest.skip("x265enc is not installed for the test server")
    reader = _reader(port, "/h265")
    with pytest.raises(SourceError, match="not H.264"):
        reader.open()
