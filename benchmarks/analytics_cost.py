#!/usr/bin/env python3
"""What zones and lines cost per frame, on the pipeline's publish path, without a model: 50 tracked objects
walking through a 1280x720 picture at 30 fps (a few withheld ids, objects leaving and new ones coming in,
±1 px of box noise), 4 zones (two with a dwell time, one with an occupancy alarm) and 2 lines; then the
same objects standing still (a frame in which nothing changes: the fixed cost).

Blocks of ``--block`` frames alternate: analytics off (the detections message encoded as without zones),
then on (``Analytics.apply`` as the pipeline calls it, the message with its zones field, and the events
message of a frame that has events). A shared machine's load drifts over seconds, so each "on" block is
compared with the "off" blocks beside it. Reported: the median over blocks of microseconds per frame of
each, the added cost per frame (on minus off, per neighbouring pair), and ``Analytics.apply`` alone (also
in a tight loop, frame after frame with nothing between: its floor with warm caches); each
as the thread's CPU time (``time.thread_time``: what the work costs, whatever else runs on the machine)
and as wall time (which, on a busy machine, includes the time other processes had the core).

    python benchmarks/analytics_cost.py --rounds 40 --json benchmarks/results/cpu-2core_analytics-cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.analytics.events import encode as encode_events  # noqa: E402
from streamd.analytics.sources import Analytics  # noqa: E402
from streamd.config.load import parse_config  # noqa: E402
from streamd.publish.message import encode  # noqa: E402
from streamd.yolox.detections import Detections  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30.0
CLASSES = ("person", "bicycle", "car")
SOURCE = "bench"


@dataclass(frozen=True)
class _Frame:
    source_id: str
    index: int
    capture_time: float
    width: int = WIDTH
    height: int = HEIGHT


@dataclass(frozen=True)
class _Result:
    frame: _Frame
    detections: Detections


def scene_config(objects: int) -> object:
    zones = [
        {"name": "entrance", "polygon": [[60, 380], [360, 360], [400, 700], [40, 700]], "dwell_seconds": 10},
        {"name": "queue", "polygon": [[420, 300], [820, 300], [820, 520], [420, 520]], "max_objects": objects // 4,
         "hold_seconds": 2},
        {"name": "counter", "polygon": [[880, 120], [1240, 140], [1220, 420], [900, 400]], "dwell_seconds": 30},
        {"name": "exit", "polygon": [[0.70, 0.75], [0.98, 0.75], [0.98, 0.99], [0.70, 0.99]], "units": "fractions"},
    ]
    lines = [{"name": "door", "points": [[100, 360], [1180, 360]]},
             {"name": "aisle", "points": [[640, 40], [640, 700]], "in_side": "right"}]
    return parse_config({"sources": [{"id": SOURCE, "kind": "synthetic", "zones": zones, "lines": lines}],
                         "model": {"path": "builtin:synthetic-shapes"}})


def walk(objects: int, frames: int, seed: int, moving: bool = True) -> list[Detections]:
    """Objects walking at 0.5 to 2.5 px a frame, turning now and then, with ±1 px of box noise; one that
    leaves the picture comes back as a new id; 4 % of the boxes go out without an id in any frame. Not
    ``moving``: the same objects standing still, without noise or withheld ids (the cost of a frame in
    which nothing changes)."""
    rng = np.random.default_rng(seed)
    position = rng.uniform([0, 0], [WIDTH, HEIGHT], (objects, 2))
    heading = rng.uniform(0, 2 * np.pi, objects)
    speed = rng.uniform(0.5, 2.5, objects) if moving else np.zeros(objects)
    noise = 1.0 if moving else 0.0
    withheld = 0.04 if moving else 0.0
    ids = np.arange(1, objects + 1)
    next_id = objects + 1
    size = rng.uniform([30, 70], [60, 160], (objects, 2))
    classes = rng.choice(len(CLASSES), objects, p=[0.8, 0.1, 0.1]).astype(np.int32)
    out = []
    for _ in range(frames):
        heading += rng.normal(0, 0.05, objects)
        position += np.stack([np.cos(heading), np.sin(heading)], axis=1) * speed[:, None]
        gone = (position[:, 0] < -20) | (position[:, 0] > WIDTH + 20) | (position[:, 1] < 0) | \
               (position[:, 1] > HEIGHT + 40)
        for i in np.flatnonzero(gone):
            position[i] = rng.uniform([0, 0], [WIDTH, HEIGHT])
            ids[i] = next_id
            next_id += 1
        noisy = position + rng.normal(0, 1.0, position.shape) * noise
        # The position is the box's bottom centre.
        boxes = np.concatenate([noisy - np.stack([size[:, 0] / 2, size[:, 1]], axis=1),
                                noisy + np.stack([size[:, 0] / 2, np.zeros(objects)], axis=1)], axis=1)
        np.clip(boxes, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT], out=boxes)
        track_ids = np.where(rng.random(objects) < withheld, -1, ids)
        order = rng.permutation(objects)  # detections come in score order, not id order
        out.append(Detections(boxes[order].astype(np.float32), rng.uniform(0.3, 1, objects).astype(np.float32)[order],
                              classes[order], track_ids[order].astype(np.int64), np.full(objects, 10)[order]))
    return out


def run_off(detections: list[Detections], start: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per frame of the publish path without analytics (the message without zones)."""
    began, began_cpu = time.perf_counter(), time.thread_time()
    for offset, found in enumerate(detections):
        index = start + offset
        encode(SOURCE, index, index, 1e9 + index / FPS, 1e9 + index / FPS + 0.01, WIDTH, HEIGHT, "m", found, CLASSES)
    return ((time.thread_time() - began_cpu) / len(detections) * 1e6,
            (time.perf_counter() - began) / len(detections) * 1e6)


def run_on(analytics: Analytics, detections: list[Detections], start: int,
           apply_times: list[float]) -> tuple[float, float, int]:
    """(CPU, wall) microseconds per frame with analytics, and the events they gave; the block's CPU time in
    ``Analytics.apply`` per frame appended to ``apply_times``."""
    events = 0
    results = [_Result(_Frame(SOURCE, start + offset, 1e9 + (start + offset) / FPS), found)
               for offset, found in enumerate(detections)]
    applying = 0.0
    began, began_cpu = time.perf_counter(), time.thread_time()
    for result in results:
        index = result.frame.index
        capture = result.frame.capture_time
        found = result.detections
        applied = time.thread_time()
        outcome = analytics.apply(result, CLASSES)
        applying += time.thread_time() - applied
        encode(SOURCE, index, index, capture, capture + 0.01, WIDTH, HEIGHT, "m", found, CLASSES,
               zones=outcome.zones_json)
        if outcome.events:
            events += len(outcome.events)
            encode_events(SOURCE, analytics.next_sequence(SOURCE), index, capture, capture + 0.01, outcome.events,
                          CLASSES)
    apply_times.append(applying / len(detections))
    return ((time.thread_time() - began_cpu) / len(detections) * 1e6,
            (time.perf_counter() - began) / len(detections) * 1e6, events)


def measure(args: argparse.Namespace, moving: bool) -> dict:
    load_before = os.getloadavg()[0]
    config = scene_config(args.objects)
    frames = walk(args.objects, args.block * args.rounds, args.seed, moving=moving)
    analytics = Analytics(config.sources, 31)
    run_on(analytics, frames[:args.block], 0, [])  # warm up: tables, caches
    analytics = Analytics(config.sources, 31)
    off, on, off_wall, on_wall, applies, events = [], [], [], [], [], 0
    for round_index in range(args.rounds):
        block = frames[round_index * args.block:(round_index + 1) * args.block]
        cpu, wall = run_off(block, round_index * args.block)
        off.append(cpu)
        off_wall.append(wall)
        times: list[float] = []
        cpu, wall, found = run_on(analytics, block, round_index * args.block, times)
        on.append(cpu)
        on_wall.append(wall)
        applies.append(times[0] * 1e6)
        events += found

    def added(on: list[float], off: list[float]) -> list[float]:
        return [on[i] - (off[i] + off[i + 1]) / 2 if i + 1 < len(off) else on[i] - off[i] for i in range(len(on))]

    added_cpu, added_wall = added(on, off), added(on_wall, off_wall)
    # Analytics.apply alone, frame after frame with nothing between (caches warm): its floor on this machine.
    tight = []
    for _ in range(5):
        alone = Analytics(config.sources, 31)
        results = [_Result(_Frame(SOURCE, index, 1e9 + index / FPS), found)
                   for index, found in enumerate(frames[:args.block * 4])]
        began = time.thread_time()
        for result in results:
            alone.apply(result, CLASSES)
        tight.append((time.thread_time() - began) / len(results) * 1e6)
    return {
        "scene": {"objects": args.objects, "moving": moving, "zones": 4, "lines": 2, "frame": [WIDTH, HEIGHT],
                  "fps": FPS, "frames": len(frames), "block_frames": args.block, "rounds": args.rounds,
                  "events": events, "line_counts": analytics.counts(SOURCE)},
        "cpu_microseconds_per_frame": {
            "apply_median": round(statistics.median(applies), 2),
            "apply_min_over_blocks": round(min(applies), 2),
            "apply_tight_loop_median": round(statistics.median(tight), 2),
            "off_median": round(statistics.median(off), 2),
            "on_median": round(statistics.median(on), 2),
            "added_median": round(statistics.median(added_cpu), 2),
            "added_p90_over_blocks": round(float(np.percentile(added_cpu, 90)), 2),
        },
        "wall_microseconds_per_frame": {
            "off_median": round(statistics.median(off_wall), 2),
            "on_median": round(statistics.median(on_wall), 2),
            "added_median": round(statistics.median(added_wall), 2),
        },
        "blocks_cpu": {"off": [round(v, 2) for v in off], "on": [round(v, 2) for v in on],
                       "apply": [round(v, 2) for v in applies]},
        "blocks_wall": {"off": [round(v, 2) for v in off_wall], "on": [round(v, 2) for v in on_wall]},
        # the machine's 1-minute load average when the scene started and ended (2 cores: above 2, others wait)
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--block", type=int, default=300, help="frames per block (default 300)")
    parser.add_argument("--rounds", type=int, default=40, help="off/on block pairs (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    result: dict = {**provenance(), "target_microseconds_per_frame": 30.0}
    for name, moving in (("walking", True), ("standing", False)):
        result[name] = measure(args, moving)
        print(name, "cpu", json.dumps(result[name]["cpu_microseconds_per_frame"]), "wall",
              json.dumps(result[name]["wall_microseconds_per_frame"]), f"events {result[name]['scene']['events']}",
              f"load {result[name]['load_average_1min']}")
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
