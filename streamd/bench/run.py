"""Measure, in one run and on the same video: the raw backend in a tight loop (the limit), the
full pipeline reading the file flat out (every frame processed and published), and frame age at
publish with the file paced at its native rate."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from streamd.bench.host import process_cpu_seconds
from streamd.bench.media import read_frames
from streamd.config.load import parse_config
from streamd.config.schema import Config
from streamd.daemon.service import Service
from streamd.errors import ConfigError
from streamd.inference.detector import DetectionResult
from streamd.inference.factory import build_detector, build_detectors, cpu_parallelism
from streamd.inference.host_detector import HostDetector
from streamd.publish.subscriber import Subscriber
from streamd.yolox.preprocess import Preprocessor

EXIT_BAD_ARGUMENTS = 2
# The config keys bench fills from its flags: an error names the flag the user typed.
_FLAG_OF_KEY = {"sources[0].url": "--source", "model.path": "--model", "model.classes": "--classes",
                "model.backend": "--backend", "model.workers": "--detector-workers", "model.threads": "--threads"}


class BenchArgumentError(Exception):
    """A flag's value cannot be used; the message names the flag."""


def _demo_source() -> dict[str, object]:
    """The built-in demo's synthetic source table (``streamd run`` without --config), less its id and length."""
    from streamd.models.demo_config import demo_source_table  # noqa: PLC0415

    return demo_source_table()


def use_demo_defaults(args: argparse.Namespace) -> str | None:
    """No --model or --source and no shared test data: the built-in demo's model and synthetic scene, as
    ``streamd run`` without --config. Returns the line that says so, or None when both were given."""
    from streamd.bench.arguments import DEMO_MODEL, SHARED_ENVIRONMENT, SYNTHETIC_SOURCE  # noqa: PLC0415

    filled = []
    if args.model is None:
        args.model = DEMO_MODEL
        filled.append(f"--model {DEMO_MODEL} (the built-in demo model)")
    if args.source is None:
        args.source = SYNTHETIC_SOURCE
        scene = _demo_source()
        filled.append(f"--source {SYNTHETIC_SOURCE} (the demo's synthetic scene, seed {scene['seed']}, "
                      f"{scene['width']}x{scene['height']} at {scene['fps']:g} fps)")
    if not filled:
        return None
    return (f"${SHARED_ENVIRONMENT} is not set (the folder holding models/yolox_nano.onnx and media/vtest.avi): "
            f"measuring {' and '.join(filled)}, what streamd run runs without --config")


def _is_synthetic(args: argparse.Namespace) -> bool:
    from streamd.bench.arguments import SYNTHETIC_SOURCE  # noqa: PLC0415

    return args.source == SYNTHETIC_SOURCE


def _source_frames(args: argparse.Namespace, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of --source: a video file, or the demo's synthetic scene."""
    if not _is_synthetic(args):
        return read_frames(args.source, count)
    from streamd.sources.synthetic import render  # noqa: PLC0415

    scene = _demo_source()
    return [render(int(scene["seed"]), index, int(scene["width"]), int(scene["height"]))[0] for index in range(count)]


def _source_fps(args: argparse.Namespace) -> float:
    if _is_synthetic(args):
        return float(_demo_source()["fps"])
    return cv2.VideoCapture(args.source).get(cv2.CAP_PROP_FPS) or 10.0


def _config(args: argparse.Namespace, pace: str, max_frames: int) -> Config:
    from streamd.config.load import BUILTIN_PREFIX  # noqa: PLC0415

    model = {"path": args.model, "backend": args.backend, "threads": args.threads, "workers": args.detector_workers}
    beside = Path(args.model).parent / "coco_classes.txt"
    if args.classes or (not args.model.startswith(BUILTIN_PREFIX) and beside.is_file()):
        model["classes"] = args.classes or str(beside)
    source = ({**_demo_source(), "id": "bench"} if _is_synthetic(args) else
              {"id": "bench", "kind": "file", "url": args.source})
    document = {
        "sources": [{**source, "pace": pace, "max_frames": max_frames}],
        "model": model,
        "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 100000},
        "metrics": {"enabled": False},
    }
    try:
        return parse_config(document, Path.cwd(), "(bench)")
    except ConfigError as error:
        raise BenchArgumentError(f"{_FLAG_OF_KEY.get(error.key, error.key)}: {error.reason}") from error


def _check_arguments(args: argparse.Namespace) -> None:
    from streamd.config.load import BUILTIN_PREFIX  # noqa: PLC0415

    for flag, value in (("--model", args.model), ("--source", args.source)):
        if not value:
            raise BenchArgumentError(f"{flag} is empty")
    model = None if args.model.startswith(BUILTIN_PREFIX) else args.model  # parse_config checks the name
    source = None if _is_synthetic(args) else args.source
    for flag, value in (("--model", model), ("--source", source), ("--classes", args.classes)):
        if value and not Path(value).is_file():
            raise BenchArgumentError(f"{flag}: file {Path(value).absolute()} does not exist")


def measure_raw_fps(detector: HostDetector, inputs: list[np.ndarray], loops: int = 1) -> float:
    """``backend.infer`` (ONNX Runtime: ``session.run``) over pre-letterboxed inputs, nothing else,
    from ``loops`` threads at once (each runs every input)."""
    name = detector.backend.inputs[0].name
    detector.backend.infer({name: inputs[0]})

    def loop() -> None:
        for network_input in inputs:
            detector.backend.infer({name: network_input})

    threads = [threading.Thread(target=loop) for _ in range(loops)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return loops * len(inputs) / (time.perf_counter() - started)


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frame_ages: list[float] = []
        self.inference_seconds: list[float] = []
        self.last_publish = 0.0
        self.cpu_seconds = 0.0  # process CPU time from the sources' start to the last publish

    def __call__(self, result: DetectionResult, frame_age_seconds: float) -> None:
        with self.lock:
            self.frame_ages.append(frame_age_seconds)
            self.inference_seconds.append(result.timings.inference_seconds)
            self.last_publish = time.perf_counter()


def run_pipeline(config: Config, expected_frames: int, timeout_seconds: float) -> tuple[float, _Recorder, int]:
    """(frames per second, per-frame record, messages a real subscriber received)."""
    recorder = _Recorder()
    service = Service(config, on_result=recorder)
    service.start_detector()
    subscriber = Subscriber(service.publisher_endpoint())
    received = 0
    try:
        # XPUB sees the subscription arrive: start the sources only once it has.
        service.wait_for_subscriber(5.0)
        cpu_started = process_cpu_seconds()
        started = time.perf_counter()
        service.start_sources()
        pipeline = service.pipeline
        pipeline.finished.wait(timeout_seconds)
        elapsed = (recorder.last_publish or time.perf_counter()) - started
        recorder.cpu_seconds = process_cpu_seconds() - cpu_started
        while subscriber.receive(0.5 if received < expected_frames else 0.05) is not None:
            received += 1
            if received >= expected_frames:
                break
    finally:
        subscriber.close()
        service.stop()
    return len(recorder.frame_ages) / elapsed, recorder, received


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_accuracy(args: argparse.Namespace) -> int:
    from streamd.evaluation.synthetic_accuracy import daemon_accuracy  # noqa: PLC0415

    results = daemon_accuracy(frames_per_seed=args.accuracy_frames)
    print(f"mAP@0.5       {results['map50']:.3f}")
    print(f"mAP@0.5:0.95  {results['map50_95']:.3f}")
    print(f"frames        {results['frames_received']}/{results['frames_sent']} received in {results['seconds']} s")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    if args.accuracy:
        return run_accuracy(args)
    fallback = use_demo_defaults(args)
    if fallback:
        print(f"streamd bench: {fallback}", file=sys.stderr, flush=True)
    try:
        _check_arguments(args)
        fast_config = _config(args, "fast", args.frames)
    except BenchArgumentError as error:
        print(f"streamd bench: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    frames = _source_frames(args, args.frames)
    if not frames:
        raise SystemExit(f"streamd bench: cannot read frames from {args.source}")
    # The model exactly as given (no preprocessing folded into its graph), fed float inputs.
    plain_model = dataclasses.replace(fast_config.model, fold_preprocessing=False)
    # The limit as users know it: one session with the backend's default threading, one loop.
    detector = build_detector(plain_model)
    # The same session layout the pipeline uses (workers x threads), all loops at once.
    workers, threads = cpu_parallelism(fast_config.model)
    parallel_detector = build_detectors(plain_model, workers, threads)[0]
    if not isinstance(detector, HostDetector) or not isinstance(parallel_detector, HostDetector):
        raise SystemExit("streamd bench: the raw measurement needs a host backend")
    preprocessor = Preprocessor(detector.convention, *detector.input_size)
    inputs = [preprocessor(frame)[0].copy() for frame in frames]

    raw_rounds, parallel_rounds, pipeline_rounds, received_rounds = [], [], [], []
    parallel_cpu_rounds, pipeline_cpu_rounds = [], []  # process CPU seconds per frame

    def measure_parallel() -> None:
        cpu_started = process_cpu_seconds()
        parallel_rounds.append(measure_raw_fps(parallel_detector, inputs, loops=workers))
        parallel_cpu_rounds.append((process_cpu_seconds() - cpu_started) / (workers * len(inputs)))

    def measure_pipeline() -> None:
        fps, recorder, received = run_pipeline(fast_config, len(frames), timeout_seconds=600)
        pipeline_rounds.append(fps)
        received_rounds.append(received)
        pipeline_cpu_rounds.append(recorder.cpu_seconds / max(1, len(recorder.frame_ages)))

    measurements = [lambda: raw_rounds.append(measure_raw_fps(detector, inputs)), measure_parallel, measure_pipeline]
    for round_index in range(args.rounds):
        # Alternate the order, so a machine that gets busier or quieter during a round favours neither.
        for measure in measurements if round_index % 2 == 0 else reversed(measurements):
            measure()
        print(f"round {round_index + 1}/{args.rounds}: raw {raw_rounds[-1]:.1f} fps, raw {workers} loops x "
              f"{threads} thread(s) {parallel_rounds[-1]:.1f} fps, pipeline {pipeline_rounds[-1]:.1f} fps "
              f"({pipeline_rounds[-1] / max(raw_rounds[-1], parallel_rounds[-1]):.3f} x the best raw layout), "
              f"{received_rounds[-1]}/{len(frames)} messages received", file=sys.stderr, flush=True)
    detector.close()
    parallel_detector.close()
    raw_fps = statistics.median(raw_rounds)
    raw_parallel_fps = statistics.median(parallel_rounds)
    pipeline_fps = statistics.median(pipeline_rounds)
    # The best raw layout of each round (one loop with the backend's threading, or the pipeline's
    # workers x threads side by side), against the pipeline measured in the same round.
    best_rounds = [max(raw, parallel) for raw, parallel in zip(raw_rounds, parallel_rounds)]
    best_ratio_rounds = [pipeline / best for pipeline, best in zip(pipeline_rounds, best_rounds)]
    results: dict[str, object] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": _cpu_count(), "python": platform.python_version()},
        "model": args.model, "source": args.source, "backend": args.backend, "frames": len(frames),
        "rounds": args.rounds, "raw_fps_rounds": raw_rounds, "pipeline_fps_rounds": pipeline_rounds,
        "messages_received_rounds": received_rounds,
        "raw_fps": raw_fps, "pipeline_fps": pipeline_fps, "ratio": pipeline_fps / raw_fps,
        "workers": workers, "threads_per_worker": threads, "raw_parallel_fps_rounds": parallel_rounds,
        "raw_parallel_fps": raw_parallel_fps, "ratio_to_parallel": pipeline_fps / raw_parallel_fps,
        "raw_best_fps_rounds": best_rounds, "ratio_to_best_rounds": best_ratio_rounds,
        "ratio_to_best": statistics.median(best_ratio_rounds),
        "ratio_to_best_min": min(best_ratio_rounds), "ratio_to_best_max": max(best_ratio_rounds),
        # CPU time per frame is what a busy shared machine disturbs least: with every core busy,
        # throughput is cores / CPU per frame, so this ratio is what the fps ratio tends to.
        "raw_parallel_cpu_seconds_per_frame_rounds": parallel_cpu_rounds,
        "pipeline_cpu_seconds_per_frame_rounds": pipeline_cpu_rounds,
        "cpu_ratio_parallel_to_pipeline": (statistics.median(parallel_cpu_rounds)
                                           / statistics.median(pipeline_cpu_rounds)),
    }
    if args.paced_seconds > 0:
        native_fps = _source_fps(args)
        paced_frames = max(10, int(args.paced_seconds * native_fps))
        _, recorder, _ = run_pipeline(_config(args, "native", paced_frames), paced_frames,
                                      timeout_seconds=args.paced_seconds * 3 + 30)
        inference_mean = statistics.fmean(recorder.inference_seconds)
        ages = recorder.frame_ages
        results.update({
            "paced_fps": native_fps, "paced_frames": len(ages),
            "inference_mean_seconds": inference_mean,
            "frame_age_p50_seconds": _percentile(ages, 50), "frame_age_p90_seconds": _percentile(ages, 90),
            "frame_age_p99_seconds": _percentile(ages, 99), "frame_age_max_seconds": max(ages),
            "frame_age_p50_over_inference": _percentile(ages, 50) / inference_mean,
            "frame_age_p99_over_inference": _percentile(ages, 99) / inference_mean,
        })
    from streamd.inference.registry import resolve_backend_name  # noqa: PLC0415

    if args.files > 0 and resolve_backend_name(args.backend) == "onnxruntime":
        from streamd.bench.end_to_end import run_end_to_end  # noqa: PLC0415

        results["end_to_end"] = run_end_to_end(args, fast_config, None if _is_synthetic(args) else args.source)
    elif args.files > 0:
        print(f"streamd bench: the end-to-end comparison needs --backend onnxruntime (the hand-written loop's), "
              f"not {args.backend}: skipped", file=sys.stderr)
    _print_table(results)
    if "end_to_end" in results:
        from streamd.bench.end_to_end import print_end_to_end  # noqa: PLC0415

        print_end_to_end(results["end_to_end"])
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    if results.get("end_to_end", {}).get("runs_with_problems"):
        # Recorded, as the pipeline rounds' messages_received_rounds: such runs stay out of the best-of figures.
        print("streamd bench: end-to-end runs had problems (missing messages, out of order, exit status; "
              "end_to_end.variants in the JSON says which)", file=sys.stderr)
    return 0


def _cpu_count() -> int:

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _print_table(results: dict[str, object]) -> None:
    rows = [("raw backend fps, one loop (median)", f"{results['raw_fps']:.1f}"),
            (f"raw backend fps, {results['workers']} loops x {results['threads_per_worker']} thread(s)",
             f"{results['raw_parallel_fps']:.1f}"),
            ("pipeline fps (median)", f"{results['pipeline_fps']:.1f}"),
            ("pipeline fps / raw backend fps, one loop", f"{results['ratio']:.3f}"),
            (f"pipeline fps / raw backend fps, {results['workers']} loops x {results['threads_per_worker']} "
             "thread(s)", f"{results['ratio_to_parallel']:.3f}"),
            ("pipeline fps / the round's best raw backend fps",
             f"{results['ratio_to_best']:.3f} (median of rounds; "
             f"{results['ratio_to_best_min']:.3f}-{results['ratio_to_best_max']:.3f})"),
            (f"CPU ms per frame, raw {results['workers']} loops / pipeline",
             f"{statistics.median(results['raw_parallel_cpu_seconds_per_frame_rounds']) * 1000:.2f} / "
             f"{statistics.median(results['pipeline_cpu_seconds_per_frame_rounds']) * 1000:.2f} "
             f"= {results['cpu_ratio_parallel_to_pipeline']:.3f}")]
    if "frame_age_p50_seconds" in results:
        rows += [("paced run", f"{results['paced_frames']} frames at {results['paced_fps']:g} fps"),
                 ("inference mean", f"{results['inference_mean_seconds'] * 1000:.2f} ms"),
                 ("frame age p50", f"{results['frame_age_p50_seconds'] * 1000:.2f} ms "
                                   f"({results['frame_age_p50_over_inference']:.2f} x inference)"),
                 ("frame age p90", f"{results['frame_age_p90_seconds'] * 1000:.2f} ms"),
                 ("frame age p99", f"{results['frame_age_p99_seconds'] * 1000:.2f} ms "
                                   f"({results['frame_age_p99_over_inference']:.2f} x inference)")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
