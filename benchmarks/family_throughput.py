#!/usr/bin/env python3
"""Throughput per model family on the CPU: streamd's detector against raw ONNX Runtime, as a ratio.

    python benchmarks/family_throughput.py --rounds 5 --json family.json       # the shared models
    python benchmarks/family_throughput.py --model rtdetr-l=rtdetr-l.onnx,30 --rounds 3

For each model, on the first ``--frames`` frames of vtest.avi, one frame at a time:

- **raw**: ``onnxruntime.InferenceSession.run`` on the model file exactly as given, fed inputs letterboxed
  beforehand (the family's own preprocessing, done outside the timing): the limit.
- **streamd**: the detector the daemon builds for the model (``build_detector``: letterbox, ONNX Runtime with
  the preprocessing folded into the graph, the family's decoder and NMS, boxes mapped back to the frame),
  ``submit`` of each frame: what a frame costs end to end, less capture and publishing.

Both use the same intra-op threads (``--threads``; 0: ONNX Runtime's default, every core). Each round runs
every model's two variants back to back, raw first in even rounds and streamd first in odd ones, so a machine
that gets busier favours neither. Reported per model: fps of each variant each round, the ratio streamd /
raw of each round (median and range), process CPU time a frame of each (``time.process_time``: every thread), and
the CPU ratio raw / streamd, which a busy shared machine disturbs least. Default score threshold, NMS and
max detections are streamd's; detections a frame are reported, since a model that finds nothing has
nothing to decode. ``--json`` writes the rounds with ``benchmarks/record.py``'s provenance and the load
average around every turn.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAMD_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from record import provenance  # noqa: E402

from streamd.bench import media  # noqa: E402
from streamd.config.coco import COCO_CLASSES  # noqa: E402
from streamd.config.schema import ModelConfig  # noqa: E402
from streamd.frame import Frame  # noqa: E402
from streamd.inference.factory import build_detector  # noqa: E402
from streamd.inference.host_detector import HostDetector  # noqa: E402
from streamd.yolox.metadata import read_metadata  # noqa: E402
from streamd.yolox.preprocess import Preprocessor  # noqa: E402

DEFAULT_MODELS = (
    f"yolox_nano={SHARED / 'models' / 'yolox_nano.onnx'}",
    f"yolov8n={SHARED / 'models' / 'ultralytics' / 'yolov8n.onnx'}",
    f"yolo26n_end2end={SHARED / 'models' / 'ultralytics' / 'yolo26n_end2end.onnx'}",
)


def cpu_seconds() -> float:
    """CPU time of every thread of this process (finer than ``os.times``' clock ticks)."""
    return time.process_time()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def read_frames(video: Path, count: int) -> list[np.ndarray]:
    frames = media.read_frames(video, count)
    if not frames:
        raise SystemExit(f"family_throughput: no frames read from {video}")
    return frames


class Subject:
    """One model: streamd's detector and a plain ONNX Runtime session over the same file."""

    def __init__(self, name: str, path: Path, frames: int, threads: int) -> None:
        self.name, self.path, self.frames = name, path, frames
        names = read_metadata(path).names
        classes = names or COCO_CLASSES  # the official YOLOX export has no names: COCO's 80
        detector = build_detector(ModelConfig(path=str(path), classes=classes, threads=threads))
        if not isinstance(detector, HostDetector):
            raise SystemExit(f"family_throughput: {path} did not give a CPU detector")
        self.detector = detector
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        width, height = detector.input_size
        self.input_size = (width, height)
        self.preprocessor = Preprocessor(detector.convention, width, height)
        self.layout = str(detector.decoder.layout)

    def describe(self) -> dict:
        return {"path": self.path.name, "layout": self.layout, "preprocessing": self.detector.convention.name,
                "input": list(self.input_size), "classes": len(self.detector.class_names), "frames": self.frames}

    def raw(self, frames: list[np.ndarray]) -> tuple[float, float]:
        """(fps, CPU seconds a frame) of session.run over inputs letterboxed beforehand."""
        inputs = [self.preprocessor(frame)[0].copy() for frame in frames[:self.frames]]
        self.session.run(None, {self.input_name: inputs[0]})
        cpu, started = cpu_seconds(), time.perf_counter()
        for network_input in inputs:
            self.session.run(None, {self.input_name: network_input})
        elapsed = time.perf_counter() - started
        return len(inputs) / elapsed, (cpu_seconds() - cpu) / len(inputs)

    def streamd(self, frames: list[np.ndarray]) -> tuple[float, float, float]:
        """(fps, CPU seconds a frame, detections a frame) of the detector's submit, frame by frame."""
        chosen = frames[:self.frames]
        self.detector.submit(Frame("bench", 0, 0.0, 0.0, chosen[0]))
        detections = 0
        cpu, started = cpu_seconds(), time.perf_counter()
        for index, image in enumerate(chosen):
            result = self.detector.submit(Frame("bench", index, 0.0, 0.0, image))[0]
            detections += len(result.detections.scores)
        elapsed = time.perf_counter() - started
        return len(chosen) / elapsed, (cpu_seconds() - cpu) / len(chosen), detections / len(chosen)

    def close(self) -> None:
        self.detector.close()


def summarise(rounds: list[dict]) -> dict:
    ratios = [r["streamd_fps"] / r["raw_fps"] for r in rounds]
    cpu_ratios = [r["raw_cpu_ms"] / r["streamd_cpu_ms"] for r in rounds]
    return {"raw_fps": statistics.median(r["raw_fps"] for r in rounds),
            "streamd_fps": statistics.median(r["streamd_fps"] for r in rounds),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_rounds": ratios,
            "raw_cpu_ms_per_frame": statistics.median(r["raw_cpu_ms"] for r in rounds),
            "streamd_cpu_ms_per_frame": statistics.median(r["streamd_cpu_ms"] for r in rounds),
            "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratio_min": min(cpu_ratios),
            "cpu_ratio_max": max(cpu_ratios),
            "detections_per_frame": statistics.median(r["detections_per_frame"] for r in rounds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None,
                        help="NAME=PATH[,FRAMES] of an ONNX model (repeat; default: yolox_nano, and the YOLOv8n "
                             "and YOLO26n end-to-end exports, from the shared test data)")
    parser.add_argument("--source", type=Path, default=SHARED / "media" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=100, help="frames a turn, unless the model says (default: "
                                                                "%(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads, both sides (0: ONNX Runtime's "
                                                               "default)")
    parser.add_argument("--json", dest="json_path", default="")
    args = parser.parse_args()
    subjects = []
    for spec in args.model or DEFAULT_MODELS:
        name, _, rest = spec.partition("=")
        path, _, frames = rest.partition(",")
        subjects.append(Subject(name, Path(path), int(frames) if frames else args.frames, args.threads))
    frames = read_frames(args.source, max(subject.frames for subject in subjects))
    load_start = load_average()
    rounds: dict[str, list[dict]] = {subject.name: [] for subject in subjects}
    try:
        for round_index in range(args.rounds):
            raw_first = round_index % 2 == 0
            for subject in subjects:
                turn = {"load_average_before": load_average()}
                if raw_first:
                    raw = subject.raw(frames)
                    ours = subject.streamd(frames)
                else:
                    ours = subject.streamd(frames)
                    raw = subject.raw(frames)
                turn.update({"raw_first": raw_first, "raw_fps": raw[0], "raw_cpu_ms": raw[1] * 1000,
                             "streamd_fps": ours[0], "streamd_cpu_ms": ours[1] * 1000,
                             "detections_per_frame": ours[2], "load_average_after": load_average()})
                rounds[subject.name].append(turn)
                print(f"round {round_index + 1}/{args.rounds} {subject.name}: raw {raw[0]:.1f} fps "
                      f"({raw[1] * 1000:.1f} ms CPU), streamd {ours[0]:.1f} fps ({ours[1] * 1000:.1f} ms CPU), "
                      f"ratio {ours[0] / raw[0]:.3f}, {ours[2]:.1f} detections a frame, load "
                      f"{turn['load_average_before']} -> {turn['load_average_after']}", flush=True)
    finally:
        for subject in subjects:
            subject.close()
    models = {subject.name: {**subject.describe(), **summarise(rounds[subject.name]),
                             "rounds": rounds[subject.name]} for subject in subjects}
    for name, model in models.items():
        print(f"{name}: streamd / raw fps {model['ratio']:.3f} ({model['ratio_min']:.3f}-{model['ratio_max']:.3f}), "
              f"CPU ratio {model['cpu_ratio']:.3f}; raw {model['raw_fps']:.1f} fps, streamd {model['streamd_fps']:.1f}")
    if args.json_path:
        report = {**provenance(), "what": "streamd's CPU detector (letterbox, run, decode and NMS) against raw "
                                          "ONNX Runtime session.run on inputs letterboxed beforehand, per family",
                  "source": args.source.name, "rounds_run": args.rounds, "threads": args.threads,
                  "load_average_start": load_start, "load_average_end": load_average(), "families": models}
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
