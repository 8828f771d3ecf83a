"""``streamd bench --streams N``: N copies of one video, paced at its frame rate and looped like cameras,
through the whole daemon (the real Service: capture -> batch collector -> detector -> publish) to a real
ZeroMQ subscriber. After a warm-up, one measured window gives per stream the fps published and the
frame age at publish (publish_time - capture_time of the messages received), and for the daemon the
batch sizes (``streamd_batch_size``), drops, host CPU cores and GPU busy fraction.

``--sweep`` finds the largest N at real time (``streamd.bench.sweep``).

The subscriber runs in this process on its own thread and parses the messages only after the window;
its CPU time is measured apart (``subscriber_cpu_cores``) and left out of ``daemon_cpu_cores``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamd.analytics.events import TOPIC_PREFIX
from streamd.bench.host import GpuBusySampler, describe_machine, process_cpu_seconds, thread_cpu_seconds
from streamd.bench.run import EXIT_BAD_ARGUMENTS, BenchArgumentError
from streamd.bench.streams_arguments import REAL_TIME_FPS_SHARE
from streamd.bench.sweep import Measure, largest_so_far, real_time_failures, sweep
from streamd.config.load import parse_config
from streamd.config.schema import Config
from streamd.daemon.service import Service
from streamd.errors import ConfigError
from streamd.inference.registry import DETECTOR_BUILDERS, resolve_backend_name
from streamd.publish.message import decode
from streamd.publish.subscriber import Subscriber
from streamd.yolox.metadata import read_metadata

log = logging.getLogger(__name__)

# How long every source may take to reach "streaming" (NVDEC sessions start one after another:
# 2.5-3.4 s for 48-64 on an H200, benchmarks/results/h200_gpu-scale-check.json) before the
# warm-up starts anyway.
STREAMING_TIMEOUT_SECONDS = 60.0
# After the window closes, messages published inside it may still be on their way.
LATE_MESSAGES_SECONDS = 0.3
STANDIN_DETECTORS = "streamd.bench.standin:build_standin_detectors"
# streamd_frames_dropped_total's reasons: replaced in its slot, or older than daemon.max_frame_age_seconds.
_DROP_REASONS = ("superseded", "too_old")

# -- configuration --------------------------------------------------------------------------------------

def max_batch_for(args: argparse.Namespace, streams: int) -> int:
    """``--max-batch``, or (0) one frame at a time on ONNX Runtime (batching does not pay on the CPU,
    docs/benchmarks.md) and a batch of every stream on the GPU (at least 2: the batched detector takes NVDEC frames)."""
    if args.max_batch:
        return args.max_batch
    return 1 if args.backend == "onnxruntime" else max(2, streams)


def bench_config(args: argparse.Namespace, streams: int) -> Config:
    document = bench_document(args, streams)
    try:
        return parse_config(document, Path.cwd(), "(bench --streams)")
    except ConfigError as error:
        raise BenchArgumentError(f"{error.key}: {error.reason}") from error


def bench_document(args: argparse.Namespace, streams: int) -> dict:
    model: dict[str, object] = {"path": args.model, "backend": args.backend, "workers": args.detector_workers,
                                "threads": args.threads, "max_batch": max_batch_for(args, streams),
                                "device": args.device}
    if getattr(args, "batch_window", None) is not None:
        model["batch_window_seconds"] = args.batch_window
    beside = Path(args.model).parent / "coco_classes.txt"
    if args.classes or beside.is_file():
        model["classes"] = args.classes or str(beside)
    if args.standin_engine and read_metadata(args.model).family in ("", "yolox"):
        # The stand-in cannot run the probe that tells YOLOX's two layouts apart (TensorRT's backend does).
        model["layout"] = "yolox"
    document = {
        "sources": [{"id": f"cam{index:03d}", "kind": "file", "url": args.video, "pace": "native", "loop": True,
                     "decoder": args.decoder} for index in range(streams)],
        "model": model,
        "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 100000},
        "metrics": {"enabled": False},
        "daemon": {"max_frame_age_seconds": args.max_frame_age, "status_interval_seconds": 0},
        "tracking": {"enabled": not getattr(args, "no_tracking", False)},
    }
    if getattr(args, "analytics", False):
        for source in document["sources"]:
            source.update(BENCH_ANALYTICS)
    return document


EVENTS_TOPIC = TOPIC_PREFIX.encode()
# ``--analytics``: the scale of the analytics cost target (4 zones, 2 lines a source), in fractions of the frame.
BENCH_ANALYTICS: dict[str, list[dict]] = {
    "zones": [
        {"name": "left", "units": "fractions", "polygon": [[0.0, 0.2], [0.45, 0.2], [0.45, 1.0], [0.0, 1.0]]},
        {"name": "right", "units": "fractions", "polygon": [[0.55, 0.2], [1.0, 0.2], [1.0, 1.0], [0.55, 1.0]],
         "max_objects": 3, "hold_seconds": 1.0},
        {"name": "centre", "units": "fractions", "polygon": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.8], [0.3, 0.8]],
         "dwell_seconds": 2.0},
        {"name": "top", "units": "fractions", "polygon": [[0.1, 0.0], [0.9, 0.0], [0.5, 0.35]]},
    ],
    "lines": [
        {"name": "across", "units": "fractions", "points": [[0.0, 0.6], [1.0, 0.6]]},
        {"name": "down", "units": "fractions", "points": [[0.5, 0.0], [0.5, 1.0]]},
    ],
}


@contextlib.contextmanager
def detector_builders(standin_engine: bool) -> Iterator[None]:
    """With ``standin_engine``, backend ``tensorrt`` builds its GPU detector on the torch stand-in engine."""
    if not standin_engine:
        yield
        return
    saved = DETECTOR_BUILDERS["tensorrt"]
    DETECTOR_BUILDERS["tensorrt"] = STANDIN_DETECTORS
    try:
        yield
    finally:
        DETECTOR_BUILDERS["tensorrt"] = saved


# -- one run ---------------------------------------------------------------------------------------------

class _Receiver(threading.Thread):
    """The ZeroMQ subscriber: keeps every message undecoded. It shares the daemon's interpreter, so it
    parses no JSON while the daemon runs (``records()`` does, afterwards)."""

    def __init__(self, subscriber: Subscriber) -> None:
        super().__init__(name="bench-subscriber", daemon=True)
        self._subscriber = subscriber
        self._messages: list[list[bytes]] = []
        self.events_messages = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            parts = self._subscriber.receive_parts(0.1)
            if parts is not None:
                self._messages.append(parts)

    def records(self) -> list[tuple[str, float, float, int]]:
        """(source, capture_time, publish_time, sequence) of every per-frame message received (events messages,
        with ``--analytics``, are counted apart: ``events_messages``)."""
        frames = [parts for parts in self._messages if not parts[0].startswith(EVENTS_TOPIC)]
        self.events_messages = len(self._messages) - len(frames)
        return [(m["source"], m["capture_time"], m["publish_time"], m["sequence"]) for m in map(decode, frames)]


def _snapshot(registry) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for metric in registry.collect() for sample in metric.samples}


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _batch_sizes(before: dict, after: dict) -> dict[str, object]:
    """streamd_batch_size over the window: batches per size range, mean, count."""
    bounds = sorted((float(dict(labels)["le"]), dict(labels)["le"]) for name, labels in after
                    if name == "streamd_batch_size_bucket")
    histogram, previous_count, low = {}, 0.0, 1
    for bound, text in bounds:
        count = _delta(before, after, "streamd_batch_size_bucket", le=text)
        high = bound if bound != float("inf") else None
        label = f">{low - 1}" if high is None else (f"{int(high)}" if low >= high else f"{low}-{int(high)}")
        if count - previous_count > 0:
            histogram[label] = int(count - previous_count)
        previous_count = count
        low = int(bound) + 1 if high is not None else low
    batches = _delta(before, after, "streamd_batch_size_count")
    frames = _delta(before, after, "streamd_batch_size_sum")
    return {"batches": int(batches), "mean": frames / batches if batches else None, "histogram": histogram}


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    array = np.asarray(values)
    return {"p50": float(np.percentile(array, 50)), "p99": float(np.percentile(array, 99)), "max": float(array.max())}


def _wait_streaming(service: Service, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if all(source.state == "streaming" for source in service.sources):
            return
        time.sleep(0.05)
    waiting = [s.source_id for s in service.sources if s.state != "streaming"]
    log.warning("%d source(s) not streaming after %.0f s (%s...): measuring anyway", len(waiting), timeout_seconds,
                ", ".join(waiting[:3]))


@dataclass
class _Window:
    """The measured window: its wall-clock bounds, length, and what the meters read at both ends."""

    start_time: float
    end_time: float
    seconds: float
    before: dict
    after: dict
    cpu_seconds: float
    subscriber_cpu_seconds: float | None
    gpu_busy: dict


class _Meters:
    """Reads the metrics, CPU times and GPU at the window's start and end."""

    def __init__(self, registry, receiver: _Receiver) -> None:
        self._registry = registry
        self._receiver = receiver
        self._gpu = GpuBusySampler()

    def start(self) -> None:
        self._before = _snapshot(self._registry)
        self._subscriber_cpu = thread_cpu_seconds(self._receiver.native_id or 0)
        self._cpu = process_cpu_seconds()
        self._gpu.start()
        self._start_time, self._start_monotonic = time.time(), time.monotonic()

    def stop(self) -> _Window:
        seconds = time.monotonic() - self._start_monotonic
        end_time = time.time()
        cpu_seconds = process_cpu_seconds() - self._cpu
        subscriber_cpu = thread_cpu_seconds(self._receiver.native_id or 0)
        gpu_busy = self._gpu.stop()
        subscriber_seconds = (None if subscriber_cpu is None or self._subscriber_cpu is None
                              else subscriber_cpu - self._subscriber_cpu)
        return _Window(self._start_time, end_time, seconds, self._before, _snapshot(self._registry), cpu_seconds,
                       subscriber_seconds, gpu_busy)

    def close(self) -> None:
        self._gpu.stop()  # safe twice


def measure_streams(args: argparse.Namespace, streams: int) -> dict:
    """One run with ``streams`` sources; the record the JSON and the plot are made of."""
    config = bench_config(args, streams)
    service = Service(config)
    subscriber: Subscriber | None = None
    receiver: _Receiver | None = None
    meters: _Meters | None = None
    try:
        build_started = time.monotonic()
        with detector_builders(args.standin_engine):
            service.start_detector()
        build_seconds = time.monotonic() - build_started
        subscriber = Subscriber(service.publisher_endpoint())
        receiver = _Receiver(subscriber)
        receiver.start()
        if not service.wait_for_subscriber(5.0):
            raise RuntimeError("the bench's subscriber did not subscribe within 5 s")
        service.start_sources()
        _wait_streaming(service, STREAMING_TIMEOUT_SECONDS)
        pipeline = service.pipeline
        if pipeline is None or pipeline.finished.wait(args.warmup_seconds):
            raise RuntimeError(f"the pipeline stopped during the warm-up: {pipeline and pipeline.error}")
        meters = _Meters(service.registry, receiver)
        meters.start()
        stopped = pipeline.finished.wait(args.seconds)
        window = meters.stop()
        if stopped:
            raise RuntimeError(f"the pipeline stopped while measuring: {pipeline.error}")
        time.sleep(LATE_MESSAGES_SECONDS)
    finally:
        if meters is not None:
            meters.close()
        if receiver is not None:
            receiver.stop_event.set()
            receiver.join(2.0)
        if subscriber is not None:
            subscriber.close()
        service.stop()
    record = _run_record(config, receiver.records(), window)
    record["detector_build_seconds"] = build_seconds
    record["events_messages"] = receiver.events_messages
    return record


def _run_record(config: Config, records: list, window: _Window) -> dict:
    before, after, seconds = window.before, window.after, window.seconds
    ages: dict[str, list[float]] = defaultdict(list)
    for source, capture_time, publish_time, _ in records:
        if window.start_time <= publish_time < window.end_time:
            ages[source].append(publish_time - capture_time)
    sequences = sorted(record[3] for record in records)
    missed = (sequences[-1] - sequences[0] + 1 - len(sequences)) if sequences else 0
    per_stream = []
    for source in (source.id for source in config.sources):
        stream_ages = ages.get(source, [])
        percentiles = _percentiles(stream_ages)
        per_stream.append({
            "source": source, "messages": len(stream_ages), "published_fps": len(stream_ages) / seconds,
            "captured_fps": _delta(before, after, "streamd_frames_captured_total", source=source) / seconds,
            "frame_age_p50_seconds": percentiles["p50"], "frame_age_p99_seconds": percentiles["p99"],
            **{f"dropped_{reason}": int(_delta(before, after, "streamd_frames_dropped_total", source=source,
                                               reason=reason)) for reason in _DROP_REASONS}})
    fps = [stream["published_fps"] for stream in per_stream]
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"sum": 0.0, "count": 0.0})
    for name, labels in after:
        if name in ("streamd_stage_seconds_sum", "streamd_stage_seconds_count"):
            label_map = dict(labels)
            stages[label_map["stage"]][name.rsplit("_", 1)[1]] += _delta(before, after, name, **label_map)
    subscriber_cores = None if window.subscriber_cpu_seconds is None else window.subscriber_cpu_seconds / seconds
    host_cores = window.cpu_seconds / seconds
    return {
        "streams": len(config.sources), "seconds": seconds, "max_batch": config.model.max_batch,
        "decoder": config.sources[0].decoder,
        "published_fps": {"min": min(fps), "median": statistics.median(fps), "max": max(fps),
                          "total": sum(fps)},
        "frame_age_seconds": _percentiles([age for values in ages.values() for age in values]),
        "frame_age_p99_seconds_worst_stream": max((s["frame_age_p99_seconds"] or 0.0) for s in per_stream),
        "batch_size": _batch_sizes(before, after),
        "stage_mean_seconds": {stage: v["sum"] / v["count"] for stage, v in sorted(stages.items()) if v["count"]},
        "dropped": {**{reason: sum(s[f"dropped_{reason}"] for s in per_stream) for reason in _DROP_REASONS},
                    "messages_dropped_by_publisher": int(_delta(before, after, "streamd_messages_dropped_total")),
                    "messages_missed_by_subscriber": int(missed)},
        "host_cpu_cores": host_cores, "subscriber_cpu_cores": subscriber_cores,
        "daemon_cpu_cores": host_cores - (subscriber_cores or 0.0),
        "gpu_busy_fraction": window.gpu_busy["busy_fraction"], "gpu_busy": window.gpu_busy,
        # Other processes' load: on a shared machine it explains a slow run.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "per_stream": per_stream,
    }


# -- the command -----------------------------------------------------------------------------------------

def _check_arguments(args: argparse.Namespace) -> None:
    from streamd.bench.arguments import SHARED_ENVIRONMENT  # noqa: PLC0415

    if not args.model:
        raise BenchArgumentError(f"--model is required: there is no default without ${SHARED_ENVIRONMENT}")
    if not args.video:
        raise BenchArgumentError(f"--video is required: there is no default without ${SHARED_ENVIRONMENT}")
    if not Path(args.video).is_file():
        raise BenchArgumentError(f"--video: file {Path(args.video).absolute()} does not exist; make a 1080p30 "
                                 f"H.264 one with: streamd bench --make-test-video {args.video}")
    if args.seconds <= 0 or args.warmup_seconds < 0:
        raise BenchArgumentError("--seconds must be > 0 and --warmup-seconds >= 0")
    # "auto" settled once, so --max-batch's default and the JSON name the backend that runs.
    args.backend = "tensorrt" if args.standin_engine else resolve_backend_name(args.backend)


def source_fps(video: str) -> float:
    capture = cv2.VideoCapture(video)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    if not fps or fps <= 0:
        raise BenchArgumentError(f"--video: cannot read the frame rate of {video}")
    return float(fps)


class FirstRunError(Exception):
    """The first run failed: a set-up problem (missing package, no GPU, bad model), not a limit."""


def _measure_or_error(args: argparse.Namespace) -> Measure:
    """``measure_streams`` where a failed run becomes a record with ``error`` (in a sweep, a limit found),
    except the first run: its failure is a set-up problem and stops the bench (FirstRunError)."""
    made = []

    def measure(streams: int) -> dict:
        print(f"streams {streams}: measuring {args.seconds:g} s after {args.warmup_seconds:g} s warm-up ...",
              file=sys.stderr, flush=True)
        made.append(streams)
        try:
            if getattr(args, "workers", 1) != 1:
                from streamd.bench.supervised import measure_streams_supervised  # noqa: PLC0415

                return measure_streams_supervised(args, streams, bench_document(args, streams), _Receiver, _Window,
                                                  _run_record)
            return measure_streams(args, streams)
        except Exception as error:
            log.debug("run with %d streams failed", streams, exc_info=True)
            if len(made) == 1:
                raise FirstRunError(f"{type(error).__name__}: {error}") from error
            return {"streams": streams, "error": f"{type(error).__name__}: {error}"}
    return measure


def _print_run(run: dict) -> None:
    if run.get("error"):
        print(f"{run['streams']:>4} streams  failed: {run['error']}", flush=True)
        return
    ages = run["frame_age_seconds"]
    gpu = run["gpu_busy_fraction"]
    batch = run["batch_size"]["mean"]
    p50, p99 = (f"{ages[q] * 1000:7.1f}" if ages[q] is not None else "      -" for q in ("p50", "p99"))
    print(f"{run['streams']:>4} streams  fps/stream min {run['published_fps']['min']:6.2f} median "
          f"{run['published_fps']['median']:6.2f}  age p50 {p50} ms p99 {p99} ms"
          f"  batch {batch if batch is None else round(batch, 1)}  cores {run['daemon_cpu_cores']:.2f}"
          f"  gpu {'-' if gpu is None else f'{gpu:.2f}'}  dropped {run['dropped']['superseded']}"
          f"  {'real time' if run.get('real_time') else 'NOT real time: ' + '; '.join(run.get('failures', []))}",
          flush=True)
    for worker in run.get("workers") or []:
        memory = worker.get("gpu_memory_mib")
        print(f"        worker {worker['index']}: {worker['sources']} streams, {worker['cpu_cores']:.2f} cores, "
              f"GPU memory {'-' if memory is None else f'{memory:.0f} MiB'}", flush=True)
    if run.get("ceiling"):
        nvdec = run.get("nvdec_busy_fraction")
        print(f"        ceiling: {run['ceiling']}; NVDEC busy {'-' if nvdec is None else f'{nvdec:.2f}'}", flush=True)


def run_streams_bench(args: argparse.Namespace) -> int:
    if args.make_test_video:
        from streamd.bench.media import make_test_video  # noqa: PLC0415

        if not args.source:
            print("streamd bench: --make-test-video needs --source (vtest.avi)", file=sys.stderr)
            return EXIT_BAD_ARGUMENTS
        try:
            tool = make_test_video(Path(args.source), Path(args.make_test_video))
        except RuntimeError as error:
            print(f"streamd bench: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.make_test_video} ({tool})")
        return 0
    args.streams = args.streams or [1]  # --sweep alone starts at 1
    try:
        _check_arguments(args)
        fps = source_fps(args.video)
        bench_config(args, args.streams[0])  # a bad flag fails here, before any run
    except BenchArgumentError as error:
        print(f"streamd bench: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    min_fps = REAL_TIME_FPS_SHARE * fps

    def failures(run: dict) -> list[str]:
        return real_time_failures(run, min_fps, args.max_age_p99)

    measure = _measure_or_error(args)
    machine = {**describe_machine(), "label": args.machine or None}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results: dict[str, object] = {
        "machine": machine, "started": started, "video": args.video, "source_fps": fps,
        "settings": {"model": args.model, "backend": args.backend, "standin_engine": args.standin_engine,
                     "decoder": args.decoder, "max_batch": args.max_batch or "auto", "device": args.device,
                     "batch_window_seconds": args.batch_window, "detector_workers": args.detector_workers,
                     "threads": args.threads, "workers": getattr(args, "workers", 1),
                     "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
                     "max_frame_age_seconds": args.max_frame_age,
                     "tracking": not getattr(args, "no_tracking", False),
                     "analytics": getattr(args, "analytics", False)},
        "real_time": {"min_fps_per_stream": min_fps, "fps_share": REAL_TIME_FPS_SHARE,
                      "max_frame_age_p99_seconds": args.max_age_p99},
        "sweep": None, "runs": [],
    }

    def measure_and_report(streams: int) -> dict:
        """One run, printed and written at once: a bench stopped half-way keeps the runs it made."""
        run = measure(streams)
        run["failures"] = failures(run)
        run["real_time"] = not run["failures"]
        _print_run(run)
        results["runs"].append(run)
        if args.sweep:
            results["sweep"] = {"largest_streams_at_real_time": largest_so_far(results["runs"]), "finished": False,
                                "order": [made["streams"] for made in results["runs"]]}
        _write(args, results, fps, None)
        return run

    try:
        if args.sweep:
            largest, _ = sweep(measure_and_report, args.streams[0], args.max_streams, failures,
                               args.sweep_step)
            print(f"largest number of streams at real time: {largest}", flush=True)
            results["sweep"] = {"largest_streams_at_real_time": largest, "finished": True,
                                "order": [run["streams"] for run in results["runs"]]}
            _write(args, results, fps, largest)
        else:
            for streams in args.streams:
                measure_and_report(streams)
    except FirstRunError as error:
        print(f"streamd bench: the first run ({args.streams[0]} streams) failed: {error}", file=sys.stderr)
        return 1
    # A sweep ends on failed runs by design; a run asked for by count must not fail.
    return 1 if not args.sweep and any(run.get("error") for run in results["runs"]) else 0


def _write(args: argparse.Namespace, results: dict, fps: float, largest: int | None) -> None:
    """The JSON and the plot as they stand."""
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        from streamd.bench.plot import draw_streams_plot  # noqa: PLC0415

        measured = [run for run in results["runs"] if not run.get("error")]
        title = f"streamd bench --streams: {args.machine or results['machine']['name']}"
        engine = "stand-in engine" if args.standin_engine else args.backend
        subtitle = (f"{Path(args.model).name} on {engine}, {args.decoder} decode, {Path(args.video).name} at "
                    f"{fps:g} fps, {args.seconds:g} s per run, {results['started']}"
                    + ("" if largest is None else f"; largest at real time: {largest}"))
        draw_streams_plot(measured, title, subtitle, results["real_time"]["min_fps_per_stream"], args.max_age_p99,
                          args.plot, largest)
