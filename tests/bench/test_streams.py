"""``streamd bench --streams``: a short real run through the daemon writes every JSON field and a PNG;
the sweep's search, the real-time rule and the argument parsing without running a daemon."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.bench import media, plot
from streamd.bench.streams import detector_builders
from streamd.bench.streams_arguments import stream_counts
from streamd.bench.sweep import largest_so_far, real_time_failures, sweep
from streamd.inference.registry import DETECTOR_BUILDERS
from tests.support import REPO

RUN_FIELDS = ("streams", "seconds", "max_batch", "decoder", "published_fps", "frame_age_seconds", "batch_size",
              "stage_mean_seconds", "dropped", "host_cpu_cores", "subscriber_cpu_cores", "daemon_cpu_cores",
              "gpu_busy_fraction", "per_stream", "failures", "real_time")
STREAM_FIELDS = ("source", "messages", "published_fps", "captured_fps", "frame_age_p50_seconds",
                 "frame_age_p99_seconds", "dropped_superseded", "dropped_too_old")


def write_video(path: Path, frames: int = 45, fps: float = 30.0) -> None:
    """A small 30 fps clip (Motion JPEG: OpenCV's pip wheels write it without an H.264 encoder)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    rng = np.random.default_rng(0)
    for index in range(frames):
        image = np.full((240, 320, 3), 90, np.uint8)
        cv2.rectangle(image, (10 + 5 * index, 60), (70 + 5 * index, 160), rng.integers(0, 255, 3).tolist(), -1)
        writer.write(image)
    writer.release()


def test_streams_bench_measures_every_stream_and_draws_the_plot(tmp_path: Path, tiny_model: Path) -> None:
    video = tmp_path / "clip.avi"
    write_video(video)
    out, png = tmp_path / "streams.json", tmp_path / "streams.png"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--streams", "2", "--model", str(tiny_model),
                             "--video", str(video), "--seconds", "2", "--warmup-seconds", "1", "--json", str(out),
                             "--plot", str(png), "--machine", "CI runner"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert results["source_fps"] == pytest.approx(30.0)
    assert results["real_time"]["min_fps_per_stream"] == pytest.approx(0.983 * 30.0)
    assert results["machine"]["cpus"] >= 1 and results["machine"]["name"]
    assert results["machine"]["label"] == "CI runner" and results["sweep"] is None
    (run,) = results["runs"]
    for field in RUN_FIELDS:
        assert field in run, field
    assert run["streams"] == 2 and run["max_batch"] == 1 and run["decoder"] == "opencv"
    assert [stream["source"] for stream in run["per_stream"]] == ["cam000", "cam001"]
    for stream in run["per_stream"]:
        for field in STREAM_FIELDS:
            assert field in stream, field
        assert stream["messages"] > 0 and stream["published_fps"] > 0  # a real subscriber received them
    assert 0 < run["frame_age_seconds"]["p50"] <= run["frame_age_seconds"]["p99"]
    assert run["batch_size"]["batches"] > 0 and set(run["batch_size"]["histogram"]) == {"1"}
    assert run["host_cpu_cores"] > 0 and run["subscriber_cpu_cores"] is not None
    assert run["gpu_busy"]["method"] in (None, "nvml", "nvidia-smi")
    assert "inference" in run["stage_mean_seconds"]
    image = cv2.imread(str(png))
    assert image is not None and image.shape == (plot.HEIGHT, plot.WIDTH, 3)
    assert "2 streams" in result.stdout


def test_streams_bench_through_worker_processes(tmp_path: Path, tiny_model: Path) -> None:
    """--workers 2: a real `streamd run` with two workers; per-worker cores, the ceiling, every stream measured."""
    video = tmp_path / "clip.avi"
    write_video(video)
    out = tmp_path / "streams.json"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--streams", "3", "--workers", "2",
                             "--analytics", "--model", str(tiny_model), "--video", str(video), "--seconds", "2",
                             "--warmup-seconds", "1", "--json", str(out)],
                            capture_output=True, text=True, timeout=180, cwd=REPO)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(out.read_text())["runs"]
    for field in RUN_FIELDS:
        assert field in run, field
    assert run["workers_requested"] == 2
    assert run["events_messages"] >= 0  # events messages are told apart from the frames' (--analytics)
    assert sorted(worker["sources"] for worker in run["workers"]) == [1, 2]
    assert all(worker["cpu_cores"] > 0 for worker in run["workers"])
    assert run["ceiling"].startswith(("host", "GPU", "NVDEC"))
    assert all(stream["messages"] > 0 for stream in run["per_stream"])
    assert run["batch_size"]["batches"] > 0  # the workers' batch histograms, summed
    assert "worker 0:" in result.stdout and "ceiling:" in result.stdout


def test_missing_video_says_how_to_make_one(tmp_path: Path, tiny_model: Path) -> None:
    missing = tmp_path / "absent.mp4"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--streams", "1", "--model", str(tiny_model),
                             "--video", str(missing)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "--video" in result.stderr and f"--make-test-video {missing}" in result.stderr


def fake_measure(limit: int, made: list[int]):
    """Every stream at 30 fps and 40 ms p99 up to ``limit`` streams, then 20 fps."""
    def measure(streams: int) -> dict:
        made.append(streams)
        fps = 30.0 if streams <= limit else 20.0
        return {"streams": streams, "per_stream": [{"published_fps": fps}] * streams,
                "published_fps": {"min": fps}, "frame_age_seconds": {"p99": 0.040}}
    return measure


def failures(run: dict) -> list[str]:
    return real_time_failures(run, 29.5, 0.150)


def test_sweep_doubles_then_bisects_to_the_largest_real_time_count() -> None:
    made: list[int] = []
    largest, runs = sweep(fake_measure(13, made), 1, 256, failures)
    assert largest == 13
    assert made == [1, 2, 4, 8, 16, 12, 14, 13]
    assert [run["real_time"] for run in runs] == [True, True, True, True, False, True, False, True]
    # Cut short after each run, the answer so far: never above the final one, never a count that missed.
    assert [largest_so_far(runs[:made]) for made in range(1, 9)] == [1, 2, 4, 8, 8, 12, 12, 13]


@pytest.mark.parametrize(("limit", "start", "maximum", "expected"), [
    (13, 8, 256, 13),     # starts at --streams
    (3, 8, 256, 3),       # the first count already fails: bisect below it
    (0, 1, 256, 0),       # nothing is real time
    (500, 1, 20, 20),     # capped by --max-streams
    (1, 1, 256, 1),
])
def test_sweep_edges(limit: int, start: int, maximum: int, expected: int) -> None:
    made: list[int] = []
    largest, _ = sweep(fake_measure(limit, made), start, maximum, failures)
    assert largest == expected
    assert len(made) == len(set(made))  # no count measured twice


def test_sweep_step_stops_bisecting_within_the_step() -> None:
    made: list[int] = []
    largest, _ = sweep(fake_measure(100, made), 72, 256, failures, step=12)
    assert made == [72, 144, 108, 90, 99]  # 99 passes, 108 misses: 9 apart
    assert largest == 99


def test_real_time_needs_every_stream_fast_and_p99_within_the_limit() -> None:
    run = {"streams": 2, "per_stream": [{"published_fps": 29.6}, {"published_fps": 29.4}],
           "published_fps": {"min": 29.4}, "frame_age_seconds": {"p99": 0.2}}
    reasons = failures(run)
    assert len(reasons) == 2 and "1 of 2 stream(s) below 29.50 fps" in reasons[0] and "200.0 ms" in reasons[1]
    assert failures({**run, "per_stream": [{"published_fps": 29.6}] * 2, "frame_age_seconds": {"p99": 0.1}}) == []
    assert failures({"streams": 4, "error": "RuntimeError: boom"}) == ["RuntimeError: boom"]


def test_stream_counts() -> None:
    assert stream_counts("4") == [4]
    assert stream_counts("1..4") == [1, 2, 3, 4]
    assert stream_counts("1,2,8") == [1, 2, 8]
    for bad in ("0", "a", "4..", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            stream_counts(bad)


def test_standin_engine_swaps_the_tensorrt_detector_builder_for_the_run_only() -> None:
    saved = DETECTOR_BUILDERS["tensorrt"]
    with detector_builders(standin_engine=True):
        assert DETECTOR_BUILDERS["tensorrt"] == "streamd.bench.standin:build_standin_detectors"
    assert DETECTOR_BUILDERS["tensorrt"] == saved
    with detector_builders(standin_engine=False):
        assert DETECTOR_BUILDERS["tensorrt"] == saved


def test_make_test_video_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in.avi"
    write_video(source, frames=3)
    monkeypatch.setattr(media.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="install ffmpeg"):
        media.make_test_video(source, tmp_path / "out.mp4")


def test_plot_ticks_are_round() -> None:
    assert plot.nice_ticks(13, 8, integers=True) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert plot.nice_ticks(2, 8, integers=True) == [0, 1, 2]
    assert plot.nice_ticks(40) == [0, 10, 20, 30, 40]


def test_a_first_run_that_cannot_start_stops_the_bench(tmp_path: Path, tiny_model: Path) -> None:
    """Here TensorRT is absent: a set-up problem is reported once, not swept over (exit 1)."""
    video = tmp_path / "clip.avi"
    write_video(video, frames=5)
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--streams", "4", "--sweep", "--backend",
                             "tensorrt", "--model", str(tiny_model), "--video", str(video), "--seconds", "1",
                             "--warmup-seconds", "0"], capture_output=True, text=True, timeout=120, cwd=REPO)
    if result.returncode == 0:
        pytest.skip("TensorRT works here")
    assert result.returncode == 1
    assert "the first run (4 streams) failed" in result.stderr
    assert result.stderr.count("measuring") == 1


def test_batch_sizes_over_the_window_by_size_range() -> None:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from streamd.bench.streams import _batch_sizes, _snapshot  # noqa: PLC0415
    from streamd.metrics.definitions import StreamdMetrics  # noqa: PLC0415

    metrics = StreamdMetrics(CollectorRegistry())
    metrics.batch_size.observe(1)  # before the window: not counted
    before = _snapshot(metrics.registry)
    for size in (1, 2, 5, 6, 48, 64, 64, 70):
        metrics.batch_size.observe(size)
    sizes = _batch_sizes(before, _snapshot(metrics.registry))
    assert sizes["histogram"] == {"1": 1, "2": 1, "5-6": 2, "33-48": 1, "49-64": 2, ">64": 1}
    assert sizes["batches"] == 8 and sizes["mean"] == pytest.approx(260 / 8)


def test_plot_of_a_sweep_with_a_silent_run(tmp_path: Path) -> None:
    def run(streams: int, fps: float, p50: float | None, p99: float | None) -> dict:
        return {"streams": streams, "published_fps": {"min": fps, "median": fps},
                "frame_age_seconds": {"p50": p50, "p99": p99}}

    runs = [run(16, 30.0, 0.02, 0.05), run(1, 30.0, 0.01, 0.02), run(64, 0.0, None, None), run(32, 29.0, 0.05, 0.4)]
    path = tmp_path / "sweep.png"
    plot.draw_streams_plot(runs, "streamd bench --streams: test", "subtitle", 29.5, 0.150, str(path), largest=16)
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (plot.HEIGHT, plot.WIDTH, 3)
    assert (image != 255).any(axis=2).mean() > 0.02  # axes, text and lines drawn


def test_sweep_through_the_command_line(tmp_path: Path, tiny_model: Path) -> None:
    video = tmp_path / "clip.avi"
    write_video(video)
    out = tmp_path / "sweep.json"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--streams", "1", "--sweep", "--max-streams",
                             "2", "--model", str(tiny_model), "--video", str(video), "--seconds", "1",
                             "--warmup-seconds", "0.5", "--json", str(out), "--plot", str(tmp_path / "sweep.png")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    largest, order = results["sweep"]["largest_streams_at_real_time"], results["sweep"]["order"]
    assert results["sweep"]["finished"]
    assert order[0] == 1 and order == [run["streams"] for run in results["runs"]]
    assert largest == max([0] + [run["streams"] for run in results["runs"] if run["real_time"]])  # speed not asserted
    assert f"largest number of streams at real time: {largest}" in result.stdout


def test_gpu_busy_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NVML, nvidia-smi's 100 ms samples (here a fake with two GPUs at 50 % and 100 %)."""
    import time  # noqa: PLC0415

    from streamd.bench.host import GpuBusySampler, describe_machine  # noqa: PLC0415

    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\ncase "$1" in --query-gpu=name) echo "Fake GPU"; echo "Fake GPU";; *)\n'
                    '  while true; do echo "0, 50"; echo "1, 100"; sleep 0.05; done;; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML does not import
    sampler = GpuBusySampler()
    sampler.start()
    time.sleep(0.4)
    busy = sampler.stop()
    assert busy["method"] == "nvidia-smi" and busy["samples"] >= 4
    assert busy["per_gpu"] == [0.5, 1.0] and busy["busy_fraction"] == 1.0
    assert sampler.stop()["busy_fraction"] == 1.0  # safe twice
    assert describe_machine()["name"].startswith("2 x Fake GPU, ")


def test_gpu_busy_is_none_without_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamd.bench.host import GpuBusySampler  # noqa: PLC0415

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    sampler = GpuBusySampler()
    sampler.start()
    assert sampler.stop() == {"busy_fraction": None, "per_gpu": [], "method": None, "samples": 0}


def streams_parser() -> argparse.ArgumentParser:
    """The arguments `streamd bench --streams` reads (the model's as the bench's own parser adds them)."""
    from streamd.bench.streams_arguments import add_streams_arguments  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--classes", default="")
    parser.add_argument("--detector-workers", dest="detector_workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    add_streams_arguments(parser)
    return parser


@pytest.mark.parametrize(("flags", "tracking"), [([], True), (["--no-tracking"], False)])
def test_tracking_follows_the_flag(tmp_path: Path, tiny_model: Path, flags: list[str], tracking: bool) -> None:
    """Tracking is on in the bench as in the daemon; --no-tracking measures without its host time."""
    from streamd.bench.streams import bench_config  # noqa: PLC0415

    parser = streams_parser()
    video = tmp_path / "clip.avi"
    write_video(video)
    args = parser.parse_args(["--model", str(tiny_model), "--video", str(video), *flags])
    assert bench_config(args, 2).tracking.enabled is tracking


def test_analytics_flag_gives_every_stream_zones_and_lines_through_the_worker_config(tmp_path: Path,
                                                                                     tiny_model: Path) -> None:
    """--analytics: 4 zones and 2 lines a stream, in the config of one process and in the TOML the supervisor reads."""
    from streamd.bench.streams import bench_config, bench_document  # noqa: PLC0415
    from streamd.bench.supervised import toml_text  # noqa: PLC0415
    from streamd.config import load  # noqa: PLC0415
    from streamd.config.load import parse_config  # noqa: PLC0415

    parser = streams_parser()
    video = tmp_path / "clip.avi"
    write_video(video)
    args = parser.parse_args(["--model", str(tiny_model), "--video", str(video), "--analytics"])
    from_toml = parse_config(load.tomllib.loads(toml_text(bench_document(args, 3))), tmp_path, "bench.toml")
    for config in (bench_config(args, 3), from_toml):
        assert [(len(source.zones), len(source.lines)) for source in config.sources] == [(4, 2)] * 3
        assert sum(zone.max_objects > 0 for zone in config.sources[2].zones) == 1
    plain = parser.parse_args(["--model", str(tiny_model), "--video", str(video)])
    assert all(not source.zones and not source.lines for source in bench_config(plain, 2).sources)
