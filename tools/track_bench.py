"""Tracker cost per frame: ``python tools/track_bench.py [--objects 50] [--frames 2000] [--baseline MODULE]``.

Objects of 4 classes move at constant speed with detector-like jitter; a tenth of the boxes are
missed in any frame and a few low-score ones added. Prints the median and 90th percentile of
``ByteTracker.update`` wall time per frame (the issue's budget: 0.3 ms with 50 objects), with the
boxes' colour signatures taken from a 1080p frame inside the timing, as the daemon does
(``--no-appearance``: motion alone, as for NVDEC frames).

``--baseline`` times another tracker on the same frames in the same process, old and new in
alternate order each round (a busy machine's load then falls on both alike): a module with a
``ByteTracker``, e.g. a copy of an older ``streamd/tracking`` as package ``oldtracking`` on
PYTHONPATH (``--baseline oldtracking.bytetrack``). It prints the median over rounds of each
round's median.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

import numpy as np

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


def time_updates(tracker_class, data: list, appearance: bool = True) -> tuple[np.ndarray, ByteTracker]:
    """Milliseconds of each ``update`` (and signatures) after the first 50 frames (tracks are then
    established), and the tracker."""
    tracker = tracker_class(TrackingConfig())
    image = np.random.default_rng(1).integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    seconds = []
    for index, (boxes, scores, classes) in enumerate(data):
        started = time.perf_counter()
        if appearance:
            tracker.update(boxes, scores, classes, index, index / 30, colour_signatures(image, boxes))
        else:
            tracker.update(boxes, scores, classes, index, index / 30)
        seconds.append(time.perf_counter() - started)
    return np.array(seconds[50:]) * 1000, tracker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--baseline", metavar="MODULE", help="also time this module's ByteTracker, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: rounds of both")
    parser.add_argument("--no-appearance", dest="appearance", action="store_false",
                        help="motion alone, for both trackers")
    args = parser.parse_args()
    data = list(frames(args.objects, args.frames))
    if args.baseline:
        baseline = importlib.import_module(args.baseline).ByteTracker
        medians: dict[str, list[float]] = {"baseline": [], "current": []}
        for round_index in range(args.rounds):
            order = [("baseline", baseline), ("current", ByteTracker)]
            for name, tracker_class in order if round_index % 2 == 0 else order[::-1]:
                medians[name].append(float(np.median(time_updates(tracker_class, data, args.appearance)[0])))
        old, new = float(np.median(medians["baseline"])), float(np.median(medians["current"]))
        print(json.dumps({"objects": args.objects, "frames": len(data) - 50, "rounds": args.rounds,
                          "baseline_median_ms": round(old, 4), "current_median_ms": round(new, 4),
                          "speedup": round(old / new, 2)}))
        return 0
    ms, tracker = time_updates(ByteTracker, data, args.appearance)
    print(json.dumps({"objects": args.objects, "frames": len(ms), "median_ms": round(float(np.median(ms)), 3),
                      "p90_ms": round(float(np.percentile(ms, 90)), 3), "tracks_held": tracker.track_count,
                      "appearance": args.appearance}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
