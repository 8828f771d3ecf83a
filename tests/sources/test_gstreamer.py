"""The GStreamer capture backend (decoder = "jetson") with software elements: the documented pipelines, and a
file source decoded frame by frame in order, with the pixels OpenCV decodes from the same H.264 file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from streamd.bench.media import read_frames
from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.sources.capture import CaptureSource
from streamd.sources.gstreamer import GStreamerReader, pipeline_description
from streamd.sources.readers import make_reader
from tests.sources.rtsp_support import gstreamer_capture_missing_reason, read_index, write_coded_video
from tests.support import skip_unless_required

FRAMES = 40


def test_pipelines_name_the_documented_elements() -> None:
    rtsp = SourceConfig(id="cam", kind="rtsp", url="rtsp://h/s", transport="udp", open_timeout_seconds=3)
    hardware = pipeline_description(rtsp, hardware=True)
    assert hardware.startswith("rtspsrc name=src protocols=udp latency=100 tcp-timeout=3000000 "
                               "! application/x-rtp,media=video,encoding-name=H264 ! rtph264depay "
                               "! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert "
                               "! video/x-raw,format=BGR ! appsink name=sink")
    assert "drop=true" in hardware and "location" not in hardware  # the URL is set as a property, never parsed
    software = pipeline_description(SourceConfig(id="f", kind="file", url="/x.mp4"), hardware=False)
    assert software.startswith("filesrc name=src ! parsebin ! h264parse ! avdec_h264 ! videoconvert "
                               "! video/x-raw,format=BGR ! appsink name=sink")
    assert "drop=false" in software  # a file is never dropped from: the capture paces it
    with pytest.raises(SourceError, match="file and rtsp"):
        pipeline_description(SourceConfig(id="s", kind="synthetic"), hardware=False)


def test_make_reader_picks_gstreamer_for_jetson() -> None:
    config = SourceConfig(id="cam", kind="rtsp", url="rtsp://h/s", decoder="jetson")
    assert isinstance(make_reader(config), GStreamerReader)


@pytest.fixture(scope="module")
def gstreamer_capture() -> None:
    """Skips (fails under STREAMD_REQUIRE=gstreamer) where PyGObject or GStreamer's elements are missing."""
    reason = gstreamer_capture_missing_reason()
    if reason:
        skip_unless_required("gstreamer", reason)


@pytest.fixture(scope="module")
def h264_file(gstreamer_capture: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from streamd.sources.gst_elements import import_gst

    gst, _ = import_gst()
    if gst.ElementFactory.find("x264enc") is None or gst.ElementFactory.find("mp4mux") is None:
        skip_unless_required("gstreamer", "x264enc/mp4mux missing (gstreamer1.0-plugins-ugly/good)")
    folder = tmp_path_factory.mktemp("h264")
    coded = write_coded_video(folder / "coded.avi", frames=FRAMES, fps=10)
    target = folder / "coded.mp4"
    pipeline = gst.parse_launch(
        f'filesrc location="{coded}" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! x264enc '
        f'speed-preset=ultrafast key-int-max=10 qp-max=20 ! h264parse ! mp4mux ! filesink location="{target}"')
    pipeline.set_state(gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(60 * gst.SECOND, gst.MessageType.EOS | gst.MessageType.ERROR)
    pipeline.set_state(gst.State.NULL)
    assert message is not None and message.type == gst.MessageType.EOS, message and message.parse_error()
    return target


def test_file_source_frames_in_order_equal_to_opencv(h264_file: Path) -> None:
    reader = GStreamerReader(SourceConfig(id="f", kind="file", url=str(h264_file), decoder="jetson"), hardware=False)
    reader.open()
    frames = []
    while (item := reader.read()) is not None:
        frames.append(item[0])
    assert reader.native_fps == pytest.approx(10.0)
    reader.close()
    reader.close()
    reference = read_frames(h264_file)
    assert [read_index(f) for f in frames] == list(range(FRAMES))
    assert len(frames) == len(reference) == FRAMES
    for ours, theirs in zip(frames, reference):
        assert ours.shape == theirs.shape and ours.dtype == np.uint8 and ours.flags.writeable
        # Two decoders' YUV -> BGR conversions (libav's swscale in OpenCV, GStreamer's videoconvert).
        assert np.abs(ours.astype(np.int16) - theirs).mean() < 3.0


def test_capture_source_runs_the_gstreamer_reader(h264_file: Path) -> None:
    config = SourceConfig(id="f", kind="file", url=str(h264_file), decoder="jetson", pace="fast")
    source = CaptureSource(config)
    source.start()
    indices = []
    while len(indices) < FRAMES:
        frame = source.slot.take(timeout=10)
        assert frame is not None, f"only {len(indices)} frames"
        indices.append(read_index(frame.image))
    assert source.finished.wait(10)
    source.stop()
    assert indices == list(range(FRAMES))  # pace "fast" on a file: lossless


def test_missing_file_is_a_source_error(gstreamer_capture: None, tmp_path: Path) -> None:
    reader = GStreamerReader(SourceConfig(id="f", kind="file", url=str(tmp_path / "none.mp4"), decoder="jetson"))
    with pytest.raises(SourceError, match="does not exist"):
        reader.open()


def test_auto_decoder_is_jetson_only_on_a_jetson(monkeypatch) -> None:
    from streamd.sources import gst_elements
    from streamd.sources.readers import VideoFileReader

    config = SourceConfig(id="f", kind="file", url="/x.mp4", decoder="auto")
    monkeypatch.setattr(gst_elements, "is_tegra", lambda: False)
    assert isinstance(make_reader(config), VideoFileReader)
    monkeypatch.setattr(gst_elements, "is_tegra", lambda: True)
    monkeypatch.setattr(gst_elements, "hardware_decode_available", lambda: False)
    assert isinstance(make_reader(config), VideoFileReader)  # a Jetson without nvv4l2decoder: OpenCV
    monkeypatch.setattr(gst_elements, "hardware_decode_available", lambda: True)
    assert isinstance(make_reader(config), GStreamerReader)


def test_daemon_publishes_every_frame_of_a_jetson_decoded_file(h264_file: Path, daemon_factory,
                                                               tiny_model: Path) -> None:
    """The whole daemon with decoder = "jetson" (software elements): preflight, reader, capture, publish."""
    from streamd.publish.subscriber import Subscriber
    from tests.support import free_port

    publish_port = free_port()
    daemon = daemon_factory(f"""
[[sources]]
id = "h264"
kind = "file"
url = "{h264_file}"
decoder = "jetson"
pace = "fast"
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
wait_for_subscriber_seconds = 20
[metrics]
enabled = false
""")
    messages = []
    deadline = time.monotonic() + 30
    with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
        while len(messages) < FRAMES and time.monotonic() < deadline:
            message = subscriber.receive(0.5)
            if message is not None:
                messages.append(message)
    assert daemon.process.wait(30) == 0, daemon.log()
    assert [m["frame_index"] for m in messages] == list(range(FRAMES)), daemon.log()
    assert all(m["frame_size"] == [320, 240] for m in messages)
    assert f"finished after {FRAMES} frames" in daemon.log()


def test_registry_goes_to_the_units_cache_directory() -> None:
    from streamd.sources.gst_elements import registry_location

    assert registry_location({"STREAMD_CACHE_DIR": "/var/cache/streamd/lobby"}) == \
        "/var/cache/streamd/lobby/gstreamer-registry.bin"
    assert registry_location({"STREAMD_CACHE_DIR": "/c", "GST_REGISTRY": "/mine.bin"}) is None  # the user's wins
    assert registry_location({}) is None  # GStreamer's own default (~/.cache)
