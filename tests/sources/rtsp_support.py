"""Helpers for the RTSP tests: the GStreamer server process (and the standard-library one,
mini_rtsp_server.py, with its H.264 Annex-B clip), coded test videos, capture sources with their own
metrics registry, and process-wide resource counts."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import CollectorRegistry

from streamd.config.schema import SourceConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sources.capture import CaptureSource
from tests.support import REPO

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = REPO / "tools" / "rtsp_server.py"
SERVER_START_TIMEOUT_SECONDS = 15.0

# Short timeouts keep the suite fast; the behaviour is the same as with the defaults.
FAST_RTSP = {"open_timeout_seconds": 2.0, "read_timeout_seconds": 2.0, "stall_timeout_seconds": 2.0,
             "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0}

# The frame index is drawn as INDEX_BITS black/white blocks along the top edge: big enough to
# survive H.264, so a test can tell which file frame it received and measure true latency.
INDEX_BITS = 12
INDEX_BLOCK = 20


def gi_missing_reason() -> str | None:
    """None when the system Python can run the server, else why not (for pytest.skip)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} does not exist"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc'), 'x264enc'")
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], check=False, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return (f"{SYSTEM_PYTHON} cannot run GStreamer's RTSP server ({last}); install the Debian packages "
                "in .ci/apt-packages.txt")
    return None


def gstreamer_capture_missing_reason() -> str | None:
    """None when streamd's own Python can run the GStreamer capture (decoder "jetson"), else why not."""
    from streamd.errors import SourceError
    from streamd.sources.gst_elements import available_elements, import_gst

    try:
        import_gst()
    except SourceError as error:
        return str(error)
    missing = [name for name, present in available_elements().items()
               if not present and name in ("rtspsrc", "rtph264depay", "h264parse", "avdec_h264", "videoconvert",
                                           "appsink")]
    return f"GStreamer elements missing: {missing} (.ci/apt-packages.txt)" if missing else None


def write_coded_video(path: Path, frames: int, fps: int, width: int = 320, height: int = 240) -> Path:
    """An MPEG-4 AVI whose frame ``i`` carries ``i`` in blocks (see ``read_index``) over a moving bar."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for index in range(frames):
        image = np.full((height, width, 3), 60, np.uint8)
        x = (index * 4) % width
        image[INDEX_BLOCK * 2:, x:x + 16] = (0, 200, 255)  # motion, so the encoder sees real frames
        for bit in range(INDEX_BITS):
            if index >> bit & 1:
                image[:INDEX_BLOCK, bit * INDEX_BLOCK:(bit + 1) * INDEX_BLOCK] = 255
            else:
                image[:INDEX_BLOCK, bit * INDEX_BLOCK:(bit + 1) * INDEX_BLOCK] = 0
        writer.write(image)
    writer.release()
    return path


def read_index(image: np.ndarray) -> int:
    """The frame index ``write_coded_video`` drew (image at the written size)."""
    centre = INDEX_BLOCK // 2
    row = image[centre, :, :].mean(axis=1)
    return sum(1 << bit for bit in range(INDEX_BITS) if row[bit * INDEX_BLOCK + centre] > 128)


class RtspServer:
    """tools/rtsp_server.py as a child process; keeps its port across kill/restart."""

    def __init__(self, video: Path, mounts: list[str], log_path: Path, fps: int = 0, repeat: int = 1,
                 width: int = 0, height: int = 0) -> None:
        self.video = video
        self.mounts = mounts
        self.log_path = log_path
        self.extra = [*(["--fps", str(fps)] if fps else []), "--repeat", str(repeat),
                      *(["--width", str(width), "--height", str(height)] if width and height else [])]
        self.port = 0
        self.process: subprocess.Popen | None = None

    def url(self, mount: str | None = None) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount or self.mounts[0]}"

    def command(self) -> list[str]:
        return [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--video", str(self.video), "--port", str(self.port),
                *[arg for mount in self.mounts for arg in ("--mount", mount)], *self.extra]

    def start(self) -> float:
        """Start (again, on the same port) and wait until it listens; returns time.monotonic() then."""
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        stdout = self.process.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.1)
            if ready:
                line = stdout.readline()
                if line.startswith("READY "):
                    self.port = int(line.split()[1])
                    return time.monotonic()
                if not line:
                    break
        self.kill()
        raise RuntimeError(f"the RTSP server did not start; see {self.log_path}: "
                           f"{self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process must run to die cleanly
            self.process.kill()
            self.process.wait(10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def freeze(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


MINI_SERVER_SCRIPT = Path(__file__).with_name("mini_rtsp_server.py")


class MiniRtspServerProcess(RtspServer):
    """tests/sources/mini_rtsp_server.py (standard library only) as a child process of this Python:
    serves an H.264 Annex-B file on any path; keeps its port across kill/restart."""

    def __init__(self, video: Path, log_path: Path, fps: int = 30) -> None:
        super().__init__(video, ["cam0"], log_path, fps=fps)
        self.fps = fps

    def command(self) -> list[str]:
        return [sys.executable, str(MINI_SERVER_SCRIPT), "--video", str(self.video), "--port", str(self.port),
                "--fps", str(self.fps)]


def write_h264_annexb(source: Path, path: Path, frames: int = 100, width: int = 320, height: int = 240,
                      keyint: int = 10) -> Path:
    """``frames`` frames of ``source`` as an H.264 Annex-B elementary stream for the mini server (no
    B-frames, a keyframe every ``keyint``), with ffmpeg, else GStreamer under the system Python (which
    encodes the whole of ``source``); RuntimeError when neither can."""
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-frames:v",
                        str(frames), "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-preset", "ultrafast",
                        "-bf", "0", "-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0",
                        "-pix_fmt", "yuv420p", "-an", "-f", "h264", str(path)], check=True, timeout=120)
        return path
    reason = gi_missing_reason()
    if reason:
        raise RuntimeError(f"no ffmpeg, and {reason}")
    launch = (f"filesrc location={source} ! decodebin ! videoconvert ! videoscale ! "
              f"video/x-raw,width={width},height={height},format=I420 ! x264enc speed-preset=ultrafast bframes=0 "
              f"key-int-max={keyint} ! video/x-h264,stream-format=byte-stream ! filesink location={path}")
    script = ("import gi, sys; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); "
              "p = Gst.parse_launch(sys.argv[1]); p.set_state(Gst.State.PLAYING); "
              "m = p.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR); "
              "p.set_state(Gst.State.NULL); sys.exit(0 if m and m.type == Gst.MessageType.EOS else 1)")
    subprocess.run([SYSTEM_PYTHON, "-c", script, launch], check=True, timeout=180)
    return path


@dataclass
class Sources:
    """CaptureSources under test sharing one fresh metrics registry."""

    metrics: StreamdMetrics = field(default_factory=lambda: StreamdMetrics(CollectorRegistry()))
    started: list[CaptureSource] = field(default_factory=list)

    def start(self, source_id: str, url: str, **overrides: object) -> CaptureSource:
        settings = {**FAST_RTSP, **overrides}
        source = CaptureSource(SourceConfig(id=source_id, kind="rtsp", url=url, **settings), self.metrics)
        source.start()
        self.started.append(source)
        return source

    def sample(self, name: str, source_id: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"source": source_id, **labels})
        return 0.0 if value is None else value

    def stop_all(self) -> None:
        """In parallel, as the daemon does (Service.stop_sources)."""
        for source in self.started:
            source.request_stop()
        deadline = time.monotonic() + max((s.join_timeout(2.0) for s in self.started), default=0.0)
        for source in self.started:
            source.join(deadline - time.monotonic())
        self.started.clear()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> float | None:
    """time.monotonic() when ``predicate()`` first held, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    return None


def delivered_after(source: CaptureSource, count: int) -> Callable[[], bool]:
    return lambda: source.frames_delivered > count and source.state == "streaming"


def resource_counts() -> tuple[int, int]:
    """(threads of this process, native ones included; open file descriptors)."""
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def wait_for_resources(baseline: tuple[int, int], timeout: float, slack: int = 0) -> tuple[int, int]:
    """Resource counts once they are back within ``slack`` of ``baseline`` (or the last seen after
    ``timeout``)."""
    counts = resource_counts()
    deadline = time.monotonic() + timeout
    while any(now > start + slack for now, start in zip(counts, baseline)) and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = resource_counts()
    return counts


class RateSampler:
    """Samples ``frames_delivered`` of some sources every ``interval`` seconds in a thread."""

    def __init__(self, sources: list[CaptureSource], interval: float = 0.25) -> None:
        self.sources = sources
        self.interval = interval
        self.samples: list[tuple[float, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rate-sampler", daemon=True)

    def __enter__(self) -> RateSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), [s.frames_delivered for s in self.sources]))
            self._stop.wait(self.interval)

    def window_rates(self, index: int, window: float) -> list[float]:
        """Frames per second of source ``index`` over every sliding window of ``window`` seconds."""
        rates = []
        for i, (start, counts) in enumerate(self.samples):
            for end, later in self.samples[i:]:
                if end - start >= window:
                    rates.append((later[index] - counts[index]) / (end - start))
                    break
        return rates
