"""Accuracy of a detector on held-out synthetic scenes, scored against the generator's ground truth.

Two ways to measure:
- :func:`offline_accuracy`: the model through the daemon's own host detector (letterbox, ONNX
  Runtime, decode) frame by frame (used by the training script; no daemon, no ZeroMQ);
- :func:`daemon_accuracy`: the real thing, a daemon
  process publishing over ZeroMQ to a subscriber, each received message matched by frame index to
  the ground truth the generator gives for that index.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamd.evaluation.detection_map import Boxes, mean_average_precision
from streamd.frame import Frame
from streamd.sources.synthetic import GroundTruth, SyntheticScene, render

# Low enough that the precision/recall curve is traced to high recall; mAP needs the whole curve.
ACCURACY_SCORE_THRESHOLD = 0.05
ACCURACY_NMS_THRESHOLD = 0.45


def truth_boxes(truth: GroundTruth) -> Boxes:
    return Boxes(truth.boxes_xyxy.astype(np.float64), truth.class_ids.astype(np.int64))


def score(predictions: list[Boxes], truths: list[GroundTruth]) -> dict[str, float]:
    """mAP@0.5 and mAP@0.5:0.95 of paired per-frame predictions, plus the frame count."""
    result = mean_average_precision(predictions, [truth_boxes(t) for t in truths])
    return {"map50": result["map50"], "map50_95": result["map50_95"], "frames": len(truths)}


def offline_accuracy(onnx_path: str | Path, seeds: Iterable[int], frames_per_seed: int, width: int = 640,
                     height: int = 480, score_threshold: float = ACCURACY_SCORE_THRESHOLD,
                     nms_threshold: float = ACCURACY_NMS_THRESHOLD) -> dict[str, float]:
    """Score ``onnx_path`` (official YOLOX layout, "yolox" preprocessing) on frames 0.. of ``seeds``."""
    from streamd.inference.host_detector import HostDetector  # noqa: PLC0415
    from streamd.inference.onnxruntime_backend import OnnxRuntimeBackend  # noqa: PLC0415
    from streamd.yolox.layout import input_size  # noqa: PLC0415 - only this path needs onnxruntime
    from streamd.yolox.postprocess import YoloxDecoder  # noqa: PLC0415
    from streamd.yolox.preprocess import YOLOX  # noqa: PLC0415

    # The daemon's own host detector (letterbox, ONNX Runtime, decode), one frame at a time.
    backend = OnnxRuntimeBackend(onnx_path)
    input_width, input_height = input_size(backend.inputs)
    num_classes = int(backend.outputs[0].shape[2]) - 5
    decoder = YoloxDecoder("yolox", input_width, input_height, num_classes, score_threshold, nms_threshold)
    detector = HostDetector(backend, YOLOX, decoder, input_width, input_height, Path(onnx_path).stem,
                            tuple(str(i) for i in range(num_classes)))
    predictions: list[Boxes] = []
    truths: list[GroundTruth] = []
    try:
        for seed in seeds:
            scene = SyntheticScene(seed, width, height)
            for index in range(frames_per_seed):
                image, truth = scene.render(index)
                [result] = detector.submit(Frame(f"seed-{seed}", index, 0.0, 0.0, image))
                detections = result.detections
                predictions.append(Boxes(detections.boxes_xyxy.astype(np.float64),
                                         detections.class_ids.astype(np.int64), detections.scores.astype(np.float64)))
                truths.append(truth)
    finally:
        detector.close()
    return score(predictions, truths)


# ----------------------------------------------------------------------------------------------
# through the daemon
HELD_OUT_SEEDS = (1, 2, 3, 4)  # < TRAINING_SEED_BASE: scenes the shipped model never saw


def accuracy_config(endpoint: str, seeds: Sequence[int], frames_per_seed: int, width: int, height: int,
                    model_path: str = "builtin:synthetic-shapes",
                    score_threshold: float = ACCURACY_SCORE_THRESHOLD) -> str:
    """A daemon config: one lossless (pace "fast") synthetic source per held-out seed, metrics off."""
    sources = "".join(
        f'[[sources]]\nid = "seed-{seed}"\nkind = "synthetic"\npace = "fast"\nseed = {seed}\n'
        f"width = {width}\nheight = {height}\nmax_frames = {frames_per_seed}\n\n"
        for seed in seeds)
    # Lossless sources and a send queue that holds every message: nothing is dropped on the way.
    hwm = max(1000, 2 * frames_per_seed * len(seeds))
    return (f"{sources}[model]\npath = {json.dumps(model_path)}\nscore_threshold = {score_threshold}\n"
            f'nms_threshold = {ACCURACY_NMS_THRESHOLD}\nbackend = "onnxruntime"\n\n'
            f"[publish]\nendpoint = {json.dumps(endpoint)}\nsend_hwm = {hwm}\n"
            # The subscriber connects before the daemon binds; hold the sources until it has subscribed.
            "wait_for_subscriber_seconds = 10.0\n\n"
            "[metrics]\nenabled = false\n")


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def predictions_from_message(message: dict[str, Any]) -> Boxes:
    detections = message["detections"]
    return Boxes(np.array([d["box"] for d in detections], np.float64).reshape(-1, 4),
                 np.array([d["class_id"] for d in detections], np.int64),
                 np.array([d["score"] for d in detections], np.float64))


def daemon_accuracy(seeds: Sequence[int] = HELD_OUT_SEEDS, frames_per_seed: int = 60, width: int = 640,
                    height: int = 480, model_path: str = "builtin:synthetic-shapes",
                    timeout_seconds: float = 120.0, work_dir: Path | None = None) -> dict[str, Any]:
    """Run ``python -m streamd run`` on held-out synthetic scenes and score what a ZeroMQ subscriber gets.

    Each received message is matched by (source, frame index) to the ground truth the generator
    gives for that frame. Returns the mAPs plus ``frames_sent``, ``frames_received`` and ``seconds``.
    """
    from streamd.publish.subscriber import Subscriber  # noqa: PLC0415 - needs pyzmq

    seed_of_source = {f"seed-{seed}": seed for seed in seeds}
    endpoint = f"tcp://127.0.0.1:{_free_tcp_port()}"
    with tempfile.TemporaryDirectory(prefix="streamd-accuracy-") as temp:
        folder = Path(work_dir or temp)
        config_path = folder / "accuracy.toml"
        config_path.write_text(accuracy_config(endpoint, seeds, frames_per_seed, width, height, model_path))
        log_path = folder / "daemon.log"
        started = time.monotonic()
        # Subscribe before the daemon binds: ZeroMQ connects as soon as the endpoint exists, so the
        # subscription is in place before the model has loaded and the first frame is published.
        with Subscriber(endpoint) as subscriber, open(log_path, "wb") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config_path)],
                                       stdout=log_file, stderr=subprocess.STDOUT)
            try:
                received = _collect(subscriber, process, timeout_seconds)
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(10)
        seconds = time.monotonic() - started
        if not received:
            raise RuntimeError(f"no message received from the daemon (exit status {process.returncode}); "
                               f"its log:\n{log_path.read_text(errors='replace')[-4000:]}")
    predictions, truths = [], []
    for message in received:
        seed = seed_of_source[message["source"]]
        _, truth = render(seed, int(message["frame_index"]), width, height)
        predictions.append(predictions_from_message(message))
        truths.append(truth)
    result: dict[str, Any] = dict(score(predictions, truths))
    result.update(frames_sent=frames_per_seed * len(seeds), frames_received=len(received),
                  seconds=round(seconds, 2), daemon_exit_status=process.returncode)
    return result


def _collect(subscriber: Any, process: subprocess.Popen, timeout_seconds: float) -> list[dict[str, Any]]:
    """Messages until the daemon exits (all sources finished) and the socket has drained."""
    deadline = time.monotonic() + timeout_seconds
    received: dict[tuple[str, int], dict[str, Any]] = {}
    while time.monotonic() < deadline:
        message = subscriber.receive(0.2)
        if message is not None:
            received[(message["source"], int(message["frame_index"]))] = message
        elif process.poll() is not None:
            # Exited: whatever it sent before closing is already queued here; drain it.
            while (message := subscriber.receive(0.5)) is not None:
                received[(message["source"], int(message["frame_index"]))] = message
            break
    return list(received.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="mAP of the built-in synthetic-shapes model on held-out synthetic scenes, measured "
                    "through a running daemon and a ZeroMQ subscriber")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(HELD_OUT_SEEDS))
    parser.add_argument("--frames", type=int, default=60, help="frames per seed")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--model", default="builtin:synthetic-shapes")
    parser.add_argument("--offline", action="store_true", help="ONNX Runtime directly, no daemon")
    args = parser.parse_args(argv)
    if args.offline:
        model_path = args.model
        if model_path.startswith("builtin:"):
            from streamd.models import builtin_model  # noqa: PLC0415

            model_path = str(builtin_model(model_path[len("builtin:"):]).onnx_path)
        result: dict[str, Any] = dict(offline_accuracy(model_path, args.seeds, args.frames, args.width, args.height))
    else:
        result = daemon_accuracy(args.seeds, args.frames, args.width, args.height, args.model)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
