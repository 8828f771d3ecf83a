"""NVDEC on RTSP: an rtsp source with ``decoder = "nvdec"`` (packets from OpenCV's FFmpeg
demuxer, decoded by NVDEC through PyNvVideoCodec) against tests/sources/mini_rtsp_server.py, the
standard-library RTSP server (the GPU machine has no GStreamer). Frames arrive as DeviceNV12 at the
file's size; the server is SIGKILLed mid-stream and restarted on its port, twice; the source resumes
like the OpenCV path does (tests/sources/test_mini_rtsp_server.py), reconnects counted, and a second
nvdec camera on another server keeps streaming throughout. Frozen (SIGSTOP) instead: reported
stalled, streaming again after SIGCONT.
OpenCV demuxes nvdec RTSP sources (streamd/sources/nvdec.py says why), so they have its timeouts.

Needs PyNvVideoCodec and ``STREAMD_H264_ANNEXB``, an H.264 Annex-B file without B-frames, for example
from vtest.avi:

    ffmpeg -i vtest.avi -vf scale=320:240 -frames:v 200 -c:v libx264 -bf 0 -g 10 -f h264 vtest_320.h264
    STREAMD_H264_ANNEXB=vtest_320.h264 python -m pytest -q tests/gpu/test_nvdec_rtsp.py
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from streamd.sources.capture import CaptureSource
from streamd.sources.device_image import DeviceNV12
from tests.sources.rtsp_support import MiniRtspServerProcess, Sources, delivered_after, wait_for

pytestmark = pytest.mark.skipif(importlib.util.find_spec("PyNvVideoCodec") is None,
                                reason="PyNvVideoCodec is not installed")
ANNEXB = os.environ.get("STREAMD_H264_ANNEXB", "")
RESTARTS = 2
# PyNvVideoCodec's FFmpeg opens with its defaults (a UDP SETUP refused with 461, then TCP, and up to
# 5 s of stream analysis): the supervisor allows 2 x open timeout + 1 s for it.
NVDEC_RTSP = {"decoder": "nvdec", "open_timeout_seconds": 6.0, "read_timeout_seconds": 2.0,
              "stall_timeout_seconds": 3.0}


@pytest.fixture
def clip() -> Path:
    if not ANNEXB or not Path(ANNEXB).is_file():
        pytest.skip("set STREAMD_H264_ANNEXB to an H.264 Annex-B file without B-frames "
                    "(see this module's docstring)")
    return Path(ANNEXB)


def file_size(clip: Path) -> tuple[int, int]:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    ok, image = capture.read()
    capture.release()
    assert ok, f"OpenCV cannot decode {clip}"
    return image.shape[1], image.shape[0]


def take_device_frame(source, size: tuple[int, int]) -> None:
    frame = source.slot.take(5.0)
    assert frame is not None, source.state_history
    try:
        assert isinstance(frame.image, DeviceNV12), type(frame.image)
        assert (frame.image.width, frame.image.height) == size and frame.image.device == 0
    finally:
        frame.release()


@contextlib.contextmanager
def two_nvdec_cameras(clip: Path, tmp_path: Path, name: str) -> Iterator[tuple[Sources, MiniRtspServerProcess,
                                                                             CaptureSource, CaptureSource]]:
    """Two nvdec RTSP sources, ``name`` and "other", each on its own mini RTSP server, both streaming:
    (sources, ``name``'s server, ``name``'s source, the other source). Everything stops on exit."""
    server = MiniRtspServerProcess(clip, tmp_path / f"{name}.log", fps=30)
    other_server = MiniRtspServerProcess(clip, tmp_path / "other.log", fps=30)
    sources = Sources()
    try:
        server.start()
        other_server.start()
        source = sources.start(name, server.url(), **NVDEC_RTSP)
        other = sources.start("other", other_server.url(), **NVDEC_RTSP)
        assert wait_for(lambda: source.state == other.state == "streaming", timeout=40), \
            (source.state_history, other.state_history, server.log_path.read_text()[-2000:])
        yield sources, server, source, other
    finally:
        sources.stop_all()
        server.kill()
        other_server.kill()


def test_nvdec_rtsp_source_resumes_after_the_server_is_killed(clip: Path, tmp_path: Path) -> None:
    size = file_size(clip)
    with two_nvdec_cameras(clip, tmp_path, "victim") as (sources, victim_server, victim, other):
        take_device_frame(victim, size)
        take_device_frame(other, size)
        port = victim_server.port
        for restart in range(RESTARTS):
            other_before = other.frames_delivered
            victim_server.kill()
            noticed = wait_for(lambda: victim.state != "streaming", timeout=20)
            assert noticed is not None, "the kill went unnoticed"
            time.sleep(1.0)
            back = victim_server.start()
            assert victim_server.port == port
            count = victim.frames_delivered
            resumed = wait_for(delivered_after(victim, count + 5), timeout=40)
            assert resumed is not None, (restart, victim.state_history)
            print(f"restart {restart + 1}: streaming again {resumed - back:.2f} s after the server listened")
            take_device_frame(victim, size)
            assert other.frames_delivered > other_before + 10  # the other camera kept streaming meanwhile
        errors = {kind: sources.sample("streamd_source_errors_total", "victim", kind=kind)
                  for kind in ("open", "read", "stall")}
        print(f"victim errors {errors}, reconnects {sources.sample('streamd_source_reconnects_total', 'victim')}")
        assert sources.sample("streamd_source_reconnects_total", "victim") >= RESTARTS
        # The kill closes the connection: FFmpeg's demuxer ends ("read"), it does not block until the watchdog.
        assert errors["read"] >= RESTARTS and errors["stall"] == 0, errors
        assert other.state == "streaming"
        assert sources.sample("streamd_source_reconnects_total", "other") == 0
        assert sum(sources.sample("streamd_source_errors_total", "other", kind=kind)
                   for kind in ("open", "read", "stall")) == 0


def test_nvdec_rtsp_source_stalls_and_recovers_when_the_server_freezes(clip: Path, tmp_path: Path) -> None:
    """SIGSTOP: the connection stays open and silent. OpenCV's read timeout (it demuxes nvdec RTSP sources)
    ends the blocked read; the watchdog reports a stall; after SIGCONT the source streams again."""
    size = file_size(clip)
    with two_nvdec_cameras(clip, tmp_path, "frozen") as (sources, server, source, other):
        server.freeze()
        other_before = other.frames_delivered
        assert wait_for(lambda: sources.sample("streamd_source_errors_total", "frozen", kind="stall") >= 1,
                        timeout=NVDEC_RTSP["stall_timeout_seconds"] + 10), source.state_history
        time.sleep(2.0)
        assert source.state != "streaming"
        assert other.frames_delivered > other_before + 10
        server.thaw()
        count = source.frames_delivered
        assert wait_for(delivered_after(source, count + 5), timeout=40) is not None, source.state_history
        take_device_frame(source, size)
        readers = [t for t in threading.enumerate() if t.name.startswith("capture-frozen-reader")]
        assert len(readers) <= 2, [t.name for t in readers]  # the live one, at most one still leaving FFmpeg
        assert other.state == "streaming" and sources.sample("streamd_source_reconnects_total", "other") == 0
