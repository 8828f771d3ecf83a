"""Inference slower than the camera: a 30 fps stream consumed at ~9 fps for 60 s. The frame age at
publish stays under 2 x inference + one frame interval, the superseded frames are counted, and the
true end-to-end latency (read from the frame index drawn into each frame) does not grow, i.e.
nothing builds up in FFmpeg's or OpenCV's buffers.

The age bound is a statistical promise on a machine where x264 encodes on the same 2 cores: it is
checked on the 99th percentile. The maximum only has to stay below a backlog's signature (a frame
a whole second old), because one scheduling hiccup of a few hundred ms is not a bug, and a max
under 233 ms failed on a busy 2-core CI machine."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from tests.sources.rtsp_support import read_index, wait_for, write_coded_video

STREAM_FPS = 30
INFERENCE_SECONDS = 0.1  # the simulated detector: 10 fps at best against a 30 fps camera
RUN_SECONDS = 60.0
WARMUP_SECONDS = 5.0
AGE_LIMIT_SECONDS = 2 * INFERENCE_SECONDS + 1.0 / STREAM_FPS  # for the 99th percentile
MAX_AGE_LIMIT_SECONDS = 1.0  # a queue would grow past this within seconds (see the docstring)


@pytest.fixture(scope="module")
def coded_30fps_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = int((RUN_SECONDS + 20) * STREAM_FPS)
    return write_coded_video(tmp_path_factory.mktemp("coded") / "coded30.avi", frames=frames, fps=STREAM_FPS)


@pytest.mark.slow
def test_frame_age_bounded_with_slow_inference(rtsp_server, sources, coded_30fps_video) -> None:
    server = rtsp_server(mounts=["cam0"], video=coded_30fps_video)
    source = sources.start("cam0", server.url())
    assert wait_for(lambda: source.state == "streaming", timeout=10)

    started = time.monotonic()
    first_delivered = source.frames_delivered
    records = []  # (seconds since start, age at publish, take time - file time of the frame, index)
    while (now := time.monotonic()) - started < RUN_SECONDS:
        frame = source.slot.take(timeout=1.0)
        assert frame is not None, f"no frame for 1 s at {now - started:.1f} s"
        taken = time.monotonic()
        index = read_index(frame.image)
        time.sleep(INFERENCE_SECONDS)  # inference + decode + publish
        published = time.monotonic()
        records.append((taken - started, published - frame.capture_monotonic, taken - index / STREAM_FPS, index))
    elapsed = time.monotonic() - started
    capture_fps = (source.frames_delivered - first_delivered) / elapsed

    steady = [r for r in records if r[0] >= WARMUP_SECONDS]
    ages = sorted(r[1] for r in steady)
    last_ages = [r[1] for r in steady if r[0] >= RUN_SECONDS - 10]
    early = statistics.median(r[2] for r in steady if r[0] < WARMUP_SECONDS + 10)
    late = statistics.median(r[2] for r in steady if r[0] >= RUN_SECONDS - 10)
    print(f"captured {capture_fps:.1f} fps, published {len(records) / elapsed:.1f} fps, "
          f"dropped {source.slot.dropped}; age at publish p50 {ages[len(ages) // 2] * 1000:.0f} ms, "
          f"p99 {ages[int(len(ages) * 0.99)] * 1000:.0f} ms, max {ages[-1] * 1000:.0f} ms, "
          f"last 10 s max {max(last_ages) * 1000:.0f} ms (limit {AGE_LIMIT_SECONDS * 1000:.0f} ms); "
          f"end-to-end latency drift over the run {(late - early) * 1000:+.0f} ms")

    indices = [r[3] for r in records]
    assert all(b > a for a, b in zip(indices, indices[1:])), "frame indices misread or out of order"
    assert ages[int(len(ages) * 0.99)] < AGE_LIMIT_SECONDS
    assert ages[-1] < MAX_AGE_LIMIT_SECONDS
    assert capture_fps > 0.9 * STREAM_FPS  # every frame read as it arrives, none left in a buffer
    assert late - early < 0.15  # the latency did not grow: no backlog in FFmpeg/OpenCV
    assert source.slot.dropped > 0.5 * (source.frames_delivered - len(records))
    assert sources.sample("streamd_frames_dropped_total", "cam0", reason="superseded") == source.slot.dropped
