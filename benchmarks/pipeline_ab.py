#!/usr/bin/env python3
"""A/B the GpuDetector's host cost per frame in ONE process: this checkout against a renamed copy of another.

    mkdir -p /tmp/ab && git archive OLD streamd | tar -x -C /tmp/ab && mv /tmp/ab/streamd /tmp/ab/streamd_before
    sed -i -E 's/^(\\s*)(from|import) streamd([. ])/\\1\\2 streamd_before\\3/' $(find /tmp/ab -name '*.py')
    python benchmarks/pipeline_ab.py --before /tmp/ab --model yolox_nano.onnx --video vtest.avi --out result.json

Host cost is gpu_bench's: time inside submit/drain (and host_frame_buffer) minus time blocked on the
GPU. Host timings differ between machines and even between runs on one machine, so the two versions
run alternately (A B A B ...) in the same process, on the same frames, and the spread is reported.
Time spent in Python's garbage collector inside the timed loop is reported beside it. Runs on a machine
with an NVIDIA GPU, cuda-python, torch and onnx (the torch stand-in engine, not TensorRT). ``--model``
and ``--video`` default to ``$STREAMD_SHARED`` (else ``../shared`` beside the checkout); the JSON
(``--out``, default ./pipeline_ab.json) starts with the commit, machine, command and versions
(``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_bench import NMS, SCORE, SHARED, run_pipeline, same, time_kernel  # noqa: E402
from record import provenance  # noqa: E402

from streamd.bench.media import read_frames  # noqa: E402
from streamd.cuda import memory, runtime  # noqa: E402
from streamd.cuda.stream import Stream  # noqa: E402
from streamd.frame import Frame  # noqa: E402
from streamd.yolox.preprocess import YOLOX  # noqa: E402


class GcTimer:
    """Seconds spent in gc collections while ``active``."""

    def __init__(self) -> None:
        self.active, self.seconds, self.collections, self._started = False, 0.0, 0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.active:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


def make(package: str, model: str, slots: int):
    detector_module = importlib.import_module(f"{package}.gpu.detector")
    engine_module = importlib.import_module("tests.gpu.standin_engine")  # the same stand-in for both
    return detector_module.GpuDetector(engine_module.TorchGraphEngine(model), YOLOX, 80, SCORE, NMS, slots=slots,
                                       max_detections=100)


def measure(detector, frames: list[Frame], mode: str, timer: GcTimer) -> tuple[list, dict]:
    """gpu_bench.run_pipeline, plus the gc time inside its timed loop."""
    timer.seconds, timer.collections = 0.0, 0

    def set_active(active: bool) -> None:
        timer.active = active

    results, timings = run_pipeline(detector, frames, mode == "pinned", on_timed=set_active)
    count = len(frames)
    return results, {"fps": timings["fps"], "host_ms_per_frame": timings["host_ms_per_frame"],
                     "gc_ms_per_frame": timer.seconds / count * 1e3, "gc_collections": timer.collections}


def engine_fps(detector, stream: Stream) -> float:
    slot = detector._slots[0]
    return 1.0 / time_kernel(lambda i: detector.engine.enqueue(slot.addresses, stream.ptr), stream, 300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="folder holding the renamed package streamd_before")
    parser.add_argument("--model", default=str(SHARED / "models" / "yolox_nano.onnx"))
    parser.add_argument("--video", default=str(SHARED / "media" / "vtest.avi"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", "--output", dest="output", default="pipeline_ab.json", help="the JSON written")
    args = parser.parse_args()
    sys.path.insert(0, args.before)
    runtime.use_device(0)
    timer = GcTimer()
    stream = Stream()
    images = read_frames(args.video, args.frames)
    frames = [Frame("vtest", i, time.time(), time.monotonic(), image) for i, image in enumerate(images)]
    pool = [memory.PinnedBuffer(f.image.shape, np.uint8) for f in frames]
    pooled = []
    for buffer, frame in zip(pool, frames):
        buffer.array[...] = frame.image
        pooled.append(Frame(frame.source_id, frame.index, frame.capture_time, frame.capture_monotonic, buffer.array))
    variants = {"before": "streamd_before", "after": "streamd"}
    detectors = {name: make(package, args.model, 2) for name, package in variants.items()}
    report: dict = {**provenance(), "device": runtime.device_name(0), "python": sys.version.split()[0],
                    "engine_fps": {name: engine_fps(d, stream) for name, d in detectors.items()}}
    runs: dict = {f"{name} {mode}": [] for name in variants for mode in ("pinned", "pool", "copy")}
    outputs: dict = {}
    for _ in range(args.rounds):
        for mode, source in (("pinned", frames), ("pool", pooled), ("copy", frames)):
            for name, detector in detectors.items():
                results, entry = measure(detector, source, mode, timer)
                entry["fps_over_engine"] = entry["fps"] / report["engine_fps"][name]
                runs[f"{name} {mode}"].append(entry)
                outputs.setdefault(f"{name} {mode}", results)
    for detector in detectors.values():
        detector.close()
    synchronous = make("streamd", args.model, 1)
    sync_results, _ = measure(synchronous, frames, "copy", timer)
    synchronous.close()
    for buffer in pool:
        buffer.free()
    summary = {}
    for key, entries in runs.items():
        host = [e["host_ms_per_frame"] for e in entries]
        summary[key] = {"host_ms_median": statistics.median(host), "host_ms_min": min(host), "host_ms_max": max(host),
                        "gc_ms_per_frame_max": max(e["gc_ms_per_frame"] for e in entries),
                        "fps_over_engine_min": min(e["fps_over_engine"] for e in entries)}
    report["summary"] = summary
    report["runs"] = runs
    report["results_identical"] = {key: same(sync_results, results) for key, results in outputs.items()}
    stream.close()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("device", "python", "engine_fps", "summary", "results_identical")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
