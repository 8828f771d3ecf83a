#!/usr/bin/env python3
"""Check and time the GPU path in one go on a machine with an NVIDIA GPU; writes one JSON file.

    python benchmarks/gpu_bench.py --model yolox_nano.onnx --video vtest.avi --image dog.jpg --out result.json

Needs cuda-python (cuda-bindings), torch and onnx. ``--model``, ``--video`` and ``--image`` default to
``$STREAMD_SHARED`` (else ``../shared`` beside the checkout) ``models/yolox_nano.onnx``,
``media/vtest.avi`` and ``media/dog.jpg``; ``--out`` to ``./gpu_bench.json`` (a cProfile of one
pipeline run goes beside it as ``pipeline_profile.txt``). The JSON starts with the commit, machine,
command and versions (``benchmarks/record.py``), then the measurements.

Sections: letterbox kernel (time, difference from the CPU/OpenCV reference); the stand-in engine
(torch graph replay of the ONNX model, NOT TensorRT) against ONNX Runtime on the CPU; its tight-loop
throughput; the double-buffered pipeline's throughput, host cost and equality with a synchronous
single-slot run; GPU decode against the CPU decoder on the same raw outputs; the pinned-memory check.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import io
import json
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.bench.media import read_frames  # noqa: E402
from streamd.cuda import memory, runtime  # noqa: E402
from streamd.cuda.stream import Event, Stream, elapsed_seconds  # noqa: E402
from streamd.frame import Frame  # noqa: E402
from streamd.gpu.detector import GpuDetector  # noqa: E402
from streamd.gpu.postprocess import GpuYoloxDecoder  # noqa: E402
from streamd.gpu.preprocess import GpuLetterbox  # noqa: E402
from streamd.yolox.postprocess import YoloxDecoder  # noqa: E402
from streamd.yolox.preprocess import CONVENTIONS, YOLOX, Preprocessor  # noqa: E402
from tests.gpu.standin_engine import TorchGraphEngine  # noqa: E402

SHARED = Path(os.environ.get("STREAMD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SCORE, NMS = 0.3, 0.45


def upload(array: np.ndarray, stream: Stream) -> tuple[memory.DeviceBuffer, memory.PinnedBuffer]:
    pinned = memory.PinnedBuffer(array.shape, array.dtype)
    pinned.array[...] = array
    device = memory.DeviceBuffer(array.nbytes)
    memory.copy_htod_async(device.ptr, pinned.ptr, array.nbytes, stream.ptr)
    return device, pinned


def download(device_ptr: int, shape: tuple[int, ...], dtype, stream: Stream) -> np.ndarray:
    pinned = memory.PinnedBuffer(shape, dtype)
    memory.copy_dtoh_async(pinned.ptr, device_ptr, pinned.nbytes, stream.ptr)
    stream.synchronize()
    out = pinned.array.copy()
    pinned.free()
    return out


SPIN_SOURCE = r"""
extern "C" __global__ void spin(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


def time_kernel(launch, stream: Stream, iterations: int) -> float:
    """Event-timed mean seconds per launch over ``iterations`` back-to-back launches.

    A spin kernel holds the stream first while the host queues every launch, so the events time the
    device work alone, not the host's launch rate (a Python launch costs more than this kernel runs).
    """
    from streamd.cuda import nvrtc

    spin = nvrtc.Kernel(nvrtc.load_module(SPIN_SOURCE, "spin"), "spin", (ctypes.c_longlong,))
    for _ in range(10):
        launch(0)
    start, end = Event(), Event()
    spin.launch((1, 1, 1), (1, 1, 1), stream.ptr, (int(5e7),))  # ~25 ms at ~2 GHz
    start.record(stream)
    queued = time.perf_counter()
    for i in range(iterations):
        launch(i)
    queued = time.perf_counter() - queued
    end.record(stream)
    end.synchronize()
    seconds = elapsed_seconds(start, end) / iterations
    if start.query() and queued > 0.02:
        print(f"warning: queueing took {queued * 1e3:.1f} ms, longer than the spin: timing includes host gaps")
    start.close()
    end.close()
    return seconds


def bench_letterbox(images: dict[str, np.ndarray], stream: Stream) -> dict:
    results = {}
    cases = [("1920x1080", 640, 640, "yolox", np.float32), ("1920x1080", 640, 640, "legacy", np.float32),
             ("1920x1080", 640, 640, "yolox", np.float16), ("768x576", 416, 416, "yolox", np.float32),
             ("300x200", 640, 640, "legacy", np.float32), ("1001x703", 416, 416, "yolox", np.float32)]
    for size, width, height, convention_name, dtype in cases:
        image = images[size]
        convention = CONVENTIONS[convention_name]
        kernel = GpuLetterbox(convention, width, height, dtype)
        reference, _ = Preprocessor(convention, width, height)(image)
        frames = [upload(np.ascontiguousarray(np.roll(image, k, axis=1)), stream) for k in range(4)]
        output = memory.DeviceBuffer(kernel.output_nbytes)
        kernel.launch(frames[0][0].ptr, image.shape[1], image.shape[0], output.ptr, stream.ptr)
        got = download(output.ptr, (1, 3, height, width), dtype, stream).astype(np.float32)
        runtime.last_launch_error("letterbox")
        # Compare in 0-255 units whatever the convention's scaling.
        gain = convention.channel_gain.reshape(1, 3, 1, 1)
        difference = np.abs(got - reference) / gain
        def launch(i: int, kernel=kernel, frames=frames, image=image, output=output) -> None:
            kernel.launch(frames[i % 4][0].ptr, image.shape[1], image.shape[0], output.ptr, stream.ptr)

        seconds = time_kernel(launch, stream, 500)
        host_started = time.perf_counter()
        for i in range(200):
            launch(i)
        host_launch = (time.perf_counter() - host_started) / 200
        stream.synchronize()
        key = f"{size}->{width}x{height} {convention_name} {np.dtype(dtype).name}"
        results[key] = {"us_per_frame": seconds * 1e6, "host_us_per_launch": host_launch * 1e6,
                        "mean_abs_diff_0_255": float(difference.mean()),
                        "max_abs_diff_0_255": float(difference.max()),
                        "fraction_exact": float(np.mean(difference == 0))}
        for device_buffer, pinned in frames:
            device_buffer.free()
            pinned.free()
        output.free()
    return results


def check_standin(engine: TorchGraphEngine, model_path: str, image: np.ndarray, stream: Stream) -> dict:
    import onnxruntime as ort

    spec_in, spec_out = engine.inputs[0], engine.outputs[0]
    height, width = spec_in.shape[2], spec_in.shape[3]
    network_input, _ = Preprocessor(YOLOX, width, height)(image)
    reference = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(
        None, {spec_in.name: network_input})[0]
    device_in, pinned_in = upload(network_input, stream)
    stream.synchronize()
    device_out = memory.DeviceBuffer.for_array(spec_out.shape, np.float32)
    engine.run_eager(device_in.ptr, device_out.ptr)
    eager = download(device_out.ptr, spec_out.shape, np.float32, stream)
    addresses = {spec_in.name: device_in.ptr, spec_out.name: device_out.ptr}
    memory.memset_async(device_out.ptr, 0xFF, device_out.nbytes, stream.ptr)  # poison: NaNs
    engine.enqueue(addresses, stream.ptr)
    replayed = download(device_out.ptr, spec_out.shape, np.float32, stream)
    iterations = 300
    seconds = time_kernel(lambda i: engine.enqueue(addresses, stream.ptr), stream, iterations)
    host_started = time.perf_counter()
    for _ in range(iterations):
        engine.enqueue(addresses, stream.ptr)
    host_seconds = (time.perf_counter() - host_started) / iterations
    stream.synchronize()
    for buffer in (device_in, pinned_in, device_out):
        buffer.free()
    return {"max_abs_diff_vs_onnxruntime_cpu": float(np.abs(eager - reference).max()),
            "graph_replay_equals_eager": bool(np.array_equal(replayed, eager)),
            "tight_loop_ms_per_inference": seconds * 1e3, "tight_loop_fps": 1.0 / seconds,
            "host_ms_per_enqueue": host_seconds * 1e3}


def make_detector(model_path: str, slots: int, **options) -> GpuDetector:
    return GpuDetector(TorchGraphEngine(model_path), YOLOX, 80, SCORE, NMS, slots=slots,
                       max_detections=100, **options)


def run_pipeline(detector: GpuDetector, frames: list[Frame], use_pinned_frames: bool,
                 on_timed: Callable[[bool], None] | None = None) -> tuple[list, dict]:
    """Warm up, then time ``frames`` through the detector; ``on_timed(True/False)`` brackets the timed part."""
    for frame in frames[:8]:  # warm-up: graph capture per slot, kernel loads
        detector.submit(frame)
    detector.drain()
    detector.wait_seconds = 0.0
    results, submit_seconds = [], 0.0
    if on_timed is not None:
        on_timed(True)
    started = time.perf_counter()
    for original in frames:
        frame = original
        call = time.perf_counter()
        if use_pinned_frames:
            # What a capture thread decoding straight into pinned memory does; the copy stands in for
            # the decoder's own write and is not host cost of the pipeline.
            buffer = detector.host_frame_buffer(frame.width, frame.height)
            copy_started = time.perf_counter()
            np.copyto(buffer, frame.image)
            call += time.perf_counter() - copy_started
            frame = Frame(frame.source_id, frame.index, frame.capture_time, frame.capture_monotonic, buffer)
        results.extend(detector.submit(frame))
        submit_seconds += time.perf_counter() - call
    call = time.perf_counter()
    results.extend(detector.drain())
    submit_seconds += time.perf_counter() - call
    wall = time.perf_counter() - started
    if on_timed is not None:
        on_timed(False)
    count = len(frames)
    return results, {"frames": count, "fps": count / wall,
                     "host_ms_per_frame": (submit_seconds - detector.wait_seconds) / count * 1e3,
                     "blocked_ms_per_frame": detector.wait_seconds / count * 1e3}


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.frame.index != y.frame.index:
            return False
        if not (np.array_equal(x.detections.boxes_xyxy, y.detections.boxes_xyxy)
                and np.array_equal(x.detections.scores, y.detections.scores)
                and np.array_equal(x.detections.class_ids, y.detections.class_ids)):
            return False
    return True


def check_decode(model_path: str, frames: list[Frame], stream: Stream, score: float) -> dict:
    """GPU decode vs CPU decoder on the same raw outputs (downloaded once)."""
    engine = TorchGraphEngine(model_path)
    spec_in, spec_out = engine.inputs[0], engine.outputs[0]
    height, width = spec_in.shape[2], spec_in.shape[3]
    letterbox = GpuLetterbox(YOLOX, width, height)
    gpu = GpuYoloxDecoder("yolox", width, height, 80, score, NMS, 100)
    cpu = YoloxDecoder("yolox", width, height, 80, score, NMS, 100)
    device_in = memory.DeviceBuffer.for_array(spec_in.shape, np.float32)
    device_out = memory.DeviceBuffer.for_array(spec_out.shape, np.float32)
    area = memory.DeviceBuffer(gpu.device_area_nbytes)
    host_area = gpu.new_host_area()
    addresses = {spec_in.name: device_in.ptr, spec_out.name: device_out.ptr}
    equal, max_box_diff, total, overflow = 0, 0.0, 0, 0
    for frame in frames:
        device_frame, pinned = upload(frame.image, stream)
        letterbox.launch(device_frame.ptr, frame.width, frame.height, device_in.ptr, stream.ptr, area.ptr)
        engine.enqueue(addresses, stream.ptr)
        gpu.launch(device_out.ptr, area.ptr, stream.ptr)
        gpu.copy_back(area.ptr, host_area, stream.ptr)
        raw = download(device_out.ptr, spec_out.shape, np.float32, stream)
        records = gpu.records(host_area.array, area.ptr)
        overflow += int(records.shape[0] > gpu.host_capacity)
        mine, theirs = gpu.finish(records), cpu.decode([raw])
        total += 1
        if (len(mine) == len(theirs) and np.array_equal(mine.class_ids, theirs.class_ids)
                and np.array_equal(mine.scores, theirs.scores)):
            box_diff = float(np.abs(mine.boxes_xyxy - theirs.boxes_xyxy).max()) if len(mine) else 0.0
            max_box_diff = max(max_box_diff, box_diff)
            equal += int(box_diff <= 1e-3)
        device_frame.free()
        pinned.free()
    result = {"score_threshold": score, "frames": total, "frames_equal": equal,
              "max_box_abs_diff_px": max_box_diff, "frames_over_host_capacity": overflow,
              "bytes_copied_back_per_frame": gpu.copy_back_nbytes, "raw_output_bytes": gpu.raw_output_nbytes,
              "copied_back_fraction": gpu.copy_back_nbytes / gpu.raw_output_nbytes}
    for buffer in (device_in, device_out, area, host_area):
        buffer.free()
    gpu.close()
    engine.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "yolox_nano.onnx"))
    parser.add_argument("--video", default=str(SHARED / "media" / "vtest.avi"))
    parser.add_argument("--image", default=str(SHARED / "media" / "dog.jpg"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", "--output", dest="output", default="gpu_bench.json", help="the JSON written")
    args = parser.parse_args()

    runtime.use_device(0)
    report: dict = {**provenance(), "device": runtime.device_name(0),
                    "compute_capability": runtime.compute_capability(0)}
    stream = Stream()
    video_images = read_frames(args.video, args.frames)
    dog = cv2.imread(args.image)
    rng = np.random.default_rng(0)
    big = cv2.resize(video_images[0], (1920, 1080), interpolation=cv2.INTER_CUBIC)
    images = {"1920x1080": big, "768x576": video_images[1], "300x200": cv2.resize(dog, (300, 200)),
              "1001x703": rng.integers(0, 256, (703, 1001, 3), dtype=np.uint8)}

    report["letterbox"] = bench_letterbox(images, stream)
    print("letterbox done", flush=True)

    engine = TorchGraphEngine(args.model)
    report["standin_engine"] = check_standin(engine, args.model, dog, stream)
    engine.close()
    print("stand-in engine done", flush=True)

    frames = [Frame("vtest", i, time.time(), time.monotonic(), image) for i, image in enumerate(video_images)]
    frames_1080 = [Frame("vtest1080", i, time.time(), time.monotonic(),
                         cv2.resize(image, (1920, 1080))) for i, image in enumerate(video_images[:100])]

    # Pinned-memory check: every host pointer given to a copy on the per-frame path must be page-locked.
    host_pointers: list[tuple[str, int]] = []
    original_htod, original_dtoh = memory.copy_htod_async, memory.copy_dtoh_async

    def traced_htod(dst, src, nbytes, stream_ptr):
        host_pointers.append(("htod", src))
        original_htod(dst, src, nbytes, stream_ptr)

    def traced_dtoh(dst, src, nbytes, stream_ptr):
        host_pointers.append(("dtoh", dst))
        original_dtoh(dst, src, nbytes, stream_ptr)

    pipeline = {}
    single = make_detector(args.model, slots=1)
    sync_results, pipeline["synchronous_1_slot"] = run_pipeline(single, frames, use_pinned_frames=False)
    single.close()
    double = make_detector(args.model, slots=2)
    memory.copy_htod_async, memory.copy_dtoh_async = traced_htod, traced_dtoh
    try:
        async_results, pipeline["double_buffered_copy_in"] = run_pipeline(double, frames, use_pinned_frames=False)
    finally:
        memory.copy_htod_async, memory.copy_dtoh_async = original_htod, original_dtoh
    pinned_check = {"copies_traced": len(host_pointers),
                    "distinct_host_pointers": len(set(host_pointers)),
                    "pageable_pointers": sum(not memory.is_pinned(p) for _, p in set(host_pointers))}
    pinned_results, pipeline["double_buffered_pinned_frames"] = run_pipeline(double, frames, use_pinned_frames=True)
    double.close()
    triple = make_detector(args.model, slots=3)
    _, pipeline["triple_buffered_pinned_frames"] = run_pipeline(triple, frames, use_pinned_frames=True)
    triple.close()
    # Same run again, and with the idle rule off: the spread between identical runs, and the rule's cost.
    again = make_detector(args.model, slots=2)
    _, pipeline["double_buffered_pinned_frames_repeat"] = run_pipeline(again, frames, use_pinned_frames=True)
    again.close()
    no_idle = make_detector(args.model, slots=2, idle_factor=0.0)
    _, pipeline["double_buffered_pinned_frames_idle_rule_off"] = run_pipeline(no_idle, frames, True)
    no_idle.close()
    # Frames a capture allocated in pinned memory (a pinned frame pool): uploaded with no host copy.
    pool = [memory.PinnedBuffer(f.image.shape, np.uint8) for f in frames]
    pooled_frames = []
    for buffer, frame in zip(pool, frames):
        buffer.array[...] = frame.image
        pooled_frames.append(Frame(frame.source_id, frame.index, frame.capture_time, frame.capture_monotonic,
                                   buffer.array))
    pooled = make_detector(args.model, slots=2)
    pooled_results, pipeline["double_buffered_pinned_pool_frames"] = run_pipeline(pooled, pooled_frames, False)
    pooled.close()
    pipeline["results_equal_sync_vs_double_pinned_pool"] = same(sync_results, pooled_results)
    for buffer in pool:
        buffer.free()
    untimed = make_detector(args.model, slots=2, collect_timings=False)
    _, pipeline["double_buffered_pinned_frames_no_stage_timings"] = run_pipeline(untimed, frames, True)
    profiler = cProfile.Profile()
    profiler.enable()
    run_pipeline(untimed, frames, True)
    profiler.disable()
    untimed.close()
    profile_text = io.StringIO()
    pstats.Stats(profiler, stream=profile_text).sort_stats("tottime").print_stats(25)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).with_name("pipeline_profile.txt").write_text(profile_text.getvalue())
    double_1080 = make_detector(args.model, slots=2)
    _, pipeline["double_buffered_1080p_pinned_frames"] = run_pipeline(double_1080, frames_1080, True)
    double_1080.close()
    engine_fps = report["standin_engine"]["tight_loop_fps"]
    for entry in pipeline.values():
        if isinstance(entry, dict) and "fps" in entry:
            entry["fps_over_engine_tight_loop"] = entry["fps"] / engine_fps
    pipeline["results_equal_sync_vs_double"] = same(sync_results, async_results)
    pipeline["results_equal_sync_vs_double_pinned"] = same(sync_results, pinned_results)
    pipeline["pinned_memory_check"] = pinned_check
    report["pipeline"] = pipeline
    print("pipeline done", flush=True)

    report["gpu_decode"] = [check_decode(args.model, frames[:100], stream, SCORE),
                            check_decode(args.model, frames[:30], stream, 0.01)]
    dog_detector = make_detector(args.model, slots=2, class_names=())
    dog_results = dog_detector.submit(Frame("dog", 0, 0.0, 0.0, dog)) + dog_detector.drain()
    dog_detector.close()
    report["dog_jpg"] = [{"class_id": int(c), "score": round(float(s), 3)}
                         for c, s in zip(dog_results[0].detections.class_ids, dog_results[0].detections.scores)]
    stream.close()

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
