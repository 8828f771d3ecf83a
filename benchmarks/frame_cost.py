#!/usr/bin/env python3
"""Host cost per frame after inference: tracking, message encode, ZeroMQ send and metrics, in one process.

    python benchmarks/frame_cost.py                                   # 24 sources, 30 objects a frame
    python benchmarks/frame_cost.py --appearance                      # host frames: colour signatures too
    python benchmarks/frame_cost.py --before /tmp/ab --rounds 8 --json result.json

Every source's detections (boxes moving at constant speed with detector-like jitter; a tenth of them
missed in any frame, a seventh low-score) go through the pipeline's real publish path,
``Pipeline._complete`` with one batch of every source's frame per tick, as a batching detector hands them
over: tracking (``SourceTrackers.apply``), ``encode``, ``Publisher.send`` to a subscriber in another
process, and the metrics. Frames carry a stand-in for a device (NVDEC) picture, which has no host pixels,
so tracking is by motion alone; ``--appearance`` gives them one 1080p host image instead. Two kinds of
round alternate: plain (the figures that count: the thread's CPU time and wall time per frame, median
over the ticks; CPU time is what a busy shared machine disturbs least) and instrumented (the thread's
CPU time around each part's call: ``ByteTracker.update``, the rest of ``apply``, ``encode``, ``send`` and
the rest of ``_publish``, the metrics; the timers add to the parts, the same to both versions).

``--before DIR``: DIR holds a renamed copy of another version as package ``streamd_before``:

    mkdir -p /tmp/ab && git archive OLD streamd | tar -x -C /tmp/ab && mv /tmp/ab/streamd /tmp/ab/streamd_before
    sed -i -E 's/^(\\s*)(from|import) streamd([. ])/\\1\\2 streamd_before\\3/' $(find /tmp/ab -name '*.py')

Both run on the same detections, taking turns at every tick (A B B A ...: a busy machine's load falls on
both alike); the per-round ratios of the medians and their median are reported. First both replay
every frame with a fixed clock and must give the same message bytes and the same metrics exposition
(the run stops otherwise). ``--json`` writes the result after the commit, machine, command and versions
(``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import importlib
import json
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
CLASS_NAMES = ("person", "bicycle", "car", "motorcycle")
WARMUP_TICKS = 30  # tracks are established after these; their ticks are not counted
PARTS = ("tracker update", "tracking, the rest (signatures, track metrics)", "message encode", "ZeroMQ send",
         "pipeline, the rest (metrics observations)")

_SUBSCRIBER = """
import sys, zmq
socket = zmq.Context.instance().socket(zmq.SUB)
socket.setsockopt(zmq.RCVHWM, 100000)
for endpoint in sys.argv[1:]:
    socket.connect(endpoint)
socket.setsockopt(zmq.SUBSCRIBE, b"")
print("ready", flush=True)
while True:
    socket.recv_multipart()
"""


class DeviceImage:
    """What the tracker and messages see of an NVDEC frame: a shape, no host pixels."""

    ndim = 3
    shape = (HEIGHT, WIDTH, 3)


def detections_of(source: int, objects: int, frames: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """benchmarks/track_bench.py's scene, one per source (its own seed), on a 1080p frame whose edges the
    objects turn back at; boxes clipped to the frame, as a detector's are."""
    rng = np.random.default_rng(source)
    centre = rng.uniform([50, 50], [WIDTH - 50, HEIGHT - 50], size=(objects, 2))
    velocity = rng.uniform(-4, 4, size=(objects, 2))
    size = rng.uniform(30, 120, size=(objects, 2))
    classes = rng.integers(0, len(CLASS_NAMES), objects)
    out = []
    low, high = size / 2, [WIDTH, HEIGHT] - size / 2
    for _ in range(frames):
        centre = centre + velocity
        # Objects stay in view: one that reaches an edge turns back.
        outside = (centre < low) | (centre > high)
        velocity[outside] *= -1
        centre = np.clip(centre, low, high)
        shown = rng.random(objects) > 0.1
        jitter = rng.normal(0, 1.5, size=(objects, 4))
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) + jitter
        boxes.clip(0, [WIDTH, HEIGHT, WIDTH, HEIGHT], out=boxes)  # as a detector clips them to the frame
        scores = np.where(rng.random(objects) < 0.15, rng.uniform(0.3, 0.5, objects), rng.uniform(0.6, 0.95, objects))
        out.append((boxes[shown].astype(np.float32), scores[shown].astype(np.float32),
                    classes[shown].astype(np.int32)))
    return out


class Variant:
    """One version of streamd (a package name) set up for a run: its pipeline, trackers, metrics, publisher."""

    def __init__(self, package: str, endpoint: str) -> None:
        self.package = package
        self.modules = types.SimpleNamespace(**{name: importlib.import_module(f"{package}.{path}") for name, path in (
            ("pipeline", "daemon.pipeline"), ("definitions", "metrics.definitions"),
            ("publisher", "publish.publisher"), ("sources", "tracking.sources"), ("schema", "config.schema"),
            ("frame", "frame"), ("detector", "inference.detector"), ("detections", "yolox.detections"),
            ("latest_frame", "sources.latest_frame"), ("bytetrack", "tracking.bytetrack"),
            ("batching", "daemon.batching"))})
        self.endpoint = endpoint
        self.publisher = None

    def open(self) -> str:
        m = self.modules
        from prometheus_client import CollectorRegistry

        self.publisher = m.publisher.Publisher(self.endpoint, 100000, m.definitions.StreamdMetrics(CollectorRegistry()))
        return self.publisher.bound_endpoint

    def results(self, data: list[list[tuple]], image: object) -> list[list[object]]:
        """Per tick, every source's DetectionResult (this version's classes)."""
        m = self.modules
        timings = m.detector.StageTimings(0.002, 0.004, 0.001)
        ticks = []
        for index in range(len(data[0])):
            tick = []
            for source, frames in enumerate(data):
                boxes, scores, classes = frames[index]
                frame = m.frame.Frame(f"cam{source:02d}", index, 1.7e9 + index / 30, 1000.0 + index / 30, image)
                tick.append(m.detector.DetectionResult(frame, m.detections.Detections(boxes, scores, classes),
                                                       timings))
            ticks.append(tick)
        return ticks

    def pipeline(self, sources: int, appearance: bool):
        """A fresh pipeline (trackers and metrics from scratch) on this version's publisher."""
        from prometheus_client import CollectorRegistry

        m = self.modules
        metrics = m.definitions.StreamdMetrics(CollectorRegistry())
        source_ids = [f"cam{source:02d}" for source in range(sources)]
        for source_id in source_ids:
            metrics.declare_source(source_id)
        self.publisher._metrics = metrics
        trackers = m.sources.SourceTrackers(m.schema.TrackingConfig(appearance=appearance), source_ids, metrics)
        detector = types.SimpleNamespace(model_id="bench-model", class_names=CLASS_NAMES, max_batch=sources)
        pipeline = m.pipeline.Pipeline([], [detector], self.publisher, metrics, m.latest_frame.FrameSignal(),
                                       trackers=trackers)
        return pipeline, metrics


class FixedClock:
    """A stand-in for the time module in the pipeline: every reading the same, so stage times are 0 and
    messages carry one publish time."""

    def time(self) -> float:
        return 1.7e9 + 1000.0

    def perf_counter(self) -> float:
        return 50.0

    def monotonic(self) -> float:
        return 2000.0


def replay_outputs(variant: Variant, ticks: list, sources: int, appearance: bool) -> tuple[list[list[bytes]], bytes]:
    """Every message and the final metrics exposition of one replay under a fixed clock."""
    from prometheus_client import generate_latest

    m = variant.modules
    pipeline, metrics = variant.pipeline(sources, appearance)
    sent: list[list[bytes]] = []
    publisher_send = variant.publisher.send

    def record(parts: list[bytes]) -> bool:
        sent.append([bytes(part) for part in parts])
        return publisher_send(parts)

    original_time = m.pipeline.time
    variant.publisher.send = record
    m.pipeline.time = FixedClock()
    try:
        for ticket, tick in enumerate(ticks):
            pipeline._complete(ticket, tick)
    finally:
        m.pipeline.time = original_time
        del variant.publisher.send
    # Left out: the publisher's counters (they run over every replay), creation times and the sources' last
    # frame times (wall clock at declare_source, not the pipeline's).
    exposition = b"\n".join(line for line in generate_latest(metrics.registry).splitlines()
                            if not line.startswith(b"streamd_messages_") and b"_created" not in line
                            and b"last_frame" not in line)
    return sent, exposition


def timed_round(variants: list[Variant], ticks: dict[str, list], sources: int,
                appearance: bool) -> dict[str, tuple[list[float], list[float]]]:
    """Plain round: every version's pipeline from scratch, fed tick by tick, the versions taking turns at
    each tick (the first one swapped every tick), so that a busy machine's load falls on all of them alike.
    Per version, seconds per frame of each tick after the warm-up: wall time, and this thread's CPU time
    (what a busy shared machine disturbs least: time the thread was not running is not in it)."""
    pipelines = {variant.package: variant.pipeline(sources, appearance)[0]._complete for variant in variants}
    times: dict[str, tuple[list[float], list[float]]] = {variant.package: ([], []) for variant in variants}
    clock, thread_clock = time.perf_counter, time.thread_time
    names = list(pipelines)
    gc.collect()
    for ticket in range(len(next(iter(ticks.values())))):
        for name in names if ticket % 2 == 0 else names[::-1]:
            complete, tick = pipelines[name], ticks[name][ticket]
            started, started_cpu = clock(), thread_clock()
            complete(ticket, tick)
            cpu_seconds, wall_seconds = thread_clock() - started_cpu, clock() - started
            if ticket >= WARMUP_TICKS:
                times[name][0].append(wall_seconds / sources)
                times[name][1].append(cpu_seconds / sources)
    return times


def instrumented_round(variants: list[Variant], ticks: dict[str, list], sources: int,
                       appearance: bool) -> dict[str, dict[str, float]]:
    """Per version, mean seconds per frame of each part: this thread's CPU time around each part's call (a
    system call of about a microsecond each: included in the parts), the versions taking turns at each tick
    as in ``timed_round``."""
    totals = {variant.package: dict.fromkeys(("update", "apply", "encode", "send", "publish"), 0.0)
              for variant in variants}
    clock = time.thread_time
    counting = [False]

    def wrap(owner: object, attribute: str, key: dict[str, float], name: str) -> tuple[object, str, object]:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                if counting[0]:
                    key[name] += clock() - started

        setattr(owner, attribute, timed)
        return owner, attribute, original

    wrapped = []
    pipelines = {}
    try:
        for variant in variants:
            m, total = variant.modules, totals[variant.package]
            wrapped += [wrap(m.bytetrack.ByteTracker, "update", total, "update"),
                        wrap(m.sources.SourceTrackers, "apply", total, "apply"),
                        wrap(m.pipeline, "encode", total, "encode"), wrap(m.publisher.Publisher, "send", total, "send"),
                        wrap(m.pipeline.Pipeline, "_publish", total, "publish")]
            pipelines[variant.package] = variant.pipeline(sources, appearance)[0]._complete
        names = list(pipelines)
        gc.collect()
        for ticket in range(len(next(iter(ticks.values())))):
            counting[0] = ticket >= WARMUP_TICKS
            for name in names if ticket % 2 == 0 else names[::-1]:
                pipelines[name](ticket, ticks[name][ticket])
    finally:
        for owner, attribute, original in reversed(wrapped):
            setattr(owner, attribute, original)
    frames = (len(next(iter(ticks.values()))) - WARMUP_TICKS) * sources
    parts = {}
    for name, total in totals.items():
        per_frame = {key: value / frames for key, value in total.items()}
        parts[name] = {
            PARTS[0]: per_frame["update"], PARTS[1]: per_frame["apply"] - per_frame["update"],
            PARTS[2]: per_frame["encode"], PARTS[3]: per_frame["send"],
            PARTS[4]: per_frame["publish"] - per_frame["apply"] - per_frame["encode"] - per_frame["send"],
            "total (instrumented)": per_frame["publish"]}
    return parts


class _SimulatedClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _SimulatedSource:
    """What the batch collector reads of a capture source, fed by ``_SimulatedArrivals``."""

    def __init__(self, variant: Variant, index: int) -> None:
        self.source_id = f"cam{index:02d}"
        self.slot = variant.modules.latest_frame.LatestFrameSlot()
        self.state = "streaming"
        self.finished = threading.Event()
        self.last_frame_monotonic = 0.0
        self.index = 0


class _SimulatedArrivals:
    """The frame signal's condition for a collector on a simulated clock: ``wait`` moves the clock on to the
    next frame's arrival (or the timeout) and puts the frames that arrived in their slots, as capture threads
    would; the CPU time that takes is kept apart (``delivery_seconds``)."""

    def __init__(self, variant: Variant, clock: _SimulatedClock, sources: list[_SimulatedSource],
                 period_seconds: float, seed: int = 0) -> None:
        self._frame = variant.modules.frame.Frame
        self._clock, self._sources, self._period = clock, sources, period_seconds
        rng = np.random.default_rng(seed)
        self._arrivals = [(float(rng.uniform(0, period_seconds)), index) for index in range(len(sources))]
        heapq.heapify(self._arrivals)
        self.delivery_seconds = 0.0

    def __enter__(self) -> _SimulatedArrivals:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def notify_all(self) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        started = time.thread_time()
        until = self._clock.now + (1.0 if timeout is None else timeout)
        if self._arrivals[0][0] <= until:
            until = self._arrivals[0][0]
            while self._arrivals[0][0] <= until:
                at, index = heapq.heappop(self._arrivals)
                source = self._sources[index]
                source.slot.put(self._frame(source.source_id, source.index, at, at, DeviceImage()))
                source.index += 1
                source.last_frame_monotonic = at
                heapq.heappush(self._arrivals, (at + self._period, index))
        self._clock.now = until
        self.delivery_seconds += time.thread_time() - started
        return True


def collector_round(variant: Variant, sources: int, max_batch: int, seconds: float,
                    batch_seconds: float = 0.008) -> float:
    """CPU seconds of ``BatchCollector.next_batch`` per frame it returns, over ``seconds`` of simulated
    time: ``sources`` cameras at 30 fps, each at its own phase, batches of up to ``max_batch`` that take the
    detector ``batch_seconds``; the simulated capture's own puts are not counted."""
    clock = _SimulatedClock()
    simulated = [_SimulatedSource(variant, index) for index in range(sources)]
    arrivals = _SimulatedArrivals(variant, clock, simulated, 1 / 30)
    collector = variant.modules.batching.BatchCollector(simulated, arrivals, max_batch, 0.02, clock=clock)
    frames, cpu_seconds = 0, 0.0
    gc.collect()
    while clock.now < seconds:
        started, delivery = time.thread_time(), arrivals.delivery_seconds
        batch = collector.next_batch()
        cpu_seconds += time.thread_time() - started - (arrivals.delivery_seconds - delivery)
        frames += len(batch)
        clock.now += batch_seconds
        collector.observe_batch_seconds(batch_seconds)
    return cpu_seconds / frames


def start_subscriber(endpoints: list[str]) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, *endpoints], stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("frame_cost: the subscriber did not start")
    time.sleep(0.5)  # its subscriptions reach the publishers
    return process


def microseconds(seconds: float) -> float:
    return round(seconds * 1e6, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=24)
    parser.add_argument("--objects", type=int, default=33, help="objects per source (a tenth missed a frame)")
    parser.add_argument("--frames", type=int, default=150, help="frames per source a round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each kind per version")
    parser.add_argument("--appearance", action="store_true", help="host frames: colour signatures in tracking")
    parser.add_argument("--before", metavar="DIR", help="a folder with another version as package streamd_before")
    parser.add_argument("--collector-seconds", type=float, default=10.0,
                        help="simulated seconds of the batch collector a round and version (0: none)")
    parser.add_argument("--max-batch", type=int, help="the collector's batch size (default: every source)")
    parser.add_argument("--json", dest="json_path", help="also write the result here, with its provenance")
    args = parser.parse_args()
    max_batch = args.max_batch or args.sources

    data = [detections_of(source, args.objects, args.frames) for source in range(args.sources)]
    image = (np.random.default_rng(1).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
             if args.appearance else DeviceImage())
    packages = ["streamd"]
    if args.before:
        sys.path.insert(0, str(Path(args.before).resolve()))
        packages.insert(0, "streamd_before")
    variants = [Variant(package, "tcp://127.0.0.1:0") for package in packages]
    subscriber = start_subscriber([variant.open() for variant in variants])
    try:
        ticks = {variant.package: variant.results(data, image) for variant in variants}
        # Out of the garbage collector's reach, as the daemon moves what start-up made (service.start_sources):
        # a collection then scans what the per-frame path allocates, not the rounds' stored detections.
        gc.freeze()
        outputs = {variant.package: replay_outputs(variant, ticks[variant.package], args.sources, args.appearance)
                   for variant in variants}
        identical = None
        if len(variants) == 2:
            (messages_a, metrics_a), (messages_b, metrics_b) = outputs.values()
            identical = messages_a == messages_b and metrics_a == metrics_b
            if not identical:
                raise SystemExit(f"frame_cost: the versions differ: messages equal {messages_a == messages_b}, "
                                 f"metrics equal {metrics_a == metrics_b}")
        messages = next(iter(outputs.values()))[0]
        tracked = [json.loads(parts[1]) for parts in messages[-args.sources:]]
        boxes_per_frame = statistics.fmean(len(message["detections"]) for message in tracked)
        with_id = statistics.fmean(sum(d["track_id"] is not None for d in message["detections"]) for message in tracked)

        wall: dict[str, list[float]] = {variant.package: [] for variant in variants}
        cpu: dict[str, list[float]] = {variant.package: [] for variant in variants}
        parts: dict[str, list[dict[str, float]]] = {variant.package: [] for variant in variants}
        collector: dict[str, list[float]] = {variant.package: [] for variant in variants}
        for round_index in range(args.rounds):
            times = timed_round(variants, ticks, args.sources, args.appearance)
            for variant in variants:
                round_wall, round_cpu = times[variant.package]
                wall[variant.package].append(statistics.median(round_wall))
                cpu[variant.package].append(statistics.median(round_cpu))
            for name, round_parts in instrumented_round(variants, ticks, args.sources, args.appearance).items():
                parts[name].append(round_parts)
            for variant in (variants if round_index % 2 == 0 else variants[::-1]) if args.collector_seconds else ():
                collector[variant.package].append(
                    collector_round(variant, args.sources, max_batch, args.collector_seconds))
            print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
                f"{variant.package} {microseconds(cpu[variant.package][-1])} us CPU a frame "
                f"({microseconds(wall[variant.package][-1])} wall)" for variant in variants), flush=True)
    finally:
        subscriber.kill()
        subscriber.wait()
        for variant in variants:
            variant.publisher.close()

    report: dict[str, object] = {
        "sources": args.sources, "objects": args.objects, "frames_per_round": args.frames,
        "ticks_counted": args.frames - WARMUP_TICKS, "rounds": args.rounds, "appearance": args.appearance,
        "frame_image": "1080p host image" if args.appearance else "device stand-in (no host pixels)",
        "boxes_per_frame": round(boxes_per_frame, 1), "boxes_with_track_id_per_frame": round(with_id, 1),
        "outputs_identical": identical, "unit": "microseconds per frame",
        "collector": (f"{args.collector_seconds} simulated s a round: {args.sources} sources at 30 fps, batches of "
                      f"up to {max_batch}, 8 ms each" if args.collector_seconds else None)}
    for variant in variants:
        name = "before" if variant.package == "streamd_before" else "after" if args.before else "current"
        report[name] = {
            "cpu_median_per_frame_us": microseconds(statistics.median(cpu[variant.package])),
            "cpu_round_medians_us": [microseconds(value) for value in cpu[variant.package]],
            "wall_median_per_frame_us": microseconds(statistics.median(wall[variant.package])),
            "wall_round_medians_us": [microseconds(value) for value in wall[variant.package]],
            "parts_median_us": {part: microseconds(statistics.median(r[part] for r in parts[variant.package]))
                                for part in parts[variant.package][0]}}
        if args.collector_seconds:
            report[name]["collector_median_per_frame_us"] = microseconds(statistics.median(collector[variant.package]))
            report[name]["collector_round_us"] = [microseconds(value) for value in collector[variant.package]]
    if args.before:
        for clock_name, values in (("cpu", cpu), ("wall", wall)):
            ratios = [old / new for old, new in zip(values["streamd_before"], values["streamd"])]
            report[f"{clock_name}_round_ratios_before_over_after"] = [round(ratio, 3) for ratio in ratios]
            report[f"{clock_name}_ratio_median"] = round(statistics.median(ratios), 3)
            report[f"{clock_name}_cut_median"] = round(1 - 1 / statistics.median(ratios), 3)
        if args.collector_seconds:
            ratios = [old / new for old, new in zip(collector["streamd_before"], collector["streamd"])]
            report["collector_ratio_median"] = round(statistics.median(ratios), 3)
            # The publish path and the collector together, round by round.
            ratios = [(cpu_old + collector_old) / (cpu_new + collector_new) for cpu_old, collector_old, cpu_new,
                      collector_new in zip(cpu["streamd_before"], collector["streamd_before"], cpu["streamd"],
                                           collector["streamd"])]
            report["cpu_with_collector_round_ratios"] = [round(ratio, 3) for ratio in ratios]
            report["cpu_with_collector_ratio_median"] = round(statistics.median(ratios), 3)
        before_parts, after_parts = report["before"]["parts_median_us"], report["after"]["parts_median_us"]
        report["parts_ratio_before_over_after"] = {part: round(before_parts[part] / after_parts[part], 3)
                                                   for part in before_parts if after_parts[part] > 0}
    print(json.dumps(report, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({**provenance(), **report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
