"""Bad input, nothing lost: a video corrupt in the middle, a truncated file, a resolution
change mid-stream, RTSP servers that send garbage, a model whose output fits no layout. One clear log
line each, the affected source retried or stopped, and every other source keeps publishing.

One daemon (in-process Service) runs every bad source at once beside a good one; each test checks
its own case in what it published and logged. Media are made with ffmpeg."""

from __future__ import annotations

import logging
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.daemon.service import Service
from streamd.publish.subscriber import Subscriber
from tests.support import REPO, write_misfit_model, write_tiny_yolox_model

DEADLINE_SECONDS = 120.0
GOOD_FPS = 10
FRAMES = 100  # 320x240, 10 fps, keyframe every 10


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *arguments], check=True, timeout=120)


def make_media(folder: Path) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    good = folder / "good.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-frames:v", str(FRAMES), "-c:v", "libx264",
           "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(good))
    data = good.read_bytes()
    truncated = folder / "truncated.mp4"  # cut in half: the header still announces 100 frames
    truncated.write_bytes(data[:len(data) // 2])
    corrupt = bytearray(data)  # 10 % of the bytes overwritten in the middle
    noise = random.Random(1)
    for index in range(int(len(data) * 0.45), int(len(data) * 0.55)):
        corrupt[index] = noise.randrange(256)
    (folder / "corrupt.mp4").write_bytes(bytes(corrupt))
    parts = []
    for size in ("1920x1080", "1280x720"):  # a camera reconfigured mid-stream: a new SPS in one stream
        part = folder / f"{size}.ts"
        ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=10", "-frames:v", "10", "-c:v", "libx264",
               "-preset", "ultrafast", "-g", "5", "-pix_fmt", "yuv420p", "-f", "mpegts", str(part))
        parts.append(part.read_bytes())
    resized = folder / "resized.ts"
    resized.write_bytes(b"".join(parts))
    return {"truncated": truncated, "corrupt": folder / "corrupt.mp4", "resized": resized}


class GarbageServer:
    """A TCP server on 127.0.0.1 that speaks nonsense. ``babble`` False: random bytes at once;
    True: a proper RTSP answer to OPTIONS, then an SDP of random bytes (FFmpeg gets further)."""

    def __init__(self, babble: bool) -> None:
        self._babble = babble
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        noise = random.Random(7)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            with connection:
                connection.settimeout(1.0)
                try:
                    if self._babble:
                        for sequence in range(1, 4):
                            if not connection.recv(4096):
                                break
                            body = bytes(noise.randrange(256) for _ in range(300))
                            head = (f"RTSP/1.0 200 OK\r\nCSeq: {sequence}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY\r\n"
                                    f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n")
                            connection.sendall(head.encode() + (body if sequence > 1 else b""))
                    else:
                        connection.sendall(bytes(noise.randrange(256) for _ in range(4096)))
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def about(self, source_id: str) -> list[str]:
        return [m for m in self.messages if m.startswith(f"source {source_id}:")]


@dataclass
class Run:
    messages: dict[str, list[dict]] = field(default_factory=dict)
    logs: Records = field(default_factory=Records)
    states: dict[str, str] = field(default_factory=dict)
    good_rates: list[float] = field(default_factory=list)  # the good source's messages/s, per second
    garbage_connections: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("bad_input")
    media = make_media(folder)
    model = write_tiny_yolox_model(folder / "tiny.onnx", planted={0: (0.5, 0.5, 0.5, 0.5, 0.9, 0)})
    (folder / "tiny.names").write_text("a\nb\nc\n")
    servers = {"garbage": GarbageServer(babble=False), "babbler": GarbageServer(babble=True)}
    rtsp = {"open_timeout_seconds": 2.0, "read_timeout_seconds": 2.0, "stall_timeout_seconds": 2.0,
            "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0}
    sources = [{"id": "good", "kind": "synthetic", "fps": GOOD_FPS, "width": 160, "height": 120}]
    sources += [{"id": name, "kind": "file", "url": str(path), "pace": "fast"} for name, path in media.items()]
    sources += [{"id": name, "kind": "rtsp", "url": f"rtsp://127.0.0.1:{server.port}/stream", **rtsp}
                for name, server in servers.items()]
    config = parse_config({"sources": sources, "model": {"path": str(model)},
                           "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 10_000},
                           "metrics": {"enabled": False}})
    result = Run()
    streamd_logger = logging.getLogger("streamd")
    streamd_logger.addHandler(result.logs)
    previous_level = streamd_logger.level
    streamd_logger.setLevel(logging.INFO)
    service = Service(config)
    service.start_detector()
    try:
        with Subscriber(service.publisher_endpoint()) as subscriber:
            service.start_sources()
            finite = [s for s in service.sources if s.config.kind == "file"]
            started = time.monotonic()
            second_start, in_second = started, 0
            while time.monotonic() - started < DEADLINE_SECONDS:
                message = subscriber.receive(0.1)
                if message is not None:
                    result.messages.setdefault(message["source"], []).append(message)
                    in_second += message["source"] == "good"
                if time.monotonic() - second_start >= 1.0:
                    result.good_rates.append(in_second / (time.monotonic() - second_start))
                    second_start, in_second = time.monotonic(), 0
                # Every file finished, and the RTSP sources have failed a few times meanwhile.
                if (all(s.finished.is_set() for s in finite) and time.monotonic() - started > 8
                        and all(server.connections >= 2 for server in servers.values())):
                    break
            result.states = {s.source_id: s.state for s in service.sources}
            result.garbage_connections = {name: server.connections for name, server in servers.items()}
    finally:
        service.stop()
        for server in servers.values():
            server.close()
        streamd_logger.removeHandler(result.logs)
        streamd_logger.setLevel(previous_level)
    yield result


def frame_indices(run: Run, source_id: str) -> list[int]:
    return [m["frame_index"] for m in run.messages.get(source_id, [])]


def test_the_good_source_keeps_publishing_through_it_all(run: Run) -> None:
    rates = run.good_rates[1:]  # the first second includes start-up
    assert rates and min(rates) >= 0.5 * GOOD_FPS, rates
    assert run.states["good"] == "streaming"


def test_a_file_corrupt_in_the_middle_is_read_past_the_corruption(run: Run) -> None:
    indices = frame_indices(run, "corrupt")
    # FFmpeg loses the frames in the overwritten bytes (about 10) and reads on; every frame it
    # decoded was published (pace "fast": lossless), in order.
    assert 80 <= len(indices) < FRAMES and indices == list(range(len(indices))), len(indices)
    lines = run.logs.about("corrupt")
    skipped = [line for line in lines if "unreadable frame(s)" in line and "corrupt data" in line]
    assert len(skipped) == 1, lines
    assert run.states["corrupt"] == "finished"


def test_a_truncated_file_ends_at_its_cut_with_one_line(run: Run) -> None:
    indices = frame_indices(run, "truncated")
    assert 40 <= len(indices) < FRAMES and indices == list(range(len(indices)))
    lines = [line for line in run.logs.about("truncated") if "header announces" in line]
    assert len(lines) == 1 and f"of the {FRAMES}" in lines[0] and "truncated" in lines[0], run.logs.about("truncated")
    assert run.states["truncated"] == "finished"


def test_a_resolution_change_mid_stream_loses_no_frame(run: Run) -> None:
    messages = run.messages.get("resized", [])
    # OpenCV's FFmpeg reader scales every frame to the stream's first size, so the 720p half
    # arrives as 1920x1080 frames: boxes stay in one coordinate system, and no frame is lost.
    assert [m["frame_index"] for m in messages] == list(range(20))
    assert {tuple(m["frame_size"]) for m in messages} == {(1920, 1080)}
    assert run.states["resized"] == "finished"


@pytest.mark.parametrize(("source_id", "reason"), [("garbage", "does not speak RTSP"),
                                                    ("babbler", "cannot open RTSP stream")])
def test_an_rtsp_server_sending_garbage_is_retried_with_a_clear_line(run: Run, source_id: str, reason: str) -> None:
    assert source_id not in run.messages
    failures = [line for line in run.logs.about(source_id) if "cannot open" in line]
    assert failures and reason in failures[0], run.logs.about(source_id)
    assert run.garbage_connections[source_id] >= 2  # retried
    assert run.states[source_id] in ("connecting", "backing_off")


def test_a_camera_that_changes_its_frame_size_gets_one_line_and_keeps_publishing(tiny_model: Path) -> None:
    """Frames that do change size (an RTSP camera reconfigured and reconnected, NVDEC surfaces):
    the pipeline letterboxes each frame on its own; one line says so."""
    import numpy as np  # noqa: PLC0415

    from streamd.sources.readers import FrameReader  # noqa: PLC0415

    class ResizingCamera(FrameReader):
        def __init__(self, _config: object) -> None:
            self._count = 0

        def open(self) -> None:
            pass

        def read(self) -> tuple[np.ndarray, None] | None:
            self._count += 1
            if self._count > 20:
                return None
            height, width = (1080, 1920) if self._count <= 10 else (720, 1280)
            return np.full((height, width, 3), 100, np.uint8), None

        @property
        def native_fps(self) -> float:
            return 0.0

        def close(self) -> None:
            pass

    config = parse_config({"sources": [{"id": "camera", "kind": "synthetic", "pace": "fast"}],
                           "model": {"path": str(tiny_model)}, "publish": {"endpoint": "tcp://127.0.0.1:*"},
                           "metrics": {"enabled": False}})
    records = Records()
    logging.getLogger("streamd").addHandler(records)
    service = Service(config)
    service.start_detector()
    try:
        source = service.sources[0]
        source._reader_factory = ResizingCamera  # the capture thread has not started yet
        with Subscriber(service.publisher_endpoint()) as subscriber:
            # Every frame is asserted below: the subscription must have reached the publisher before the
            # first one goes out (ZeroMQ drops what is sent before; on busy cores that was frame 0).
            assert service.wait_for_subscriber(10.0)
            service.start_sources()
            messages = []
            while len(messages) < 20 and (message := subscriber.receive(30.0)) is not None:
                messages.append(message)
    finally:
        service.stop()
        logging.getLogger("streamd").removeHandler(records)
    assert [m["frame_index"] for m in messages] == list(range(20))
    assert [tuple(m["frame_size"]) for m in messages] == [(1920, 1080)] * 10 + [(1280, 720)] * 10
    assert all(m["detections"] for m in messages)
    changes = [line for line in records.about("camera") if "frame size changed" in line]
    assert changes == ["source camera: frame size changed from 1920x1080 to 1280x720"]


def test_a_model_whose_output_fits_no_layout_is_one_line_at_start(tmp_path: Path, tiny_image: Path) -> None:
    write_misfit_model(tmp_path / "misfit.onnx")
    config = tmp_path / "misfit.toml"
    config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                      f'[model]\npath = "{tmp_path / "misfit.onnx"}"\nclasses = ["a"]\n[metrics]\nenabled = false\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "layout" in line]
    assert len(lines) == 1 and "output" in lines[0], result.stderr
