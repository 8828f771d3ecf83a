"""The pieces under many cameras per GPU (NVDEC decode, the batched letterbox, the engine at batch N,
the batch detector), checked and timed in one run on a machine with an NVIDIA GPU; prints JSON.

    python benchmarks/gpu_scale_check.py --video V1080.mp4 --video2 V720.mp4 --reschange MIXED.h264 \
        --model yolox_nano.onnx [--streams 4,16,48] [--scale 48,64] [--seconds 8] [--out result.json]

Needs PyNvVideoCodec, cuda-python (cuda-bindings), torch and onnx (the engine is the torch stand-in,
not TensorRT). V1080.mp4: a 1080p H.264 file (``streamd bench --make-test-video`` makes one from
vtest.avi); V720.mp4 a clip at another resolution; MIXED.h264 a stream whose resolution changes
mid-stream. The JSON starts with the commit, machine, command and versions (``benchmarks/record.py``).

Sections (each reports its own error instead of stopping the run):
  nvdec_probe      PyNvVideoCodec's frame layout and whether Decode reuses its output buffers
  nvdec_single     one NvdecReader flat out (frames/s), surface pool counts
  nvdec_streams    N NvdecReaders on threads flat out: aggregate and slowest-stream frames/s
  resolution       a stream that changes from 1920x1080 to 1280x720 mid-stream
  letterbox        the batched kernel vs cv2.cvtColor(NV12) + the CPU letterbox (bit-exactness), vs OpenCV's
                   own decode + CPU letterbox (NVDEC vs FFmpeg decode), time per batch
  engine           stand-in engine at batch 1/8/32 (ms per batch, frames/s), batched outputs vs batch 1
  equality         BatchGpuDetector vs GpuDetector on the same frames (boxes within 1 px, same classes),
                   host BGR and NVDEC NV12 frames; submit_batch time at the largest batch
  scale            N cameras paced at their frame rate (NVDEC) -> newest frame of each -> BatchGpuDetector:
                   per-stream fps, frame age at result p50/p99, host CPU cores used
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
from record import provenance  # noqa: E402

from streamd.config.schema import SourceConfig  # noqa: E402
from streamd.cuda import memory, runtime  # noqa: E402
from streamd.cuda.stream import Event, Stream, elapsed_seconds  # noqa: E402
from streamd.frame import Frame  # noqa: E402
from streamd.sources.device_image import DeviceNV12  # noqa: E402
from streamd.sources.nvdec import NvdecReader  # noqa: E402
from streamd.yolox.preprocess import YOLOX, Preprocessor  # noqa: E402

SCORE, NMS = 0.3, 0.45
INPUT = 416


def section(name: str, results: dict, function, *args) -> None:
    started = time.perf_counter()
    try:
        results[name] = function(*args)
    except Exception as error:  # one failed section must not hide the others
        results[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
    results.setdefault(name, {})
    if isinstance(results[name], dict):
        results[name]["section_seconds"] = round(time.perf_counter() - started, 2)
    print(f"[{name}] {json.dumps(results[name], default=str)[:1500]}", flush=True)


def download(ptr: int, nbytes: int) -> np.ndarray:
    cudart, _, _ = runtime.bindings()
    host = np.empty(nbytes, np.uint8)
    runtime.check(cudart.cudaMemcpy(host.ctypes.data, ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                  "cudaMemcpy(download)")
    return host


def nv12_to_host(image: DeviceNV12) -> np.ndarray:
    """The packed NV12 surface as an (H * 3/2) x W array (pool surfaces are packed: pitch = width)."""
    rows = image.height + (image.height + 1) // 2
    return download(image.luma_ptr, image.width * rows).reshape(rows, image.width)


def source(url: str, name: str = "cam") -> SourceConfig:
    return SourceConfig(name, "file", url, decoder="nvdec")


# -- NVDEC ------------------------------------------------------------------------------------------

def nvdec_probe(video: str) -> dict:
    import PyNvVideoCodec as nvc  # noqa: N813

    runtime.use_device(0)
    demuxer = nvc.CreateDemuxer(filename=video)
    decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0,
                                usedevicememory=True)
    pointers, layout = [], None
    for packet in demuxer:
        for frame in decoder.Decode(packet):
            planes = frame.cuda()
            interfaces = [p.__cuda_array_interface__ for p in planes]
            if layout is None:
                layout = [{k: v for k, v in i.items() if k != "data"} for i in interfaces]
            pointers.append(int(interfaces[0]["data"][0]))
        if len(pointers) >= 12:
            break
    return {"version": getattr(nvc, "__version__", "?"), "codec": str(demuxer.GetNvCodecId()),
            "size": [demuxer.Width(), demuxer.Height()], "fps": demuxer.FrameRate(), "planes": layout,
            "frames_seen": len(pointers), "distinct_luma_pointers": len(set(pointers)),
            "decoder_reuses_buffers": len(set(pointers)) < len(pointers)}


def read_all(reader: NvdecReader, limit: int) -> tuple[int, list[tuple[int, int]]]:
    count, sizes = 0, []
    while count < limit:
        item = reader.read()
        if item is None:
            break
        image = item[0]
        if not sizes or sizes[-1][0] != (image.width, image.height):
            sizes.append(((image.width, image.height), count))
        image.release()
        count += 1
    return count, sizes


def nvdec_single(video: str) -> dict:
    runtime.use_device(0)
    reader = NvdecReader(source(video))
    reader.open()
    read_all(reader, 10)  # session warm-up
    started = time.perf_counter()
    count, _ = read_all(reader, 10_000)
    seconds = time.perf_counter() - started
    stats = {"allocated": reader.pool.allocated, "leased_now": reader.pool.leased, "released": reader.pool.released,
             "exhausted": reader.pool.exhausted}
    fps = reader.native_fps
    reader.close()
    return {"frames": count, "fps": count / seconds, "native_fps": fps, "pool": stats}


def nvdec_streams(video: str, counts: list[int], frames_each: int) -> dict:
    out = {}
    for count in counts:
        readers = [NvdecReader(source(video, f"s{i}")) for i in range(count)]
        results = [0] * count
        elapsed = [0.0] * count
        barrier = threading.Barrier(count + 1)

        def work(index: int, readers=readers, barrier=barrier, results=results, elapsed=elapsed) -> None:
            runtime.use_device(0)
            reader = readers[index]
            try:
                reader.open()
                read_all(reader, 5)
            except Exception:
                barrier.abort()  # the main thread stops waiting at once
                raise
            barrier.wait()
            started = time.perf_counter()
            results[index], _ = read_all(reader, frames_each)
            elapsed[index] = time.perf_counter() - started
            reader.close()

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        barrier.wait(timeout=60)
        started = time.perf_counter()
        for thread in threads:
            thread.join(timeout=300)
        wall = time.perf_counter() - started
        per_stream = [r / e for r, e in zip(results, elapsed) if e > 0]
        out[str(count)] = {"aggregate_fps": sum(results) / wall, "slowest_stream_fps": min(per_stream),
                           "frames": sum(results), "wall_seconds": wall}
    return out


def resolution_change(path: str) -> dict:
    runtime.use_device(0)
    reader = NvdecReader(source(path))
    reader.open()
    count, sizes = read_all(reader, 10_000)
    decoder = reader._decoder
    changes = getattr(decoder, "resolution_changes", None)
    stats = {"allocated": reader.pool.allocated, "released": reader.pool.released, "leased_now": reader.pool.leased}
    reader.close()
    return {"frames": count, "size_runs": [[list(s), start] for s, start in sizes],
            "decoder_recreated": changes, "pool": stats}


def resolution_probe(path: str) -> dict:
    """What PyNvVideoCodec hands out when a stream changes size: frame shapes per decoder option, and whether
    the 720p part is scaled to the first size (compared with OpenCV's decode of the same frame, upscaled)."""
    import PyNvVideoCodec as nvc  # noqa: N813

    runtime.use_device(0)
    capture = cv2.VideoCapture(path)
    opencv = {}
    for index in range(90):
        ok, image = capture.read()
        if ok and index in (20, 60, 80):
            opencv[index] = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    capture.release()
    out = {"opencv_sizes": {k: list(v.shape) for k, v in opencv.items()}}
    for name, options in (("max_1920x1088", {"maxwidth": 1920, "maxheight": 1088}), ("no_max", {}),
                          ("max_4096", {"maxwidth": 4096, "maxheight": 4096})):
        entry: dict = {}
        try:
            demuxer = nvc.CreateDemuxer(filename=path)
            decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0,
                                        usedevicememory=True, **options)
            entry["decoder_methods"] = [m for m in dir(decoder) if not m.startswith("_")][:40]
            runs, index = [], 0
            for packet in demuxer:
                for frame in decoder.Decode(packet):
                    cai = frame.cuda()[0].__cuda_array_interface__
                    shape = [int(cai["shape"][0]), int(cai["shape"][1])]
                    sizes = {}
                    for getter in ("GetWidth", "GetHeight"):
                        if hasattr(decoder, getter):
                            try:
                                sizes[getter] = getattr(decoder, getter)()
                            except Exception as error:  # noqa: BLE001
                                sizes[getter] = str(error)[:80]
                    if not runs or runs[-1][0] != shape:
                        runs.append([shape, index, sizes])
                    if index in opencv:
                        pitch = int(cai["strides"][0]) if cai.get("strides") else shape[1]
                        luma = download(int(cai["data"][0]), pitch * shape[0]).reshape(shape[0], pitch)[:, :shape[1]]
                        reference = opencv[index]
                        if reference.shape != luma.shape:
                            reference = cv2.resize(reference, (shape[1], shape[0]))
                        entry[f"frame_{index}_luma_vs_opencv_gray_mean_abs"] = float(
                            np.abs(luma.astype(np.int16) - reference.astype(np.int16)).mean())
                    index += 1
            entry["runs"] = runs
            entry["frames"] = index
        except Exception as error:  # noqa: BLE001
            entry["error"] = f"{type(error).__name__}: {error}"[:300]
        out[name] = entry
    return out


# -- batched letterbox ------------------------------------------------------------------------------

def nvdec_frames(path: str, count: int, stride: int = 1) -> tuple[NvdecReader, list[DeviceNV12]]:
    reader = NvdecReader(source(path), pool_surfaces=count + 2)
    reader.open()
    frames = []
    index = 0
    while len(frames) < count:
        item = reader.read()
        if item is None:
            break
        if index % stride == 0:
            frames.append(item[0])
        else:
            item[0].release()
        index += 1
    return reader, frames


def letterbox_check(video: str, video2: str) -> dict:
    from streamd.gpu.batch_preprocess import FrameSurface, GpuBatchLetterbox

    runtime.use_device(0)
    reader1, frames1 = nvdec_frames(video, 6, stride=20)
    reader2, frames2 = nvdec_frames(video2, 2, stride=15)
    nv12 = frames1 + frames2
    preprocessor = Preprocessor(YOLOX, INPUT, INPUT)
    # BGR host frames too (mixed in one batch): OpenCV's decode of the same file.
    capture = cv2.VideoCapture(video)
    opencv_frames = []
    for index in range(101):
        ok, image = capture.read()
        if ok and index % 20 == 0:
            opencv_frames.append(image)
    capture.release()
    stream = Stream()
    bgr_buffers = []
    surfaces = [FrameSurface.nv12(f.luma_ptr, f.chroma_ptr, f.width, f.height, f.pitch, f.chroma_pitch) for f in nv12]
    for image in opencv_frames[:2]:
        buffer = memory.DeviceBuffer(image.nbytes)
        memory.copy_htod_async(buffer.ptr, image.ctypes.data, image.nbytes, stream.ptr)
        bgr_buffers.append(buffer)
        surfaces.append(FrameSurface.bgr(buffer.ptr, image.shape[1], image.shape[0]))
    stream.synchronize()
    letterbox = GpuBatchLetterbox(YOLOX, INPUT, INPUT, max_batch=64)
    output = memory.DeviceBuffer(64 * 3 * INPUT * INPUT * 4)
    letterbox.launch(surfaces, output.ptr, stream)
    stream.synchronize()
    gpu = download(output.ptr, len(surfaces) * 3 * INPUT * INPUT * 4).view(np.float32).reshape(
        len(surfaces), 3, INPUT, INPUT)
    diffs_cvtcolor, diffs_opencv_decode = [], []
    for index, frame in enumerate(nv12):
        reference = cv2.cvtColor(nv12_to_host(frame), cv2.COLOR_YUV2BGR_NV12)
        expected, _ = preprocessor(reference)
        diffs_cvtcolor.append(np.abs(gpu[index] - expected[0]))
    for index, image in enumerate(opencv_frames[:2]):
        expected, _ = preprocessor(image)
        diffs_cvtcolor.append(np.abs(gpu[len(nv12) + index] - expected[0]))  # BGR path: must be exact
    for index in range(len(frames1)):  # frames 0, 20, 40, ... of both decoders
        expected, _ = preprocessor(opencv_frames[index])
        diffs_opencv_decode.append(np.abs(gpu[index] - expected[0]))
    stacked = np.stack(diffs_cvtcolor)
    decode_diff = np.stack(diffs_opencv_decode)
    # Time: batches of 1080p NV12 (the same surfaces repeated) and of 32 mixed.
    timings = {}
    start, end = Event(), Event()
    for batch in (1, 8, 32, 48):
        batch_surfaces = [surfaces[i % len(frames1)] for i in range(batch)]
        letterbox.launch(batch_surfaces, output.ptr, stream)
        stream.synchronize()
        iterations = 50
        start.record(stream)
        host_started = time.perf_counter()
        for _ in range(iterations):
            letterbox.launch(batch_surfaces, output.ptr, stream)
        host = (time.perf_counter() - host_started) / iterations
        end.record(stream)
        end.synchronize()
        seconds = elapsed_seconds(start, end) / iterations
        timings[str(batch)] = {"us_per_batch": seconds * 1e6, "us_per_frame": seconds * 1e6 / batch,
                               "host_us_per_launch": host * 1e6}
    for frame in nv12:
        frame.release()
    stats = {"released": reader1.pool.released + reader2.pool.released,
             "leased_now": reader1.pool.leased + reader2.pool.leased}
    reader1.close()
    reader2.close()
    for buffer in bgr_buffers:
        buffer.free()
    output.free()
    letterbox.close()
    start.close()
    end.close()
    stream.close()
    return {"frames": {"nv12_1080p": len(frames1), "nv12_720p": len(frames2), "bgr": len(opencv_frames[:2])},
            "vs_cvtcolor_nv12_plus_cpu_letterbox": {"max_abs_diff": float(stacked.max()),
                                                    "mean_abs_diff": float(stacked.mean()),
                                                    "fraction_exact": float((stacked == 0).mean())},
            "vs_opencv_ffmpeg_decode_plus_cpu_letterbox": {"mean_abs_diff": float(decode_diff.mean()),
                                                           "max_abs_diff": float(decode_diff.max()),
                                                           "p99_abs_diff": float(np.percentile(decode_diff, 99))},
            "timing_1080p_nv12": timings, "pool_after_release": stats}


# -- engine ----------------------------------------------------------------------------------------

def engine_check(model: str) -> dict:
    import onnxruntime as ort

    from tests.gpu.standin_engine import TorchGraphEngine

    runtime.use_device(0)
    engine = TorchGraphEngine(model, max_batch=48)
    spec_in, spec_out = engine.inputs[0], engine.outputs[0]
    stream = Stream()
    rng = np.random.default_rng(0)
    per_frame_in = 3 * INPUT * INPUT * 4
    per_frame_out = int(np.prod(spec_out.shape[1:])) * 4
    device_in = memory.DeviceBuffer(48 * per_frame_in)
    device_out = memory.DeviceBuffer(48 * per_frame_out)
    batch_input = rng.integers(0, 256, (8, 3, INPUT, INPUT)).astype(np.float32)
    memory.copy_htod_async(device_in.ptr, batch_input.ctypes.data, batch_input.nbytes, stream.ptr)
    stream.synchronize()
    addresses = {spec_in.name: device_in.ptr, spec_out.name: device_out.ptr}
    engine.set_input_shapes(engine.static_shapes(8))
    engine.enqueue(addresses, stream.ptr)
    stream.synchronize()
    batched = download(device_out.ptr, 8 * per_frame_out).view(np.float32).reshape(8, *spec_out.shape[1:])
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {spec_in.name: batch_input[i:i + 1]})[0] for i in range(8)])
    engine.set_input_shapes(engine.static_shapes(1))
    singles = []
    for index in range(8):
        single_addresses = {spec_in.name: device_in.ptr + index * per_frame_in, spec_out.name: device_out.ptr}
        engine.enqueue(single_addresses, stream.ptr)
        stream.synchronize()
        singles.append(download(device_out.ptr, per_frame_out).view(np.float32).reshape(1, *spec_out.shape[1:]))
    singles = np.concatenate(singles)
    out = {"batched_vs_batch1_max_abs_diff": float(np.abs(batched - singles).max()),
           "batched_vs_onnxruntime_cpu_max_abs_diff": float(np.abs(batched - reference).max())}
    start, end = Event(), Event()
    for batch in (1, 8, 32, 48):
        engine.set_input_shapes(engine.static_shapes(batch))
        engine.enqueue(addresses, stream.ptr)
        stream.synchronize()
        iterations = 60 if batch < 32 else 30
        start.record(stream)
        host_started = time.perf_counter()
        for _ in range(iterations):
            engine.enqueue(addresses, stream.ptr)
        host = (time.perf_counter() - host_started) / iterations
        end.record(stream)
        end.synchronize()
        seconds = elapsed_seconds(start, end) / iterations
        out[f"batch_{batch}"] = {"ms_per_batch": seconds * 1e3, "fps": batch / seconds,
                                 "host_ms_per_enqueue": host * 1e3}
    start.close()
    end.close()
    device_in.free()
    device_out.free()
    stream.close()
    engine.close()
    return out


# -- detector equality ------------------------------------------------------------------------------

def compare(first, second) -> dict:
    worst, mismatched = 0.0, 0
    for a, b in zip(first, second):
        da, db = a.detections, b.detections
        if len(da) != len(db) or not np.array_equal(da.class_ids, db.class_ids):
            mismatched += 1
            continue
        if len(da):
            worst = max(worst, float(np.abs(da.boxes_xyxy - db.boxes_xyxy).max()))
    return {"frames": len(first), "frames_with_different_count_or_classes": mismatched,
            "max_box_diff_px": worst, "detections": int(sum(len(r.detections) for r in first)),
            "equal": mismatched == 0 and worst <= 1.0}


def equality_check(model: str, video: str) -> dict:
    from streamd.gpu.batch_detector import BatchGpuDetector
    from streamd.gpu.detector import GpuDetector
    from tests.gpu.standin_engine import TorchGraphEngine

    runtime.use_device(0)
    capture = cv2.VideoCapture(video)
    host_frames = []
    for index in range(160):
        ok, image = capture.read()
        if not ok:
            break
        if index % 10 == 0:
            host_frames.append(image if index % 20 else cv2.resize(image, (768, 576)))  # two sizes in one batch
    capture.release()
    frames = [Frame(f"s{i}", i, 0.0, 0.0, image) for i, image in enumerate(host_frames)]
    single = GpuDetector(TorchGraphEngine(model), YOLOX, 80, SCORE, NMS, slots=1, max_detections=100)
    batched = BatchGpuDetector(TorchGraphEngine(model, max_batch=48), YOLOX, 80, SCORE, NMS, max_batch=48,
                               max_detections=100)
    expected = []
    for frame in frames:
        expected.extend(single.submit(frame))
    expected.extend(single.drain())
    got = batched.submit_batch(frames) + batched.drain()  # pipelined: results may come one call late
    out = {"host_bgr_batch_of_16": compare(expected, got)}
    # NVDEC NV12 frames vs the single-frame detector on cvtColor(NV12) of the same pictures.
    reader, nv12 = nvdec_frames(video, 16, stride=10)
    nv12_frames = [Frame(f"n{i}", i, 0.0, 0.0, image) for i, image in enumerate(nv12)]
    host_equivalents = [Frame(f"n{i}", i, 0.0, 0.0, cv2.cvtColor(nv12_to_host(image), cv2.COLOR_YUV2BGR_NV12))
                        for i, image in enumerate(nv12)]
    expected = []
    for frame in host_equivalents:
        expected.extend(single.submit(frame))
    expected.extend(single.drain())
    got = batched.submit_batch(nv12_frames) + batched.drain()
    out["nvdec_nv12_batch_of_16"] = compare(expected, got)
    # Time submit_batch on 48 NV12 1080p frames (16 surfaces, each three times).
    batch = (nv12_frames * 3)[:48]
    batched.warm_up([48])
    timings = []
    waits = []
    for _ in range(20):
        wait_before = batched.wait_seconds
        started = time.perf_counter()
        batched.submit_batch(batch)
        timings.append(time.perf_counter() - started)
        waits.append(batched.wait_seconds - wait_before)
    batched.drain()
    timings, waits = np.array(timings), np.array(waits)
    out["submit_batch_48_nv12"] = {"ms_per_batch_median": float(np.median(timings) * 1e3),
                                   "host_ms_per_batch_median": float(np.median(timings - waits) * 1e3),
                                   "fps": 48 / float(np.median(timings))}
    for image in nv12:
        image.release()
    reader.close()
    single.close()
    batched.close()
    return out


# -- scale -----------------------------------------------------------------------------------------

class PacedCamera(threading.Thread):
    """One NVDEC source at its frame rate into a latest-frame slot (superseded frames released and counted)."""

    def __init__(self, index: int, video: str, fps: float, stop: threading.Event, ready: threading.Condition,
                 go: threading.Event) -> None:
        super().__init__(name=f"camera-{index}", daemon=True)
        self.reader = NvdecReader(source(video, f"cam{index}"))
        self.fps = fps
        self.stop_event = stop
        self.ready = ready
        self.go = go
        self.warmed = threading.Event()  # opened and first picture decoded (NVDEC sessions start serially)
        self.lock = threading.Lock()
        self.slot: tuple[DeviceNV12, float] | None = None
        self.captured = 0
        self.superseded = 0
        self.error = None
        self.read_seconds: list[float] = []

    def run(self) -> None:
        try:
            runtime.use_device(0)
            self.reader.open()
            interval = 1.0 / self.fps
            first = self.reader.read()  # the decoder session is created by the first Decode: not part of pacing
            if first is not None:
                first[0].release()
            self.warmed.set()
            self.go.wait()
            next_due = time.monotonic()
            while not self.stop_event.is_set():
                read_started = time.monotonic()
                item = self.reader.read()
                self.read_seconds.append(time.monotonic() - read_started)
                if item is None:
                    if not self.reader.rewind():
                        break
                    continue
                next_due += interval
                wait = next_due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -interval:  # late by more than a frame: never burst to catch up (capture.py's rule)
                    next_due = time.monotonic()
                image = item[0]
                with self.lock:
                    old, self.slot = self.slot, (image, time.monotonic())
                    self.captured += 1
                if old is not None:
                    self.superseded += 1
                    old[0].release()
                with self.ready:
                    self.ready.notify()
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.warmed.set()

    def take(self) -> tuple[DeviceNV12, float] | None:
        with self.lock:
            item, self.slot = self.slot, None
            return item


def start_cameras(video: str, count: int, stop: threading.Event, ready: threading.Condition) -> tuple[list, float]:
    """Open every camera, wait until each has decoded its first picture, then start them together;
    returns the cameras and the seconds the NVDEC sessions took to start."""
    go = threading.Event()
    cameras = [PacedCamera(i, video, 30.0, stop, ready, go) for i in range(count)]
    started = time.monotonic()
    for camera in cameras:
        camera.start()
    for camera in cameras:
        camera.warmed.wait(60)
    session_start_seconds = time.monotonic() - started
    go.set()
    time.sleep(1.0)  # one second of steady pacing before measuring
    return cameras, session_start_seconds


def capture_only_run(video: str, count: int, seconds: float) -> dict:
    """The paced cameras alone (frames taken and released at once): what capture reaches without inference."""
    stop = threading.Event()
    ready = threading.Condition()
    cameras, session_start_seconds = start_cameras(video, count, stop, ready)
    captured_start = [c.captured for c in cameras]
    reads_start = [len(c.read_seconds) for c in cameras]
    cpu_started, wall_started = os.times(), time.monotonic()
    while time.monotonic() - wall_started < seconds:
        for camera in cameras:
            item = camera.take()
            if item is not None:
                item[0].release()
        time.sleep(0.002)
    wall = time.monotonic() - wall_started
    cpu = os.times()
    stop.set()
    for camera in cameras:
        camera.join(timeout=5)
    reads = np.concatenate([np.array(c.read_seconds[s:]) for c, s in zip(cameras, reads_start)]) * 1e3
    captured = [(c.captured - s) / wall for c, s in zip(cameras, captured_start)]
    for camera in cameras:
        item = camera.take()
        if item is not None:
            item[0].release()
        camera.reader.close()
    return {"streams": count, "nvdec_sessions_start_seconds": session_start_seconds,
            "captured_fps_per_stream": {"min": float(min(captured)),
                                                          "median": float(np.median(captured))},
            "read_ms": {"p50": float(np.percentile(reads, 50)), "p99": float(np.percentile(reads, 99)),
                        "max": float(reads.max())},
            "host_cpu_cores": ((cpu.user - cpu_started.user) + (cpu.system - cpu_started.system)) / wall,
            "camera_errors": [c.error for c in cameras if c.error][:3]}


def scale_run(model: str, video: str, count: int, seconds: float, max_batch: int, window: float,
              detector) -> dict:
    stop = threading.Event()
    ready = threading.Condition()
    cameras, session_start_seconds = start_cameras(video, count, stop, ready)
    ages, batch_sizes, processed = [], [], [0] * count
    cpu_started, wall_started = os.times(), time.monotonic()
    captured_start = [c.captured for c in cameras]
    superseded_start = sum(c.superseded for c in cameras)
    deadline = wall_started + seconds
    submit_seconds, cycle_seconds = [], []
    cycle_started = wall_started
    while time.monotonic() < deadline:
        first_seen = None
        batch = []
        while True:
            batch = []
            for index, camera in enumerate(cameras):
                item = camera.take()
                if item is not None:
                    batch.append((index, item))
            if batch:
                break
            with ready:
                ready.wait(0.005)
        first_seen = time.monotonic()
        # Short window for more sources (the real collector's rule is in streamd/daemon).
        while len(batch) < min(count, max_batch) and time.monotonic() - first_seen < window:
            time.sleep(0.001)
            taken = {index for index, _ in batch}
            for index, camera in enumerate(cameras):
                if index not in taken:
                    item = camera.take()
                    if item is not None:
                        batch.append((index, item))
        batch = batch[:max_batch]
        frames = [Frame(f"cam{index}", 0, 0.0, captured_at, image) for index, (image, captured_at) in batch]
        submit_started = time.monotonic()
        results = detector.submit_batch(frames)
        now = time.monotonic()
        submit_seconds.append(now - submit_started)
        cycle_seconds.append(now - cycle_started)
        cycle_started = now
        for result in results:  # pipelined: normally the previous batch's frames
            ages.append(now - result.frame.capture_monotonic)
            processed[int(result.frame.source_id[3:])] += 1
            result.frame.image.release()
        batch_sizes.append(len(batch))
    for result in detector.drain():
        result.frame.image.release()
    wall = time.monotonic() - wall_started
    cpu = os.times()
    cores = ((cpu.user - cpu_started.user) + (cpu.system - cpu_started.system)) / wall
    stop.set()
    for camera in cameras:
        camera.join(timeout=5)
    captured = [c.captured - s for c, s in zip(cameras, captured_start)]
    reads = np.concatenate([np.array(c.read_seconds[-200:]) for c in cameras]) * 1e3
    for camera in cameras:
        item = camera.take()
        if item is not None:
            item[0].release()
        camera.reader.close()
    per_stream_fps = np.array(processed) / wall
    ages_ms = np.array(ages) * 1e3
    return {"streams": count, "seconds": wall, "nvdec_sessions_start_seconds": session_start_seconds,
            "published_fps_per_stream": {"min": float(per_stream_fps.min()), "median": float(np.median(per_stream_fps)),
                                         "max": float(per_stream_fps.max())},
            "captured_fps_per_stream_min": float(min(captured) / wall),
            "frame_age_ms": {"p50": float(np.percentile(ages_ms, 50)), "p99": float(np.percentile(ages_ms, 99)),
                             "max": float(ages_ms.max())},
            "batch_size": {"mean": float(np.mean(batch_sizes)), "max": int(max(batch_sizes)),
                           "batches": len(batch_sizes)},
            "submit_batch_ms": {"p50": float(np.percentile(submit_seconds, 50) * 1e3),
                                "p99": float(np.percentile(submit_seconds, 99) * 1e3)},
            "loop_cycle_ms": {"p50": float(np.percentile(cycle_seconds, 50) * 1e3),
                              "p99": float(np.percentile(cycle_seconds, 99) * 1e3),
                              "max": float(np.max(cycle_seconds) * 1e3)},
            "switch_interval_ms": sys.getswitchinterval() * 1e3,
            "camera_read_ms": {"p50": float(np.percentile(reads, 50)), "p99": float(np.percentile(reads, 99)),
                               "max": float(reads.max())},
            "pool_exhausted_drops": int(sum(c.reader.dropped_exhausted for c in cameras)),
            "host_cpu_cores": cores,
            "superseded_while_measuring": int(sum(c.superseded for c in cameras) - superseded_start),
            "camera_errors": [c.error for c in cameras if c.error][:3],
            "every_stream_at_29_5_fps": bool(per_stream_fps.min() >= 29.5)}


def scale_check(model: str, video: str, counts: list[int], seconds: float, intervals: list[float]) -> dict:
    from streamd.gpu.batch_detector import BatchGpuDetector
    from tests.gpu.standin_engine import TorchGraphEngine

    runtime.use_device(0)
    max_batch = max(counts)
    detector = BatchGpuDetector(TorchGraphEngine(model, max_batch=max_batch), YOLOX, 80, SCORE, NMS,
                                max_batch=max_batch, max_detections=100, collect_timings=False)
    started = time.perf_counter()
    detector.warm_up()
    out = {"warm_up_seconds_all_batch_sizes": time.perf_counter() - started}
    default_interval = sys.getswitchinterval()
    for count in counts:
        for interval in intervals:
            sys.setswitchinterval(interval)
            key = f"{count}" if interval == default_interval else f"{count}_switch_{interval * 1e3:g}ms"
            out[key] = scale_run(model, video, count, seconds, max_batch, 0.004, detector)
            print(f"[scale {key}] {json.dumps(out[key])}", flush=True)
    sys.setswitchinterval(default_interval)
    detector.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True, help="1080p H.264 file")
    parser.add_argument("--video2", required=True, help="a clip at another resolution")
    parser.add_argument("--reschange", required=True, help="a stream whose resolution changes mid-stream")
    parser.add_argument("--model", required=True)
    parser.add_argument("--streams", default="4,16,48")
    parser.add_argument("--scale", default="48,64")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--frames-each", type=int, default=300)
    parser.add_argument("--switch-ms", default="5", help="Python switch intervals to run the scale check with (ms)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip")
    parser.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    only = set(filter(None, args.only.split(",")))
    results: dict = {**provenance(), "gpu": runtime.device_name(0),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    plan = [
        ("nvdec_probe", nvdec_probe, args.video),
        ("nvdec_single", nvdec_single, args.video),
        ("nvdec_streams", nvdec_streams, args.video, [int(v) for v in args.streams.split(",")], args.frames_each),
        ("resolution", resolution_change, args.reschange),
        ("letterbox", letterbox_check, args.video, args.video2),
        ("engine", engine_check, args.model),
        ("equality", equality_check, args.model, args.video),
        ("resolution_probe", resolution_probe, args.reschange),
        ("capture_only", lambda *a: {str(n): capture_only_run(args.video, n, args.seconds)
                                     for n in [int(v) for v in args.scale.split(",")]}),
        ("scale", scale_check, args.model, args.video, [int(v) for v in args.scale.split(",")], args.seconds,
         [float(v) / 1e3 for v in args.switch_ms.split(",")]),
    ]
    for name, function, *function_args in plan:
        if name not in skip and (not only or name in only):
            section(name, results, function, *function_args)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
