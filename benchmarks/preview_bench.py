#!/usr/bin/env python3
"""What the live preview costs the pipeline, measured three ways on the CPU bench's
flat-out pipeline (a file read with pace "fast", every frame through inference and published to a
real ZeroMQ subscriber):

1. hook: the cost of the pipeline's preview hook per frame with nobody watching (the only work the
   preview adds then), against the pipeline's time per frame;
2. windows: one daemon with the preview on, its looping source read flat out, alternating windows
   of ``--window-seconds`` without and with one viewer (its own process) reading the MJPEG stream;
   per window frames per second and the daemon process's CPU time per frame, each viewer window
   against the windows beside it (a shared machine's load drifts over seconds, so neighbours are
   compared, never a whole run with another);
3. runs: whole runs with the preview off and on with no viewer, alternating, ``--rounds`` pairs:
   frames per second and CPU time per frame.

    python benchmarks/preview_bench.py --model ../shared/models/yolox_nano.onnx --video ../shared/media/vtest.avi \\
        --seconds 120 --window-seconds 3 --rounds 4 --json preview_bench.json

Prints the headline ratios; ``--json`` writes everything measured, after the commit, machine, command
and versions (``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.config.load import parse_config  # noqa: E402
from streamd.daemon.service import Service  # noqa: E402
from streamd.preview.hub import PreviewHub  # noqa: E402
from streamd.publish.subscriber import Subscriber  # noqa: E402
from streamd.yolox.detections import Detections  # noqa: E402

SOURCE = "bench"


def _config(args: argparse.Namespace, preview: bool, loop: bool):  # noqa: ANN202
    model = Path(args.model)
    classes = model.parent / "coco_classes.txt"
    source = {"id": SOURCE, "kind": "file", "url": args.video, "pace": "fast", "loop": loop,
              "max_frames": 0 if loop else args.frames}
    document = {
        "sources": [source],
        "model": {"path": str(model), **({"classes": str(classes)} if classes.is_file() else {})},
        "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 100000},
        "metrics": {"enabled": False},
        "preview": {"enabled": preview, "bind": "127.0.0.1:0", "fps": args.preview_fps, "max_width": args.max_width},
    }
    return parse_config(document, Path.cwd(), "(preview bench)")


_VIEWER = """
import sys, urllib.request
parts = 0
with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        parts += chunk.count(b"Content-Type: image/jpeg")
        print(parts, flush=True)
"""


class _Viewer:
    """An MJPEG client in its own process (its CPU time is not the daemon's), reading the stream as a
    browser does; it prints the count of JPEG parts received."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _VIEWER, url], stdout=subprocess.PIPE, text=True)
        self.parts = 0

    def close(self) -> None:
        self.process.terminate()
        output, _ = self.process.communicate(timeout=10)
        counts = [int(line) for line in output.split()]
        self.parts = counts[-1] if counts else 0


class _Daemon:
    """A Service with a subscriber attached, every publish time recorded."""

    def __init__(self, config) -> None:  # noqa: ANN001
        self.published: list[float] = []
        self.service = Service(config, on_result=lambda result, age: self.published.append(time.perf_counter()))
        self.service.start_detector()
        self.subscriber = Subscriber(self.service.publisher_endpoint())
        self.service.wait_for_subscriber(5.0)

    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.service.preview.port}/sources/{SOURCE}/stream.mjpg"

    def close(self) -> None:
        self.subscriber.close()
        self.service.stop()


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def measure_hook(frame_seconds: float) -> dict:
    """Seconds per call of the hook with nobody watching, and that as a share of a frame's time."""
    hub = PreviewHub(lambda: {SOURCE: "streaming"}, lambda: ("person",), 5.0, 640, 70, 4)
    image = np.zeros((576, 768, 3), np.uint8)
    frame = SimpleNamespace(source_id=SOURCE, index=0, capture_time=time.time(), width=768, height=576,
                            image=image, release_image=None)
    result = SimpleNamespace(frame=frame, detections=Detections.empty())
    calls = 200_000
    seconds = min(timeit.repeat(lambda: hub.observe(result, 0.01), number=calls, repeat=5)) / calls
    return {"seconds_per_call": seconds, "frame_seconds": frame_seconds, "share_of_frame": seconds / frame_seconds}


def measure_windows(args: argparse.Namespace) -> dict:
    daemon = _Daemon(_config(args, preview=True, loop=True))
    windows = []
    try:
        daemon.service.start_sources()
        time.sleep(args.warmup_seconds)
        end = time.perf_counter() + args.seconds
        watched = False
        while time.perf_counter() < end:
            viewer = None
            if watched:
                viewer = _Viewer(daemon.stream_url())
                deadline = time.monotonic() + 10
                while daemon.service.preview.hub.viewer_count() < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
            started, cpu_started = time.perf_counter(), _process_cpu_seconds()
            count_before = len(daemon.published)
            time.sleep(args.window_seconds)
            elapsed = time.perf_counter() - started
            frames = len(daemon.published) - count_before
            cpu_seconds = _process_cpu_seconds() - cpu_started
            if viewer is not None:
                viewer.close()
            windows.append({"viewer": watched, "fps": frames / elapsed, "cpu_ms_per_frame": 1000 * cpu_seconds / frames,
                            "viewer_frames": viewer.parts if viewer else 0})
            watched = not watched
    finally:
        daemon.close()
    ratios, cpu_ratios = [], []
    for i, window in enumerate(windows):
        neighbours = [windows[j] for j in (i - 1, i + 1) if 0 <= j < len(windows)]
        if window["viewer"] and neighbours:
            ratios.append(window["fps"] / statistics.fmean(w["fps"] for w in neighbours))
            cpu_ratios.append(window["cpu_ms_per_frame"] / statistics.fmean(w["cpu_ms_per_frame"] for w in neighbours))
    off = [w["fps"] for w in windows if not w["viewer"]]
    on = [w["fps"] for w in windows if w["viewer"]]
    return {"windows": windows, "viewer_over_neighbours": ratios,
            "viewer_over_neighbours_median": statistics.median(ratios),
            # The process's CPU time per published frame (viewer client included): on a machine the
            # pipeline saturates, throughput is inversely proportional to it, and unlike fps it does
            # not move with the load other processes put on a shared machine.
            "cpu_per_frame_viewer_over_neighbours": cpu_ratios,
            "cpu_per_frame_viewer_over_neighbours_median": statistics.median(cpu_ratios),
            "fps_without_viewer_median": statistics.median(off), "fps_with_viewer_median": statistics.median(on),
            "viewer_fps_median": statistics.median(w["viewer_frames"] / args.window_seconds
                                                   for w in windows if w["viewer"])}


def run_once(args: argparse.Namespace, preview: bool) -> tuple[float, float]:
    """(frames per second, CPU milliseconds per frame) of one whole run."""
    daemon = _Daemon(_config(args, preview=preview, loop=False))
    try:
        started, cpu_started = time.perf_counter(), _process_cpu_seconds()
        daemon.service.start_sources()
        daemon.service.pipeline.finished.wait(600)
        elapsed = (daemon.published[-1] if daemon.published else time.perf_counter()) - started
        cpu_seconds = _process_cpu_seconds() - cpu_started
    finally:
        daemon.close()
    return len(daemon.published) / elapsed, 1000 * cpu_seconds / len(daemon.published)


def measure_runs(args: argparse.Namespace) -> dict:
    rounds = []
    for index in range(args.rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        runs = {preview: run_once(args, preview) for preview in order}
        (off_fps, off_cpu), (idle_fps, idle_cpu) = runs[False], runs[True]
        rounds.append({"off_fps": off_fps, "idle_fps": idle_fps, "idle_over_off": idle_fps / off_fps,
                       "off_cpu_ms_per_frame": off_cpu, "idle_cpu_ms_per_frame": idle_cpu,
                       "cpu_per_frame_idle_over_off": idle_cpu / off_cpu})
        print(f"runs {index + 1}/{args.rounds}: off {off_fps:.1f} fps {off_cpu:.2f} ms CPU a frame, idle "
              f"{idle_fps:.1f} fps {idle_cpu:.2f} ms", file=sys.stderr)
    return {"rounds": rounds, "idle_over_off_median": statistics.median(r["idle_over_off"] for r in rounds),
            "cpu_per_frame_idle_over_off_median": statistics.median(r["cpu_per_frame_idle_over_off"] for r in rounds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--seconds", type=float, default=120.0, help="windows: total time")
    parser.add_argument("--window-seconds", type=float, default=3.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--frames", type=int, default=300, help="runs: frames per run")
    parser.add_argument("--rounds", type=int, default=4, help="runs: pairs of runs (0: skip)")
    parser.add_argument("--preview-fps", type=float, default=5.0)
    parser.add_argument("--max-width", type=int, default=640)
    parser.add_argument("--json", dest="json_path", default="")
    args = parser.parse_args()
    windows = measure_windows(args)
    print(f"windows: {len(windows['windows'])}, fps without / with a viewer (medians) "
          f"{windows['fps_without_viewer_median']:.1f} / {windows['fps_with_viewer_median']:.1f}, "
          f"viewer window / neighbours median {windows['viewer_over_neighbours_median']:.3f}", file=sys.stderr)
    hook = measure_hook(1.0 / windows["fps_without_viewer_median"])
    runs = measure_runs(args) if args.rounds else None
    summary = {**provenance(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "load_average_1min": Path("/proc/loadavg").read_text().split()[0],
               "model": args.model, "video": args.video, "preview_fps": args.preview_fps,
               "max_width": args.max_width, "hook": hook, "windows": windows, "runs": runs}
    print(json.dumps({"hook_us_per_frame": hook["seconds_per_call"] * 1e6,
                      "hook_share_of_frame": hook["share_of_frame"],
                      "viewer_over_neighbours_median": windows["viewer_over_neighbours_median"],
                      "viewer_over_neighbours_range": [min(windows["viewer_over_neighbours"]),
                                                       max(windows["viewer_over_neighbours"])],
                      "cpu_per_frame_viewer_over_neighbours_median":
                          windows["cpu_per_frame_viewer_over_neighbours_median"],
                      "idle_over_off_median": runs["idle_over_off_median"] if runs else None,
                      "cpu_per_frame_idle_over_off_median":
                          runs["cpu_per_frame_idle_over_off_median"] if runs else None}, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
