"""Tracker cost per frame: ``python benchmarks/track_bench.py [--objects 50] [--frames 2000] [--json result.json]``.

Objects of 4 classes move at constant speed with detector-like jitter; a tenth of the boxes are
missed in any frame and a few low-score ones added. Prints the median and 90th percentile of
``ByteTracker.update`` wall time per frame (the budget: 0.3 ms with 50 objects), with the
boxes' colour signatures taken from a 1080p frame inside the timing, as the daemon does
(``--no-appearance``: motion alone, as for NVDEC frames).

``--calibrate MODEL`` says how fast the machine is while it runs: rounds of the tracker alternate with
rounds of ONNX Runtime's ``session.run`` of MODEL (1 thread; ../shared/models/yolox_nano.onnx is the
reference: 14.4-14.7 ms on the 2-core virtual machine the budget was set on), and it prints
both medians. Shared VMs run the same code up to twice slower from hour to hour; the ratio is what
carries over.

``--baseline`` times another tracker on the same frames in the same process, old and new in
alternate order each round (a busy machine's load then falls on both alike): a module with a
``ByteTracker``, e.g. a copy of an older ``streamd/tracking`` as package ``oldtracking`` on
PYTHONPATH (``--baseline oldtracking.bytetrack``), with that package's colour signatures where it has an
``appearance`` module. It prints the median over rounds of each round's median.

Each mode prints one JSON object; ``--json PATH`` also writes it there, after the commit, machine,
command and versions (``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

import numpy as np
from record import provenance

from streamd.config.schema import TrackingConfig
from streamd.tracking.appearance import colour_signatures
from streamd.tracking.bytetrack import ByteTracker


def frames(objects: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centre = rng.uniform([50, 50], [1870, 1030], size=(objects, 2))
    velocity = rng.uniform(-4, 4, size=(objects, 2))
    size = rng.uniform(30, 120, size=(objects, 2))
    classes = rng.integers(0, 4, objects)
    for _ in range(count):
        centre = centre + velocity
        shown = rng.random(objects) > 0.1
        jitter = rng.normal(0, 1.5, size=(objects, 4))
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) + jitter
        scores = np.where(rng.random(objects) < 0.15, rng.uniform(0.3, 0.5, objects), rng.uniform(0.6, 0.95, objects))
        yield boxes[shown].astype(np.float32), scores[shown].astype(np.float32), classes[shown].astype(np.int32)


def time_updates(tracker_class, data: list, appearance: bool = True,
                 signatures_of=colour_signatures) -> tuple[np.ndarray, ByteTracker]:
    """Milliseconds of each ``update`` (and signatures) after the first 50 frames (tracks are then
    established), and the tracker."""
    tracker = tracker_class(TrackingConfig())
    image = np.random.default_rng(1).integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    seconds = []
    for index, (boxes, scores, classes) in enumerate(data):
        started = time.perf_counter()
        if appearance:
            tracker.update(boxes, scores, classes, index, index / 30, signatures_of(image, boxes))
        else:
            tracker.update(boxes, scores, classes, index, index / 30)
        seconds.append(time.perf_counter() - started)
    return np.array(seconds[50:]) * 1000, tracker


def time_inference(model_path: str, runs: int = 40) -> float:
    """Median milliseconds of one ``session.run`` of the model on one thread (after 5 warm-up runs)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    shape = [dimension if isinstance(dimension, int) else 1 for dimension in model_input.shape]
    feed = {model_input.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    seconds = []
    for index in range(runs + 5):
        started = time.perf_counter()
        session.run(None, feed)
        if index >= 5:
            seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)) * 1000


def calibrated(data: list, model_path: str, rounds: int, appearance: bool) -> dict:
    """Tracker and inference medians of alternating rounds."""
    tracker_ms, inference_ms = [], []
    for _ in range(rounds):
        inference_ms.append(time_inference(model_path))
        tracker_ms.append(float(np.median(time_updates(ByteTracker, data, appearance)[0])))
    return {"tracker_median_ms": round(float(np.median(tracker_ms)), 3),
            "tracker_round_medians_ms": [round(value, 3) for value in tracker_ms],
            "inference_median_ms": round(float(np.median(inference_ms)), 2),
            "inference_round_medians_ms": [round(value, 2) for value in inference_ms]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--baseline", metavar="MODULE", help="also time this module's ByteTracker, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline or --calibrate: rounds of both")
    parser.add_argument("--calibrate", metavar="MODEL", help="alternate with session.run of this ONNX model")
    parser.add_argument("--no-appearance", dest="appearance", action="store_false",
                        help="motion alone, for both trackers")
    parser.add_argument("--json", dest="json_path", help="also write the result here, with its provenance")
    args = parser.parse_args()
    result = measure(args)
    print(json.dumps(result))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            out.write(json.dumps({**provenance(), **result}, indent=2) + "\n")
    return 0


def measure(args: argparse.Namespace) -> dict:
    data = list(frames(args.objects, args.frames))
    if args.baseline:
        baseline = importlib.import_module(args.baseline).ByteTracker
        try:  # the baseline's own colour signatures, where its package has them
            baseline_signatures = importlib.import_module(
                args.baseline.rpartition(".")[0] + ".appearance").colour_signatures
        except (ImportError, AttributeError, ValueError):
            baseline_signatures = colour_signatures
        medians: dict[str, list[float]] = {"baseline": [], "current": []}
        for round_index in range(args.rounds):
            order = [("baseline", baseline, baseline_signatures), ("current", ByteTracker, colour_signatures)]
            for name, tracker_class, signatures_of in order if round_index % 2 == 0 else order[::-1]:
                medians[name].append(float(np.median(
                    time_updates(tracker_class, data, args.appearance, signatures_of)[0])))
        old, new = float(np.median(medians["baseline"])), float(np.median(medians["current"]))
        return {"objects": args.objects, "frames": len(data) - 50, "rounds": args.rounds,
                "baseline_median_ms": round(old, 4), "current_median_ms": round(new, 4),
                "speedup": round(old / new, 2)}
    if args.calibrate:
        return {"objects": args.objects, "frames": len(data) - 50, "appearance": args.appearance,
                **calibrated(data, args.calibrate, max(args.rounds, 1), args.appearance)}
    ms, tracker = time_updates(ByteTracker, data, args.appearance)
    return {"objects": args.objects, "frames": len(ms), "median_ms": round(float(np.median(ms)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3), "tracks_held": tracker.track_count,
            "appearance": args.appearance}


if __name__ == "__main__":
    raise SystemExit(main())
