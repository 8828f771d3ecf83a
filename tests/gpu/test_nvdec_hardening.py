"""Bad media on the NVDEC path, in a real daemon (a subprocess, the torch STAND-IN engine in TensorRT's
place) beside a good NVDEC camera: a looping MP4 that opens but never yields a frame backs off, is
counted and is not streaming; a looping H.264 file corrupt in several places keeps publishing with its
decode errors summarised, not logged on every pass.

Needs PyNvVideoCodec, pyzmq, torch and ``STREAMD_H264_VIDEO`` (an H.264 MP4); the never-yielding file is
cut from it where its index precedes the picture data, else from an ffmpeg copy that moves the index
(skipped without either). Skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamd.publish.subscriber import Subscriber
from tests.support import YOLOX_NANO, DaemonProcess, free_port, http_get, require_shared

pytestmark = [pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs {name}")
              for name in ("PyNvVideoCodec", "zmq", "torch")]
VIDEO = os.environ.get("STREAMD_H264_VIDEO", "")
READY_SECONDS = 240.0
RUN_SECONDS = 25.0
GOOD_FPS = 30


class Run:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.metrics = ""
        self.readyz: dict = {}
        self.log = ""
        self.made_no_frame = False


def source(source_id: str, path: Path, extra: str = "") -> str:
    return f'[[sources]]\nid = "{source_id}"\nkind = "file"\nurl = "{path}"\ndecoder = "nvdec"\nloop = true\n{extra}'


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    require_shared(YOLOX_NANO)
    if not VIDEO or not Path(VIDEO).is_file():
        pytest.skip("set STREAMD_H264_VIDEO to an H.264 file")
    folder = tmp_path_factory.mktemp("nvdec_bad")
    data = bytearray(Path(VIDEO).read_bytes())
    mdat = data.index(b"mdat")
    noise = random.Random(5)
    # Three stretches of noise early in the picture data (a pass meets them within its first seconds).
    for where in (0.05, 0.1, 0.15):
        start = mdat + int((len(data) - mdat) * where)
        data[start:start + 20000] = noise.randbytes(20000)
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(bytes(data))
    result = Run()
    sources = source("good", Path(VIDEO), f"fps = {GOOD_FPS}\n") + source("corrupt", corrupt, "fps = 600\n")
    moved = b""
    if data.find(b"moov") < mdat:  # the index already precedes the picture data (``streamd bench`` makes it so)
        moved = Path(VIDEO).read_bytes()
    elif shutil.which("ffmpeg"):
        whole = folder / "faststart.mp4"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", VIDEO, "-t", "3", "-c", "copy", "-movflags",
                        "+faststart", str(whole)], check=True, timeout=120)
        moved = whole.read_bytes()
    if moved:
        cut = folder / "no_frame.mp4"
        cut.write_bytes(moved[:moved.index(b"mdat") + 1000])
        sources += source("no_frame", cut)
        result.made_no_frame = True
    publish_port, metrics_port = free_port(), free_port()
    config = folder / "nvdec_bad.toml"
    config.write_text(sources + f"""
[model]
path = "{YOLOX_NANO}"
backend = "tensorrt"
layout = "yolox"
max_batch = 4
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
send_hwm = 100000
[metrics]
bind = "127.0.0.1:{metrics_port}"
""")
    daemon = DaemonProcess(config, folder / "nvdec_bad.log", env={"STREAMD_BENCH_STANDIN_ENGINE": "1"})
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            assert daemon.process.poll() is None, daemon.log()[-3000:]
            try:
                status, body = http_get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
            except OSError:
                status, body = 0, "{}"
            if status == 200 and json.loads(body)["sources"].get("good") == "streaming":
                break
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            time.sleep(1.0)
        with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
            time.sleep(1.0)
            started = time.monotonic()
            while time.monotonic() - started < RUN_SECONDS:
                message = subscriber.receive(0.2)
                if message is not None:
                    result.counts[message["source"]] = result.counts.get(message["source"], 0) + 1
        result.metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        result.readyz = json.loads(http_get(f"http://127.0.0.1:{metrics_port}/readyz")[1])
        status, _ = daemon.terminate(20)
        assert status == 0, daemon.log()[-3000:]
        result.log = daemon.log()
    finally:
        daemon.stop()
    print(f"NVDEC bad media: messages {result.counts}, states {result.readyz.get('sources')}")
    return result


def metric(run: Run, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(run.metrics):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no {name}{labels}")


def test_the_good_nvdec_camera_keeps_its_rate(run: Run) -> None:
    assert run.counts.get("good", 0) >= 0.8 * GOOD_FPS * RUN_SECONDS, run.counts


def test_a_looping_corrupt_h264_file_keeps_publishing_with_bounded_log_lines(run: Run) -> None:
    captured = metric(run, "streamd_frames_captured_total", source="corrupt")
    lines = [line for line in run.log.splitlines() if "source corrupt" in line and "WARNING" in line]
    print(f"corrupt H.264 on NVDEC: {captured:g} frames captured ({captured / 2385:.1f} times the file's frame "
          f"count), {len(lines)} WARNING lines: {lines[:3]}")
    # More than the part before the first corrupt stretch (about 120 frames), many times over: read past the
    # corruption or started over, pass after pass.
    assert run.counts.get("corrupt", 0) > 0 and captured >= 1000, captured
    assert len(lines) <= 3, lines


def test_a_looping_file_that_never_yields_a_frame_backs_off_on_nvdec(run: Run) -> None:
    if not run.made_no_frame:
        pytest.skip("needs ffmpeg to move the MP4's moov to the front")
    assert "no_frame" not in run.counts
    assert metric(run, "streamd_source_errors_total", source="no_frame", kind="open") >= 2
    assert metric(run, "streamd_source_up", source="no_frame") == 0
    assert run.readyz["sources"]["no_frame"] in ("connecting", "backing_off")
    lines = [line for line in run.log.splitlines() if "source no_frame" in line and "WARNING" in line]
    assert 1 <= len(lines) <= 2 and "opened but gave no frame" in lines[0], lines
