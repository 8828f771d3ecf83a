"""Command-line arguments of ``streamd bench`` (kept apart so ``--help`` imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path

# The data beside the repository (../shared), when streamd runs from a checkout.
_SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(_SHARED / "models" / "yolox_nano.onnx"), help="ONNX model")
    parser.add_argument("--classes", default="", help="class-name file (default: coco_classes.txt beside the model)")
    parser.add_argument("--source", default=str(_SHARED / "media" / "vtest.avi"), help="video file")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt", "auto"])
    parser.add_argument("--workers", type=int, default=0, help="pipeline workers (0: auto, as model.workers)")
    parser.add_argument("--threads", type=int, default=0, help="backend threads per worker (0: auto, as model.threads)")
    parser.add_argument("--frames", type=int, default=300, help="frames per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="raw/pipeline rounds, alternated")
    parser.add_argument("--paced-seconds", type=float, default=20.0,
                        help="length of the real-time (native fps) run for frame-age percentiles; 0 skips it")
    parser.add_argument("--json", dest="json_path", default="", help="write the results here as JSON")
    parser.add_argument("--accuracy", action="store_true",
                        help="instead: mAP of the built-in model on held-out synthetic scenes, through a running "
                             "daemon and a ZeroMQ subscriber (needs nothing outside the package)")
    parser.add_argument("--accuracy-frames", type=int, default=60, help="frames per held-out scene for --accuracy")
