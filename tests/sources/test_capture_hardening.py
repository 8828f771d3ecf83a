"""The capture loop's rules for media that misbehave, whatever the reader (OpenCV, NVDEC, GStreamer and
the others share the loop): a pass of a looping source that gives no frame is a failed open (backed
off, counted, never streaming); a file without a usable frame rate is paced at the default; the
repeating-warning throttle; image sizes read from headers."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamd.config.schema import DEFAULT_MAX_PIXELS, SourceConfig
from streamd.errors import SourceError
from streamd.log_throttle import LogThrottle
from streamd.sources.capture import CaptureSource
from streamd.sources.image_header import image_size
from streamd.sources.readers import DEFAULT_FILE_FPS, FrameReader, StillImageReader, check_image_header


class Report:
    """A CaptureReport that keeps what it is told."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.states: list[str] = []
        self.captured = 0
        self._lock = threading.Lock()

    def declare_source(self, source_id: str) -> None: ...

    def set_source_state(self, source_id: str, state: str) -> None:
        with self._lock:
            self.states.append(state)

    def frame_captured(self, source_id: str) -> None:
        with self._lock:
            self.captured += 1

    def frame_dropped(self, source_id: str, reason: str) -> None: ...

    def source_error(self, source_id: str, kind: str) -> None:
        with self._lock:
            self.errors.append(kind)

    def source_reconnected(self, source_id: str) -> None: ...

    def mark_last_frame(self, source_id: str, unix_time: float) -> None: ...


class ScriptedReader(FrameReader):
    """Opens fine; gives ``frames_per_pass[n]`` frames on pass n (the last entry repeats)."""

    opens = 0

    def __init__(self, frames_per_pass: list[int], fps: float = 0.0) -> None:
        self._plan = frames_per_pass
        self._fps = fps
        self._pass = 0
        self._left = 0

    def open(self) -> None:
        ScriptedReader.opens += 1
        self._pass = 0
        self._left = self._plan[0]

    def read(self) -> tuple[np.ndarray, None] | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return np.zeros((8, 8, 3), np.uint8), None

    def rewind(self) -> bool:
        self._pass += 1
        self._left = self._plan[min(self._pass, len(self._plan) - 1)]
        return True

    @property
    def native_fps(self) -> float:
        return self._fps

    def close(self) -> None: ...


def run_source(reader_factory, seconds: float, **config) -> tuple[CaptureSource, Report]:
    settings = {"id": "s", "kind": "file", "url": "/x.mp4", "loop": True, "backoff_initial_seconds": 0.1,
                "backoff_max_seconds": 0.4, **config}
    report = Report()
    source = CaptureSource(SourceConfig(**settings), report, reader_factory=reader_factory)
    taker_stop = threading.Event()

    def take() -> None:  # the pipeline's part: empty the slot
        while not taker_stop.is_set():
            frame = source.slot.take(0.05)
            if frame is not None:
                frame.release()

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    source.start()
    time.sleep(seconds)
    source.stop()
    taker_stop.set()
    taker.join(2)
    return source, report


@pytest.mark.parametrize("reader_name", ["opencv", "nvdec", "gstreamer"])
def test_a_looping_source_whose_pass_gives_no_frame_is_a_failed_open(reader_name: str) -> None:
    """Each reader only says "no frame" (read() returns None); the rule is the capture loop's, so it holds
    for every decoder the same way."""
    ScriptedReader.opens = 0
    source, report = run_source(lambda _config: ScriptedReader([0]), 1.5)
    assert source.frames_delivered == 0
    assert "streaming" not in report.states and "backing_off" in report.states
    assert report.errors and set(report.errors) == {"open"}
    # Backed off (0.05-0.1 s, then up to 0.4 s): a handful of opens in 1.5 s, not thousands.
    assert 3 <= ScriptedReader.opens <= 12, ScriptedReader.opens


def test_a_rewind_that_gives_no_frame_after_good_passes_is_a_failed_open() -> None:
    ScriptedReader.opens = 0
    source, report = run_source(lambda _config: ScriptedReader([5, 5, 0], fps=500.0), 1.5)
    assert report.errors and set(report.errors) == {"open"}
    assert "streaming" in report.states
    # Each open gives two good passes (10 frames), then an empty one; backed off between opens (the
    # backoff is not reset by the good passes of an open that ends empty).
    opens = ScriptedReader.opens
    assert 10 * (opens - 1) <= source.frames_delivered <= 10 * opens
    assert 2 <= opens <= 12, opens


def test_a_file_without_a_frame_rate_is_paced_at_the_default() -> None:
    source, _ = run_source(lambda _config: ScriptedReader([1_000_000], fps=0.0), 2.0)
    rate = source.frames_delivered / 2.0
    assert 0.7 * DEFAULT_FILE_FPS <= rate <= 1.2 * DEFAULT_FILE_FPS, rate


def test_a_made_up_frame_rate_counts_as_none() -> None:
    source, _ = run_source(lambda _config: ScriptedReader([1_000_000], fps=90_000.0), 1.0)
    assert source.frames_delivered <= 2 * DEFAULT_FILE_FPS


def test_pace_fast_still_reads_flat_out_without_a_rate() -> None:
    source, _ = run_source(lambda _config: ScriptedReader([1_000_000], fps=0.0), 1.0, pace="fast")
    assert source.frames_delivered > 10 * DEFAULT_FILE_FPS


def test_log_throttle_says_the_first_then_a_summary_per_interval() -> None:
    now = [0.0]
    throttle = LogThrottle(60.0, clock=lambda: now[0])
    assert throttle.occurred(3) == (1, 3)  # the first: at once
    lines = []
    for second in range(1, 181):  # a stretch every second for three minutes
        now[0] = float(second)
        due = throttle.occurred(2)
        if due is not None:
            lines.append((second, due))
    assert lines == [(60, (60, 120)), (120, (60, 120)), (180, (60, 120))]
    assert throttle.total == 181


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + b"\0\0\0\0"


def test_image_sizes_come_from_headers(tmp_path: Path) -> None:
    import cv2  # noqa: PLC0415

    picture = np.zeros((123, 457, 3), np.uint8)
    for extension in ("png", "jpg", "bmp", "webp"):
        cv2.imwrite(str(tmp_path / f"p.{extension}"), picture)
        assert image_size(str(tmp_path / f"p.{extension}"))[1:] == (457, 123), extension
    # A JPEG with a large EXIF segment before its frame header, and a progressive one.
    ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 40000) + b"Exif\0\0" + b"\xff" * 39994
    (tmp_path / "exif.jpg").write_bytes(jpeg.tobytes()[:2] + exif + jpeg.tobytes()[2:])
    assert image_size(str(tmp_path / "exif.jpg")) == ("JPEG", 457, 123)
    assert cv2.imread(str(tmp_path / "exif.jpg")).shape == (123, 457, 3)
    # Headers alone (no pixel data) are enough to refuse.
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    (tmp_path / "huge.png").write_bytes(png)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 30000, 30000, 1) + b"\x01\x11\x00"
    (tmp_path / "huge.jpg").write_bytes(b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9 + sof)
    assert image_size(str(tmp_path / "huge.jpg")) == ("JPEG", 30000, 30000)
    for name in ("huge.png", "huge.jpg"):
        with pytest.raises(SourceError, match="over max_pixels = 67108864; refused before decoding"):
            check_image_header(str(tmp_path / name), DEFAULT_MAX_PIXELS)
        assert check_image_header(str(tmp_path / name), 0)  # 0: no limit
    assert image_size(str(tmp_path / "missing.png")) is None
    (tmp_path / "video.mp4").write_bytes(b"\0\0\0\x20ftypisom" + b"\0" * 100)
    assert image_size(str(tmp_path / "video.mp4")) is None


def test_an_image_source_over_its_own_max_pixels_is_refused(tmp_path: Path) -> None:
    import cv2  # noqa: PLC0415

    cv2.imwrite(str(tmp_path / "p.tiff"), np.zeros((100, 100, 3), np.uint8))  # no header check: after decoding
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((100, 100, 3), np.uint8))
    for name, when in (("p.png", "refused before decoding"), ("p.tiff", r"refused \(raise")):
        reader = StillImageReader(SourceConfig(id="s", kind="image", url=str(tmp_path / name), max_pixels=9999))
        with pytest.raises(SourceError, match=rf"100x100 \(0.01 Mpx\), over max_pixels = 9999; {when}"):
            reader.open()
        StillImageReader(SourceConfig(id="s", kind="image", url=str(tmp_path / name), max_pixels=10000)).open()
