#!/usr/bin/env python3
"""Where streamd's CPU time goes in the running CPU pipeline: CPU time per frame of each part.

    python3 tools/cpu_pipeline_parts.py --rounds 3            # yolox_nano + vtest from ../shared

Runs ``streamd bench``'s pipeline (file read flat out, every frame published to a real subscriber)
with ``time.thread_time`` around each part's call, on whichever thread makes it, and prints the mean
CPU time per call beside the process's CPU time per frame. CPU time is what a busy shared machine
disturbs least; wall-clock fps is not. A part measured in a warm loop of its own looks cheaper
than it is here: right after an inference its code and data are out of cache.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamd.bench import run as bench  # noqa: E402
from streamd.bench.arguments import add_bench_arguments  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    args = parser.parse_args()
    config = bench._config(args, "fast", args.frames)
    seconds: dict[str, list[float]] = defaultdict(list)
    instrument(seconds)
    for round_index in range(args.rounds):
        seconds.clear()
        fps, recorder, received = bench.run_pipeline(config, args.frames, timeout_seconds=600)
        frames = len(recorder.frame_ages)
        print(f"round {round_index + 1}/{args.rounds}: {fps:.1f} fps, {received}/{args.frames} received, "
              f"process CPU {recorder.cpu_seconds / frames * 1000:.2f} ms per frame")
        for _, _, part in PARTS:
            if seconds[part]:
                print(f"    {part:<55} {statistics.fmean(seconds[part]) * 1000:7.3f} ms x {len(seconds[part])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
