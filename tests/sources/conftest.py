"""Fixtures for the source tests: a real GStreamer RTSP server (tools/rtsp_server.py under the
system Python) that tests start, SIGKILL, restart and SIGSTOP, and capture sources to point at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamd.sources.capture import CaptureSource
from tests.sources.rtsp_support import (
    RtspServer,
    Sources,
    gi_missing_reason,
    gstreamer_capture_missing_reason,
    wait_for,
    write_coded_video,
)
from tests.support import VTEST, skip_unless_required


@pytest.fixture(scope="session")
def rtsp_available() -> None:
    reason = gi_missing_reason()
    if reason:
        skip_unless_required("rtsp", reason)


@pytest.fixture(params=["opencv", "jetson"])
def rtsp_decoder(request: pytest.FixtureRequest) -> str:
    """The source's decoder: OpenCV/FFmpeg, or the GStreamer backend of decoder = "jetson" (software
    elements here: avdec_h264, videoconvert), so both pass the same kill/freeze/failure tests."""
    if request.param == "jetson":
        reason = gstreamer_capture_missing_reason()
        if reason:
            skip_unless_required("gstreamer", reason)
    return request.param


@pytest.fixture(scope="session")
def rtsp_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi from the shared data when it is there (the real footage), else a generated clip."""
    if VTEST.is_file():
        return VTEST
    return write_coded_video(tmp_path_factory.mktemp("video") / "coded.avi", frames=800, fps=10)


@pytest.fixture
def rtsp_server(rtsp_available: None, rtsp_video: Path, tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """``rtsp_server(mounts=[...], fps=0, video=None, ...)`` starts a server; all are killed at the end."""
    servers: list[RtspServer] = []

    def start(mounts: list[str] | None = None, video: Path | None = None, **options: int) -> RtspServer:
        server = RtspServer(video or rtsp_video, mounts or ["cam0"], tmp_path / f"rtsp-server-{len(servers)}.log",
                            **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def sources() -> Iterator[Sources]:
    started = Sources()
    yield started
    started.stop_all()


@dataclass
class CameraAndBystander:
    """A camera on its own server (the one a test kills, freezes...) and another on a second server."""

    server: RtspServer
    source: CaptureSource
    other_server: RtspServer
    other: CaptureSource


@pytest.fixture
def camera_and_bystander(rtsp_server, rtsp_decoder: str, sources: Sources) -> Callable[[str], CameraAndBystander]:
    """``camera_and_bystander(source_id)``: two servers, one source each (``source_id`` and ``other``),
    returned once both stream and FFmpeg's and OpenCV's lazily created threads exist (1 s in)."""

    def start(source_id: str) -> CameraAndBystander:
        server, other_server = rtsp_server(mounts=["cam0"]), rtsp_server(mounts=["other"])
        source = sources.start(source_id, server.url(), decoder=rtsp_decoder)
        other = sources.start("other", other_server.url(), decoder=rtsp_decoder)
        assert wait_for(lambda: source.state == other.state == "streaming", timeout=10)
        time.sleep(1.0)
        return CameraAndBystander(server, source, other_server, other)

    return start
