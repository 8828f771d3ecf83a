#!/usr/bin/env python3
"""Where streamd's CPU time goes in the running CPU pipeline: CPU time per frame of each part.

    python3 benchmarks/cpu_pipeline_parts.py --rounds 3            # yolox_nano + vtest from ../shared
    python3 benchmarks/cpu_pipeline_parts.py --rounds 6 --compare-tracking --json parts.json

Runs ``streamd bench``'s pipeline (file read flat out, every frame published to a real subscriber)
with ``time.thread_time`` around each part's call, on whichever thread makes it, and prints the mean
CPU time per call beside the process's CPU time per frame. CPU time is what a busy shared machine
disturbs least; wall-clock fps is not. A part measured in a warm loop of its own looks cheaper
than it is here: right after an inference its code and data are out of cache.

Each round also gives streamd's own CPU a frame: the process's CPU a frame minus ``session.run``'s.
It is the steadiest figure on a shared machine (a slower inference moves both terms) and is what the
``streamd bench`` CPU ratio turns on: the pipeline reaches 0.93 x the raw loops' CPU a frame only
if its own cost is at most (1 / 0.93 - 1) = 7.5 % of inference (printed as the budget).
``--compare-tracking`` alternates rounds with tracking on and off (the order swapped every round),
so the difference of the two medians is what tracking costs inside the pipeline. ``--json`` writes the
rounds with the commit, machine, command and versions (``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.bench import run as bench  # noqa: E402
from streamd.bench.arguments import add_bench_arguments  # noqa: E402
from streamd.config.schema import Config  # noqa: E402
from streamd.daemon import batching, pipeline  # noqa: E402
from streamd.inference import host_detector, onnxruntime_backend  # noqa: E402
from streamd.publish import publisher  # noqa: E402
from streamd.sources import capture, readers  # noqa: E402
from streamd.tracking import sources as tracking  # noqa: E402
from streamd.yolox import postprocess, preprocess  # noqa: E402

# (owner, attribute, part): the calls timed.
PARTS = (
    (readers.VideoFileReader, "read", "video decode (capture)"),
    (capture.CaptureSource, "deliver", "frame into the slot (capture)"),
    (batching.BatchCollector, "next_batch", "batch collector"),
    (preprocess.Preprocessor, "letterbox", "letterbox"),
    # The letterbox and, with model.fold_preprocessing off, the host's HWC uint8 -> CHW float copy.
    (host_detector.HostDetector, "_network_input", "network input (letterbox, + CHW float if not folded)"),
    (onnxruntime_backend.OnnxRuntimeBackend, "infer", "inference (session.run)"),
    (postprocess.YoloxDecoder, "decode", "YOLOX decode + NMS"),
    (tracking.SourceTrackers, "apply", "tracking"),
    (pipeline, "encode", "JSON encode"),
    (publisher.Publisher, "send", "ZeroMQ send"),
    (pipeline.Pipeline, "_publish", "publish, all of it (tracking, encode, send, metrics)"),
)
INFERENCE = "inference (session.run)"
TARGET_RATIO = 0.93  # the bar for the pipeline's throughput over the best raw layout's


def instrument(seconds: dict[str, list[float]]) -> None:
    lock = threading.Lock()
    for owner, attribute, part in PARTS:
        original = getattr(owner, attribute)

        def timed(*args, _original=original, _part=part, **kwargs):
            started = time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                elapsed = time.thread_time() - started
                with lock:
                    seconds[_part].append(elapsed)

        setattr(owner, attribute, timed)


def measure_round(config: Config, frames_wanted: int, seconds: dict[str, list[float]], label: str) -> dict:
    """One pipeline run; prints each part's mean CPU a call, returns the round's figures (ms a frame)."""
    seconds.clear()
    fps, recorder, received = bench.run_pipeline(config, frames_wanted, timeout_seconds=600)
    frames = len(recorder.frame_ages)
    process_ms = recorder.cpu_seconds / frames * 1000
    # One session.run a published frame (file sources read flat out drop nothing); an earlier one is the
    # detector's start-up probe, run before the process CPU starts counting.
    inference_ms = sum(seconds[INFERENCE][-frames:]) / frames * 1000
    if inference_ms <= 0:
        raise SystemExit("cpu_pipeline_parts: no session.run was timed (it measures the onnxruntime backend)")
    own_ms = process_ms - inference_ms
    print(f"{label}: {fps:.1f} fps, {received}/{frames_wanted} received, process CPU {process_ms:.2f} ms per "
          f"frame, session.run {inference_ms:.2f}, streamd's own {own_ms:.2f} (0.93 leaves "
          f"{inference_ms * (1 / TARGET_RATIO - 1):.2f})")
    for _, _, part in PARTS:
        if seconds[part]:
            print(f"    {part:<55} {statistics.fmean(seconds[part]) * 1000:7.3f} ms x {len(seconds[part])}")
    return {"fps": fps, "process_ms": process_ms, "inference_ms": inference_ms, "own_ms": own_ms,
            "parts_ms": {part: statistics.fmean(values) * 1000 for part, values in seconds.items() if values}}


def summary(rounds: list[dict]) -> dict:
    own = statistics.median(r["own_ms"] for r in rounds)
    inference = statistics.median(r["inference_ms"] for r in rounds)
    return {"rounds": rounds, "own_ms_median": own, "inference_ms_median": inference,
            "own_share_of_inference": own / inference,
            # The CPU ratio raw / pipeline this implies when the raw loops' inference costs what the pipeline's does.
            "implied_cpu_ratio": inference / (inference + own)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    parser.add_argument("--compare-tracking", action="store_true",
                        help="alternate rounds with tracking on and off; report both")
    args = parser.parse_args()
    config = bench._config(args, "fast", args.frames)
    if args.compare_tracking:
        variants = {f"tracking {state}": dataclasses.replace(
            config, tracking=dataclasses.replace(config.tracking, enabled=enabled))
            for state, enabled in (("on", True), ("off", False))}
    else:
        variants = {"tracking on" if config.tracking.enabled else "tracking off": config}
    seconds: dict[str, list[float]] = defaultdict(list)
    instrument(seconds)
    rounds: dict[str, list[dict]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            label = f"round {round_index + 1}/{args.rounds}" + (f", {name}" if len(variants) > 1 else "")
            rounds[name].append(measure_round(variants[name], args.frames, seconds, label))
    report = {name: summary(variant_rounds) for name, variant_rounds in rounds.items()}
    for name, result in report.items():
        print(f"{name}: streamd's own CPU {result['own_ms_median']:.2f} ms a frame (median of rounds) against "
              f"session.run {result['inference_ms_median']:.2f}: {result['own_share_of_inference']:.1%} of "
              f"inference, a CPU ratio of {result['implied_cpu_ratio']:.3f} (0.93 needs at most "
              f"{1 / TARGET_RATIO - 1:.1%})")
    if len(report) == 2:
        on, off = report.values()
        print(f"tracking inside the pipeline: {on['own_ms_median'] - off['own_ms_median']:.2f} ms a frame")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({**provenance(), **report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
