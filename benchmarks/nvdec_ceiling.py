#!/usr/bin/env python3
"""NVDEC's own ceiling across processes: the same number of 1080p H.264 streams decoded flat out by one
process and by several, with nothing else running; prints JSON (and writes it with ``--out``).

    python benchmarks/nvdec_ceiling.py --video vtest_1080p30.mp4 --layouts 1x48,2x24,3x16,4x12,6x8 --seconds 8

A layout ``PxT`` is P processes with T streams each, every stream a ``NvdecReader`` on its own thread
reading the file flat out (reopened at its end), as streamd's capture does. One process can be held
back by its interpreter lock; several show what the decoders themselves sustain. Needs PyNvVideoCodec
and cuda-python. Reports, per layout, aggregate decoded frames/s, the slowest stream's and the
equivalent number of 30 fps cameras.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

CAMERA_FPS = 30.0


def _decode_process(video: str, streams: int, seconds: float, start, results) -> None:
    """One process: ``streams`` readers on threads, each counting frames until the shared deadline."""
    from streamd.config.schema import SourceConfig
    from streamd.cuda import runtime
    from streamd.sources.nvdec import NvdecReader

    runtime.use_device(0)
    readers = [NvdecReader(SourceConfig(f"s{i}", "file", video, decoder="nvdec")) for i in range(streams)]
    for reader in readers:
        reader.open()
        for _ in range(3):  # the decoder session's warm-up
            item = reader.read()
            if item is not None:
                item[0].release()
    counts = [0] * streams

    def work(index: int, deadline: float) -> None:
        reader = readers[index]
        while time.monotonic() < deadline:
            item = reader.read()
            if item is None:
                reader.rewind()
                continue
            item[0].release()
            counts[index] += 1

    start.wait()  # every process's decoders are open: start together
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=work, args=(i, deadline), daemon=True) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for reader in readers:
        reader.close()
    results.put(counts)


def measure(video: str, processes: int, streams_each: int, seconds: float) -> dict:
    context = mp.get_context("spawn")  # CUDA needs a fresh process, not a fork
    start = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [context.Process(target=_decode_process, args=(video, streams_each, seconds, start, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.wait(timeout=120)
    counts = [count for _ in workers for count in results.get(timeout=seconds + 120)]
    for worker in workers:
        worker.join(timeout=30)
    aggregate = sum(counts) / seconds
    return {"processes": processes, "streams_each": streams_each, "streams": processes * streams_each,
            "seconds": seconds, "aggregate_fps": round(aggregate, 1),
            "slowest_stream_fps": round(min(counts) / seconds, 1),
            "cameras_at_30fps": round(aggregate / CAMERA_FPS, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True, help="a 1080p H.264 file (streamd bench --make-test-video)")
    parser.add_argument("--layouts", default="1x48,2x24,3x16,4x12,6x8",
                        help="comma-separated PxT: P processes of T streams (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per layout")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args()
    from streamd.cuda import runtime

    layouts = [tuple(int(v) for v in layout.split("x")) for layout in args.layouts.split(",")]
    report: dict = {**provenance(), "gpu": runtime.device_name(0), "video": Path(args.video).name, "runs": []}
    for processes, streams_each in layouts:
        run = measure(args.video, processes, streams_each, args.seconds)
        print(json.dumps(run), flush=True)
        report["runs"].append(run)
    best = max(report["runs"], key=lambda run: run["aggregate_fps"])
    report["ceiling"] = {"aggregate_fps": best["aggregate_fps"], "cameras_at_30fps": best["cameras_at_30fps"],
                         "layout": f"{best['processes']}x{best['streams_each']}"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
