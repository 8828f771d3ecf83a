"""Command-line arguments of ``streamd bench --streams`` (light: ``--help`` imports nothing heavy).

The model, classes, backend, workers, threads and ``--json`` flags are bench's own (arguments.py).
"""

from __future__ import annotations

import argparse
import re

from streamd.bench.arguments import shared_data_dir
from streamd.config.schema import SOURCE_DECODERS

DEFAULT_VIDEO = "media/vtest_1080p30.mp4"
# Real time: every stream publishes at least this share of its source's rate (29.5 of 30 fps) ...
REAL_TIME_FPS_SHARE = 0.983
# ... and frame age at publish p99 stays under this.
DEFAULT_MAX_AGE_P99_SECONDS = 0.150
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def stream_counts(text: str) -> list[int]:
    """``4``, ``1..4`` or ``1,2,4,8`` (an argparse type)."""
    match = _RANGE.match(text.strip())
    try:
        counts = (list(range(int(match[1]), int(match[2]) + 1)) if match
                  else [int(part) for part in text.split(",") if part.strip()])
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': expected N, A..B or A,B,C with counts of 1 or more")
    return counts


def worker_processes(text: str) -> int | str:
    """``auto`` or a number of processes (an argparse type)."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': expected a number of processes (1 or more) or auto")
    return int(text)


def add_streams_arguments(parser: argparse.ArgumentParser) -> None:
    shared = shared_data_dir()
    video = str(shared / DEFAULT_VIDEO) if shared else None
    group = parser.add_argument_group(
        "many streams (--streams)",
        "N copies of one video, paced at its frame rate and looped like cameras, through the whole daemon "
        "to a ZeroMQ subscriber: per-stream fps published, frame age at publish, batch sizes, drops, host "
        "CPU cores and GPU busy fraction over a measured window after a warm-up.")
    group.add_argument("--streams", type=stream_counts, metavar="N",
                       help="run with N streams (also A..B or A,B,C: one run per count; with --sweep: the first "
                            "count to try)")
    group.add_argument("--sweep", action="store_true",
                       help="find the largest N at real time (every stream >= "
                            f"{REAL_TIME_FPS_SHARE} x the video's fps and frame age p99 <= --max-age-p99): "
                            "double N until a run fails, then bisect")
    group.add_argument("--max-streams", type=int, default=256, metavar="N",
                       help="the sweep's upper bound (default: %(default)s)")
    group.add_argument("--sweep-step", type=int, default=1, metavar="N",
                       help="stop bisecting once the last count at real time and the first one past it are at "
                            "most N apart (default: %(default)s: the exact largest count)")
    group.add_argument("--max-age-p99", type=float, default=DEFAULT_MAX_AGE_P99_SECONDS, metavar="SECONDS",
                       help="real-time limit on frame age at publish, p99 over every stream (default: %(default)s)")
    group.add_argument("--video", default=video,
                       help=f"the video every stream plays (default: $STREAMD_SHARED/{DEFAULT_VIDEO}, here "
                            f"{video or 'required unless $STREAMD_SHARED is set'}; make it with "
                            "--make-test-video)")
    group.add_argument("--decoder", choices=SOURCE_DECODERS, default="opencv",
                       help="source decoder (default: %(default)s; nvdec needs a GPU backend and max batch > 1)")
    group.add_argument("--max-batch", type=int, default=0, metavar="N",
                       help="model.max_batch (default 0: 1 on onnxruntime, else the number of streams, at least 2)")
    group.add_argument("--device", type=int, default=0, help="model.device: the GPU the GPU path and NVDEC run on "
                                                             "(default: %(default)s)")
    group.add_argument("--batch-window", type=float, default=None, metavar="SECONDS",
                       help="model.batch_window_seconds, the cap on a batch's wait for more frames (default: the "
                            "config's default)")
    group.add_argument("--max-frame-age", type=float, default=0.0, metavar="SECONDS",
                       help="daemon.max_frame_age_seconds (default 0: off)")
    group.add_argument("--no-tracking", action="store_true",
                       help="tracking.enabled = false (tracking is on by default and costs host time per frame)")
    group.add_argument("--analytics", action="store_true",
                       help="give every stream 4 zones and 2 lines (fractions of the frame; one zone with an "
                            "occupancy alarm, one with a dwell time), to measure what analytics cost at scale")
    group.add_argument("--standin-engine", action="store_true",
                       help="GPU without TensorRT: run the model through the torch stand-in engine "
                            "(tests/gpu/standin_engine.py, a checkout only); implies --backend tensorrt")
    group.add_argument("--workers", type=worker_processes, default=1, metavar="N",
                       help="daemon.workers: 1 (default) measures one process in this one; N or auto runs a real "
                            "`streamd run` with N worker processes behind one endpoint and reports each worker's "
                            "cores and GPU memory and what limits the run")
    group.add_argument("--seconds", type=float, default=10.0, help="measured window per run (default: %(default)s)")
    group.add_argument("--warmup-seconds", type=float, default=3.0,
                       help="run this long before measuring (default: %(default)s)")
    group.add_argument("--plot", default="", metavar="PNG", help="write the plot (streams vs fps and frame age) here")
    group.add_argument("--machine", default="", help="the machine's name in the plot's title (default: detected)")
    group.add_argument("--make-test-video", default="", metavar="PATH",
                       help="write a 1080p30 H.264 MP4 made from --source (vtest.avi) with ffmpeg or "
                            "gst-launch-1.0, then exit")
