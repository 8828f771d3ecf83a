"""tests/sources/mini_rtsp_server.py, the standard-library RTSP server for machines without GStreamer
(the GPU machine: tests/gpu/test_nvdec_rtsp.py), checked with OpenCV's FFmpeg client, the same FFmpeg
RTSP client code as PyNvVideoCodec's demuxer: FFmpeg's defaults (UDP first) fall back to TCP on its
461, the frames are the file's frames, and a streamd rtsp source resumes after the server is SIGKILLed
and restarted on its port, with a source on another server unaffected."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from streamd.bench.media import read_frames
from streamd.config.schema import SourceConfig
from streamd.sources.nvdec import PyNvVideoCodecDecoder, SurfacePool
from streamd.sources.rtsp import OPTIONS_ENV, RtspPacketReader
from tests.sources.mini_rtsp_server import H264Stream, MiniRtspServer, rtp_payloads
from tests.sources.rtsp_support import (
    MiniRtspServerProcess,
    Sources,
    delivered_after,
    wait_for,
    write_h264_annexb,
)
from tests.support import VTEST, require_shared

FRAMES = 100
WIDTH, HEIGHT = 320, 240
RESTARTS = 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_shared(VTEST)
    try:
        return write_h264_annexb(VTEST, tmp_path_factory.mktemp("h264") / "vtest_320.h264", frames=FRAMES,
                                 width=WIDTH, height=HEIGHT)
    except RuntimeError as error:
        pytest.skip(f"cannot encode the test clip: {error}")


@pytest.fixture(scope="module")
def file_frames(clip: Path) -> list[np.ndarray]:
    frames = read_frames(clip)
    assert frames and frames[0].shape == (HEIGHT, WIDTH, 3)
    return frames


@pytest.fixture
def server_processes(tmp_path: Path) -> Iterator[list[MiniRtspServerProcess]]:
    servers: list[MiniRtspServerProcess] = []
    yield servers
    for server in servers:
        server.kill()


def test_the_file_is_split_into_its_pictures(clip: Path, file_frames: list[np.ndarray]) -> None:
    stream = H264Stream(clip)
    assert len(stream.pictures) == len(file_frames)
    idr = [number for number, picture in enumerate(stream.pictures) if any(u[0] & 0x1F == 5 for u in picture)]
    assert idr[:3] == [0, 10, 20]
    assert all(picture[0][0] & 0x1F == 7 for picture in (stream.pictures[i] for i in idr))  # SPS in front


def test_fu_a_fragments_reassemble_to_the_nal_unit() -> None:
    unit = bytes([0x65]) + bytes(range(256)) * 20
    payloads = rtp_payloads(unit)
    assert len(payloads) > 1 and all(len(p) <= 1400 for p in payloads)
    assert [p[1] & 0xC0 for p in payloads] == [0x80] + [0] * (len(payloads) - 2) + [0x40]
    assert {p[0] for p in payloads} == {0x7C} and {p[1] & 0x1F for p in payloads} == {5}
    assert bytes([payloads[0][0] & 0xE0 | payloads[0][1] & 0x1F]) + b"".join(p[2:] for p in payloads) == unit
    assert rtp_payloads(b"\x41abc") == [b"\x41abc"]


def test_opencv_reads_the_files_frames_with_ffmpegs_default_transport(clip, file_frames, monkeypatch) -> None:
    # With this variable unset OpenCV asks for TCP itself; set, without rtsp_transport, FFmpeg's default
    # (what PyNvVideoCodec's demuxer gets) holds: UDP first, then TCP.
    monkeypatch.setenv(OPTIONS_ENV, "analyzeduration;1000000")
    with MiniRtspServer(clip, fps=60) as server:
        capture = cv2.VideoCapture(server.url(), cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 20000,
                                                                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10000])
        assert capture.isOpened()
        received = []
        for _ in range(FRAMES + 20):  # across the loop back to the first picture
            ok, image = capture.read()
            assert ok
            received.append(image)
        capture.release()
        assert server.udp_refusals >= 1  # FFmpeg asked for UDP, got 461 and fell back to TCP
    assert all(image.shape == (HEIGHT, WIDTH, 3) for image in received)
    differences = [float(np.abs(image.astype(np.int16) - file_frames[n % len(file_frames)]).mean())
                   for n, image in enumerate(received)]
    # The same decoder on the same bitstream, from the first picture on, in order, looped.
    assert max(differences) < 0.5, differences


def test_opencv_source_resumes_after_the_server_is_killed(clip: Path, tmp_path: Path, sources: Sources,
                                                          server_processes: list[MiniRtspServerProcess]) -> None:
    victim_server = MiniRtspServerProcess(clip, tmp_path / "victim.log", fps=30)
    other_server = MiniRtspServerProcess(clip, tmp_path / "other.log", fps=30)
    server_processes += [victim_server, other_server]
    victim_server.start()
    other_server.start()
    victim = sources.start("victim", victim_server.url())
    other = sources.start("other", other_server.url())
    assert wait_for(lambda: victim.state == other.state == "streaming", timeout=20), (victim.state, other.state)
    port = victim_server.port
    for _ in range(RESTARTS):
        victim_server.kill()
        assert wait_for(lambda: victim.state != "streaming", timeout=15), "the kill went unnoticed"
        time.sleep(1.0)
        victim_server.start()
        assert victim_server.port == port
        count = victim.frames_delivered
        assert wait_for(delivered_after(victim, count + 5), timeout=30) is not None, victim.state_history
    frame = victim.slot.take(1.0)
    assert frame is not None and (frame.width, frame.height) == (WIDTH, HEIGHT)
    frame.release()
    assert sources.sample("streamd_source_reconnects_total", "victim") >= RESTARTS
    assert other.state == "streaming"
    assert sources.sample("streamd_source_errors_total", "other", kind="read") == 0
    assert sources.sample("streamd_source_reconnects_total", "other") == 0


class FakePacketData:
    """PyNvVideoCodec's PacketData: plain settable fields."""

    bsl_data = 0
    bsl = 0
    pts = 0


def test_nvdec_rtsp_packets_are_the_streams_annexb_packets(clip: Path) -> None:
    """The nvdec RTSP path without a GPU: OpenCV demuxes (CAP_PROP_FORMAT -1) and each packet reaches the
    decoder as a PacketData pointing at its Annex-B bytes, SPS and PPS in front of the first picture."""
    stream = H264Stream(clip)
    with MiniRtspServer(clip, fps=60) as server:
        config = SourceConfig("cam", "rtsp", server.url(), decoder="nvdec", open_timeout_seconds=10.0,
                              read_timeout_seconds=10.0)
        packets = RtspPacketReader(config)
        packets.open()
        assert packets.fourcc == "h264" and packets.size == (WIDTH, HEIGHT)
        decoder = PyNvVideoCodecDecoder(config.url, config.id, SurfacePool(), config=config)
        decoder._packets, decoder._nvc = packets, SimpleNamespace(PacketData=FakePacketData)
        seen = []
        for packet in decoder._rtsp_packets():
            seen.append(ctypes.string_at(packet.bsl_data, packet.bsl))  # while the generator keeps the bytes
            if len(seen) == 12:
                break
        decoder.close()
    assert seen[0].startswith(b"\x00\x00\x00\x01\x67")  # SPS first
    start = b"\x00\x00\x00\x01"
    assert seen[0] == b"".join(start + unit for unit in stream.pictures[0])
    assert seen[11] == b"".join(start + unit for unit in stream.pictures[11])
