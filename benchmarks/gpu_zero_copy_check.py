#!/usr/bin/env python3
"""Zero-copy vs copy GPU path on the same frames: identical detections? host cost and throughput of each.

    python benchmarks/gpu_zero_copy_check.py --model yolox_nano.onnx --video vtest.avi --out result.json

Runs on any CUDA GPU with cuda-python, torch and onnx (the detector runs on the torch stand-in engine,
``tests.gpu.standin_engine``, NOT TensorRT). Modes, all on one engine:

- ``copy``: ``GpuDetector``, frames in pinned memory uploaded on a copy stream, candidates copied back;
- ``zero_copy_frames``: ``ZeroCopyGpuDetector(mapped_results=False)``, the letterbox kernel reads each
  frame in place from mapped page-locked memory (no upload), candidates still copied back;
- ``zero_copy``: ``ZeroCopyGpuDetector`` as the daemon builds it (``model.zero_copy``): frames read in
  place and candidates written to mapped memory (no copy in either direction).

Then the batched detectors (``model.max_batch`` > 1), ``batch_copy`` (``BatchGpuDetector``) and
``batch_zero_copy`` (``ZeroCopyBatchGpuDetector``: pool frames letterboxed in place), in batches of 4
over the first ``--batch-frames`` frames.

Frames come as the daemon's capture hands them over: written beforehand into buffers from the
detector's own ``frame_allocator()`` (pinned for ``copy``, mapped for the zero-copy modes), so the
timed part is the pipeline's alone. A second feed, ``pageable``, hands ordinary numpy frames (one host
memcpy into the slot's buffer in every mode). Every mode's detections are compared with ``copy``'s
(frame order, boxes, scores, classes, exactly); a first untimed pass counts the host<->device copies
per frame. Timed rounds alternate the modes. On a discrete GPU the zero-copy modes are expected to be
slower: the kernel reads each frame across PCIe. Prints one JSON object, starting with the commit,
machine, command and versions (``benchmarks/record.py``), and writes it to ``--out`` when given; exit
0 when every mode's detections are identical to the copy path's, 1 otherwise. ``--model`` and
``--video`` default to ``$STREAMD_SHARED`` (else ``../shared`` beside the checkout)
``models/yolox_nano.onnx`` and ``media/vtest.avi``. Takes well under a minute on an H200.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from record import provenance  # noqa: E402

from streamd.bench.media import read_frames  # noqa: E402
from streamd.cuda import memory, runtime  # noqa: E402
from streamd.cuda.device_info import cuda_versions, device_info  # noqa: E402
from streamd.frame import Frame  # noqa: E402
from streamd.gpu.batch_detector import BatchGpuDetector  # noqa: E402
from streamd.gpu.detector import GpuDetector  # noqa: E402
from streamd.gpu.zero_copy import ZeroCopyGpuDetector, resolve_zero_copy  # noqa: E402
from streamd.gpu.zero_copy_batch import ZeroCopyBatchGpuDetector  # noqa: E402
from streamd.yolox.preprocess import YOLOX  # noqa: E402
from tests.gpu.standin_engine import TorchGraphEngine  # noqa: E402

SHARED = Path(os.environ.get("STREAMD_SHARED", REPO.parent / "shared"))
SCORE, NMS = 0.3, 0.45
MODES = ("copy", "zero_copy_frames", "zero_copy")
BATCH = 4


def make_detector(mode: str, engine: TorchGraphEngine) -> GpuDetector:
    options = {"slots": 2, "max_detections": 100, "owns_engine": False}
    if mode == "copy":
        return GpuDetector(engine, YOLOX, 80, SCORE, NMS, **options)
    return ZeroCopyGpuDetector(engine, YOLOX, 80, SCORE, NMS, mapped_results=(mode == "zero_copy"), **options)


class FrameBuffers:
    """Each frame copied into a buffer of the detector's own allocator, as the capture's frame pool does."""

    def __init__(self, detector: GpuDetector, images: list[np.ndarray]) -> None:
        allocate = detector.frame_allocator()
        self.frees = []
        self.frames = []
        for index, image in enumerate(images):
            array, free = allocate(image.shape, image.dtype)
            np.copyto(array, image)
            self.frees.append(free)
            self.frames.append(Frame("check", index, 0.0, 0.0, array))

    def free(self) -> None:
        for free in reversed(self.frees):
            free()


def run(detector: GpuDetector, frames: list[Frame]) -> tuple[list, dict]:
    detector.wait_seconds = 0.0
    results = []
    started = time.perf_counter()
    for frame in frames:
        results.extend(detector.submit(frame))
    results.extend(detector.drain())
    wall = time.perf_counter() - started
    count = len(frames)
    return results, {"fps": count / wall, "host_ms_per_frame": (wall - detector.wait_seconds) / count * 1e3,
                     "blocked_ms_per_frame": detector.wait_seconds / count * 1e3}


def detections(results: list) -> list[tuple]:
    return [(r.frame.index, r.detections.boxes_xyxy.tobytes(), r.detections.scores.tobytes(),
             r.detections.class_ids.tobytes(), len(r.detections.scores)) for r in results]


def compare(reference: list[tuple], other: list[tuple]) -> dict:
    differing = [a[0] for a, b in zip(reference, other) if a != b]
    return {"identical": len(reference) == len(other) and not differing, "frames": len(other),
            "frames_differing": len(differing) + abs(len(reference) - len(other)),
            "first_differing_frames": differing[:5]}


def traced_pass(detector: GpuDetector, frames: list[Frame]) -> tuple[list, dict]:
    """One untimed pass counting the per-frame host<->device copies the pipeline makes."""
    counts = {"htod": 0, "dtoh": 0}
    htod, dtoh = memory.copy_htod_async, memory.copy_dtoh_async

    def traced_htod(*args):
        counts["htod"] += 1
        return htod(*args)

    def traced_dtoh(*args):
        counts["dtoh"] += 1
        return dtoh(*args)

    memory.copy_htod_async, memory.copy_dtoh_async = traced_htod, traced_dtoh
    try:
        results, _ = run(detector, frames)
    finally:
        memory.copy_htod_async, memory.copy_dtoh_async = htod, dtoh
    count = len(frames)
    return results, {"uploads_per_frame": counts["htod"] / count, "copy_backs_per_frame": counts["dtoh"] / count}


def run_batches(detector, frames: list[Frame], batch: int) -> tuple[list, dict]:
    """The batched detector over ``frames`` in batches of ``batch`` (results one call late, the last from drain)."""
    detector.wait_seconds = 0.0
    results = []
    started = time.perf_counter()
    for start in range(0, len(frames), batch):
        results.extend(detector.submit_batch(frames[start:start + batch]))
    results.extend(detector.drain())
    wall = time.perf_counter() - started
    count = len(frames)
    return results, {"fps": count / wall, "host_ms_per_frame": (wall - detector.wait_seconds) / count * 1e3,
                     "blocked_ms_per_frame": detector.wait_seconds / count * 1e3}


def batch_check(args: argparse.Namespace, images: list[np.ndarray]) -> dict:
    """BatchGpuDetector vs ZeroCopyBatchGpuDetector (model.max_batch > 1) on the daemon's pool frames."""
    section: dict = {"batch": BATCH}
    engine = TorchGraphEngine(args.model, device=args.device, max_batch=BATCH)
    detectors: dict = {}
    buffers: dict[str, FrameBuffers] = {}
    reference: list[tuple] | None = None
    try:
        for mode, detector_class in (("batch_copy", BatchGpuDetector), ("batch_zero_copy", ZeroCopyBatchGpuDetector)):
            entry = section[mode] = {}
            try:
                detector = detectors[mode] = detector_class(engine, YOLOX, 80, SCORE, NMS, max_batch=BATCH,
                                                            max_detections=100, owns_engine=False)
                detector.warm_up()
                buffers[mode] = FrameBuffers(detector, images)
                counts = {"htod": 0}
                htod = memory.copy_htod_async

                def traced(*arguments, counts=counts, htod=htod):
                    counts["htod"] += 1
                    return htod(*arguments)

                memory.copy_htod_async = traced
                try:
                    results, _ = run_batches(detector, buffers[mode].frames, BATCH)
                finally:
                    memory.copy_htod_async = htod
                batches = -(-len(images) // BATCH)
                entry["frame_uploads_per_frame"] = (counts["htod"] - batches) / len(images)  # less descriptor tables
                found = detections(results)
                entry["detections"] = sum(item[4] for item in found)
                if reference is None:
                    reference = found
                entry["vs_batch_copy"] = compare(reference, found)
            except Exception as error:  # report the mode's failure and go on
                entry["error"] = f"{type(error).__name__}: {error}"
                entry["traceback"] = traceback.format_exc(limit=6)
                detectors.pop(mode, None)
        timed: dict[str, list] = {mode: [] for mode in detectors}
        for _ in range(args.rounds):
            for mode, detector in detectors.items():
                timed[mode].append(run_batches(detector, buffers[mode].frames, BATCH)[1])
        for mode, runs in timed.items():
            section[mode]["timed"] = summarise(runs)
    finally:
        for detector in detectors.values():
            detector.close()
        for frame_buffers in buffers.values():
            frame_buffers.free()
        engine.close()
    section["identical_detections"] = all(section.get(mode, {}).get("vs_batch_copy", {}).get("identical", False)
                                          for mode in ("batch_copy", "batch_zero_copy"))
    return section


def summarise(runs: list[dict]) -> dict:
    return {key: {"median": statistics.median(r[key] for r in runs), "min": min(r[key] for r in runs),
                  "max": max(r[key] for r in runs)} for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--video", type=Path, default=SHARED / "media" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--batch-frames", type=int, default=60, help="frames for the batched detectors' "
                        f"comparison (batches of {BATCH}); 0 skips it")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    missing = [str(path) for path in (args.model, args.video) if not path.is_file()]
    if missing:
        print(json.dumps({"error": f"missing {missing}: pass --model PATH/yolox_nano.onnx --video PATH/vtest.avi, "
                                   "or set STREAMD_SHARED to the folder holding models/ and media/"}))
        return 2
    try:
        return check(args)
    except Exception as error:  # still one JSON object: what failed, where
        print(json.dumps({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=8)}))
        return 1


def check(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    runtime.use_device(args.device)
    info = device_info(args.device)
    report: dict = {**provenance(), "check": "zero-copy vs copy GPU path (stand-in engine, not TensorRT)",
                    "device": info.as_dict(), "cuda": cuda_versions(),
                    "auto_picks": "zero_copy" if resolve_zero_copy("auto", info) else "copy",
                    "model": str(args.model), "video": str(args.video)}
    images = read_frames(args.video, args.frames)
    if not images:
        raise SystemExit(f"no frames read from {args.video}")
    report["frames"] = len(images)
    report["frame_size"] = [int(images[0].shape[1]), int(images[0].shape[0])]
    engine = TorchGraphEngine(args.model, device=args.device)
    detectors: dict[str, GpuDetector] = {}
    buffers: dict[str, FrameBuffers] = {}
    modes: dict[str, dict] = {}
    reference: list[tuple] | None = None
    pageable = [Frame("check", i, 0.0, 0.0, image) for i, image in enumerate(images)]
    try:
        for mode in MODES:
            entry = modes[mode] = {}
            try:
                detector = detectors[mode] = make_detector(mode, engine)
                detector.warm_up()
                buffers[mode] = FrameBuffers(detector, images)
                before = (getattr(detector, "frames_in_place", 0), getattr(detector, "frames_copied", 0))
                results, entry["copies"] = traced_pass(detector, buffers[mode].frames)
                if isinstance(detector, ZeroCopyGpuDetector):  # the capture's pool frames: none copied
                    entry["pool_frames_read_in_place"] = detector.frames_in_place - before[0]
                    entry["pool_frames_copied_into_slot"] = detector.frames_copied - before[1]
                found = detections(results)
                entry["detections"] = sum(item[4] for item in found)
                if reference is None:
                    reference = found
                entry["vs_copy"] = compare(reference, found)
                pageable_results, _ = run(detector, pageable)
                entry["pageable_vs_copy"] = compare(reference, detections(pageable_results))
            except Exception as error:  # report the mode's failure and go on with the others
                entry["error"] = f"{type(error).__name__}: {error}"
                entry["traceback"] = traceback.format_exc(limit=6)
                detectors.pop(mode, None)
        timed: dict[str, dict[str, list]] = {mode: {"pool": [], "pageable": []} for mode in detectors}
        for _ in range(args.rounds):
            for mode, detector in detectors.items():
                timed[mode]["pool"].append(run(detector, buffers[mode].frames)[1])
                timed[mode]["pageable"].append(run(detector, pageable)[1])
        for mode, feeds in timed.items():
            modes[mode]["timed"] = {feed: summarise(runs) for feed, runs in feeds.items()}
    finally:
        for detector in detectors.values():
            detector.close()
        for frame_buffers in buffers.values():
            frame_buffers.free()
        engine.close()
    report["modes"] = modes
    if "copy" in modes and "timed" in modes["copy"]:
        base = modes["copy"]["timed"]["pool"]
        report["relative_to_copy"] = {
            mode: {"fps": entry["timed"]["pool"]["fps"]["median"] / base["fps"]["median"],
                   "host_ms_per_frame": entry["timed"]["pool"]["host_ms_per_frame"]["median"]
                   / base["host_ms_per_frame"]["median"]}
            for mode, entry in modes.items() if "timed" in entry}
    report["identical_detections_single"] = all(entry.get("vs_copy", {}).get("identical", False)
                                                and entry.get("pageable_vs_copy", {}).get("identical", False)
                                                for entry in modes.values())
    if args.batch_frames:
        try:
            report["batched"] = batch_check(args, images[:args.batch_frames])
        except Exception as error:  # the single-frame result above still stands
            report["batched"] = {"error": f"{type(error).__name__}: {error}",
                                 "traceback": traceback.format_exc(limit=6), "identical_detections": False}
    report["identical_detections"] = report["identical_detections_single"] and (
        not args.batch_frames or report["batched"]["identical_detections"])
    report["seconds"] = time.perf_counter() - started
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["identical_detections"] else 1


if __name__ == "__main__":
    sys.exit(main())
