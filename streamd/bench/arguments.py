"""Command-line arguments of ``streamd bench`` (kept apart so ``--help`` imports nothing heavy).

The defaults are the test data in ``STREAMD_SHARED`` (the variable the tests use), else in
``../shared`` beside a source checkout. An installed package has no such folder beside it: there
``streamd bench`` measures what ``streamd run`` runs without a config, the built-in demo model on the
synthetic scene (``--model builtin:synthetic-shapes --source synthetic``; streamd/models/demo_config.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from streamd.inference.registry import BACKEND_CHOICES

SHARED_ENVIRONMENT = "STREAMD_SHARED"
DEFAULT_MODEL = Path("models") / "yolox_nano.onnx"
DEFAULT_SOURCE = Path("media") / "vtest.avi"
# --source value: the built-in demo's synthetic scene (its [[sources]] table in streamd/models/demo_config.py).
SYNTHETIC_SOURCE = "synthetic"
DEMO_MODEL = "builtin:synthetic-shapes"


def shared_data_dir() -> Path | None:
    """``$STREAMD_SHARED``, else ``../shared`` beside a source checkout, else None."""
    if os.environ.get(SHARED_ENVIRONMENT):
        return Path(os.environ[SHARED_ENVIRONMENT]).expanduser().absolute()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout.parent / "shared").is_dir():
        return checkout.parent / "shared"
    return None


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    shared = shared_data_dir()
    model = str(shared / DEFAULT_MODEL) if shared else None
    source = str(shared / DEFAULT_SOURCE) if shared else None
    unset = f"${SHARED_ENVIRONMENT} is not set, so"
    parser.add_argument("--model", default=model, help=f"ONNX model or builtin:NAME (default: "
                                                       f"$STREAMD_SHARED/{DEFAULT_MODEL}, here "
                                                       f"{model or f'{unset} {DEMO_MODEL}, the built-in demo model'})")
    parser.add_argument("--classes", default="", help="class-name file (default: coco_classes.txt beside the model "
                                                      "if there, else as model.classes: NAME.names, classes.txt, "
                                                      "or the COCO names for an 80-class model)")
    parser.add_argument("--source", default=source, help=f"video file, or '{SYNTHETIC_SOURCE}' for the built-in demo's "
                                                         f"synthetic scene (default: $STREAMD_SHARED/{DEFAULT_SOURCE}, "
                                                         f"here {source or f'{unset} {SYNTHETIC_SOURCE}'})")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKEND_CHOICES,
                        help="inference backend (default: onnxruntime)")
    parser.add_argument("--detector-workers", dest="detector_workers", type=int, default=0,
                        help="detector workers in a process (default 0: auto, as model.workers)")
    parser.add_argument("--threads", type=int, default=0,
                        help="backend threads per worker (default 0: auto, as model.threads)")
    parser.add_argument("--frames", type=int, default=300, help="frames per throughput round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="raw/pipeline rounds, alternated (default: %(default)s)")
    parser.add_argument("--paced-seconds", type=float, default=20.0,
                        help="length of the real-time (native fps) run for frame-age percentiles "
                             "(default: %(default)s); 0 skips it")
    parser.add_argument("--files", type=int, default=2,
                        help="end to end: this many copies of --source as file sources read flat out, through "
                             "streamd run (one process, and workers = 2) and through the best hand-written loop "
                             "doing the same work (decode, letterbox, ONNX Runtime, decode + NMS), --frames each, "
                             "--rounds alternated (default: %(default)s; 0 skips it)")
    parser.add_argument("--json", dest="json_path", default="", help="write the results here as JSON")
    parser.add_argument("--accuracy", action="store_true",
                        help="instead: mAP of the built-in model on held-out synthetic scenes, through a running "
                             "daemon and a ZeroMQ subscriber (needs nothing outside the package)")
    parser.add_argument("--accuracy-frames", type=int, default=60,
                        help="frames per held-out scene for --accuracy (default: %(default)s)")
