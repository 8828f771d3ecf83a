"""NVDEC capture on the GPU: frames stay in device memory, surfaces are released and reused, the
capture loop and its slot work unchanged, a resolution change mid-stream neither stops nor breaks the stream.

Needs PyNvVideoCodec and an H.264 file: ``STREAMD_H264_VIDEO`` (1080p) and optionally
``STREAMD_H264_RESCHANGE`` (a stream that changes size); skipped otherwise. The latter made with ffmpeg
from vtest.avi, a 1080p part then a 720p part, concatenated as Annex-B:

    ffmpeg -i vtest.avi -frames:v 60 -vf scale=1920:1080 -c:v libx264 -bf 0 -g 30 -f h264 a.h264
    ffmpeg -ss 6 -i vtest.avi -frames:v 60 -vf scale=1280:720 -c:v libx264 -bf 0 -g 30 -f h264 b.h264
    cat a.h264 b.h264 > reschange.h264
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from streamd.config.schema import SourceConfig
from streamd.sources.device_image import DeviceNV12

pytestmark = pytest.mark.skipif(importlib.util.find_spec("PyNvVideoCodec") is None,
                                reason="PyNvVideoCodec is not installed")
VIDEO = os.environ.get("STREAMD_H264_VIDEO", "")
RESCHANGE = os.environ.get("STREAMD_H264_RESCHANGE", "")


def need(path: str) -> str:
    if not path or not Path(path).is_file():
        pytest.skip("set STREAMD_H264_VIDEO / STREAMD_H264_RESCHANGE to H.264 files")
    return path


def test_reader_gives_device_frames_and_reuses_surfaces() -> None:
    from streamd.sources.nvdec import NvdecReader

    reader = NvdecReader(SourceConfig("cam", "file", need(VIDEO), decoder="nvdec"), pool_surfaces=3)
    reader.open()
    try:
        assert reader.native_fps > 0
        for _ in range(40):
            image, truth = reader.read()
            assert isinstance(image, DeviceNV12) and truth is None
            assert (image.width, image.height) == (1920, 1080)
            image.release()
        assert reader.pool.allocated <= 3 and reader.pool.released == 40 and reader.pool.leased == 0
    finally:
        reader.close()


def _pictures_read_by_opencv(path: str) -> int:
    import cv2

    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def test_resolution_change_mid_stream() -> None:
    from streamd.sources.nvdec import NvdecReader

    reader = NvdecReader(SourceConfig("cam", "file", need(RESCHANGE), decoder="nvdec"))
    reader.open()
    sizes = []
    try:
        while (item := reader.read()) is not None:
            sizes.append((item[0].width, item[0].height))
            item[0].release()
    finally:
        reader.close()
    # Every picture arrives; the decoder keeps the first sequence's size and scales the 720p part into it
    # (cuvidReconfigureDecoder), exactly as OpenCV's FFmpeg reader does with the same stream.
    assert len(sizes) == _pictures_read_by_opencv(RESCHANGE) > 0
    assert set(sizes) == {(1920, 1080)}


def test_capture_source_releases_superseded_device_frames() -> None:
    from streamd.sources.capture import CaptureSource

    config = SourceConfig("cam", "file", need(VIDEO), decoder="nvdec", pace="native", fps=200.0, max_frames=60)
    capture = CaptureSource(config)
    capture.start()
    taken = []
    deadline = time.monotonic() + 20
    while not capture.finished.is_set() and time.monotonic() < deadline:
        frame = capture.slot.take(0.05)
        if frame is not None:
            assert isinstance(frame.image, DeviceNV12) and frame.width == 1920
            taken.append(frame)
            frame.release()
            time.sleep(0.02)  # slower than the source: the slot supersedes frames
    capture.stop()
    leftover = capture.slot.take(0)
    if leftover is not None:
        leftover.release()
    assert capture.frames_delivered == 60
    assert capture.slot.dropped + len(taken) + (leftover is not None) == 60
    assert all(f.image.released for f in taken)
