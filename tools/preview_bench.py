#!/usr/bin/env python3
"""What the live preview costs the pipeline (issue 12): throughput with the preview off, on with no
viewer, and on with one viewer reading the MJPEG stream, in alternating rounds of one process.

    python tools/preview_bench.py --model ../shared/models/yolox_nano.onnx --video ../shared/media/vtest.avi \\
        --frames 300 --rounds 6 --json preview_bench.json

Each run is `streamd bench`'s flat-out pipeline (file read with pace "fast", every frame through
inference and published to a real ZeroMQ subscriber), timed from the sources' start to the last
publish. The order of the three variants rotates every round, so a busy moment of a shared machine
does not land on one variant; the result is the median of the per-round ratios to "off".
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamd.config.load import parse_config  # noqa: E402
from streamd.daemon.service import Service  # noqa: E402
from streamd.publish.subscriber import Subscriber  # noqa: E402

VARIANTS = ("off", "idle", "viewer")


def _config(args: argparse.Namespace, variant: str):  # noqa: ANN202
    model = Path(args.model)
    document = {
        "sources": [{"id": "bench", "kind": "file", "url": args.video, "pace": "fast", "max_frames": args.frames}],
        "model": {"path": str(model), **({"classes": str(model.parent / "coco_classes.txt")}
                                         if (model.parent / "coco_classes.txt").is_file() else {})},
        "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 100000},
        "metrics": {"enabled": False},
        "preview": {"enabled": variant != "off", "bind": "127.0.0.1:0", "fps": args.preview_fps,
                    "max_width": args.max_width},
    }
    return parse_config(document, Path.cwd(), "(preview bench)")


class _Viewer(threading.Thread):
    """An MJPEG client that reads the stream as a browser would, counting the JPEG parts."""

    def __init__(self, url: str) -> None:
        super().__init__(name="viewer", daemon=True)
        self.url = url
        self.parts = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=30) as response:
            while not self.stop.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    break
                self.parts += chunk.count(b"Content-Type: image/jpeg")


def run_once(args: argparse.Namespace, variant: str) -> dict:
    published: list[float] = []
    service = Service(_config(args, variant), on_result=lambda result, age: published.append(time.perf_counter()))
    viewer = None
    service.start_detector()
    subscriber = Subscriber(service.publisher_endpoint())
    try:
        service.wait_for_subscriber(5.0)
        if variant == "viewer":
            viewer = _Viewer(f"http://127.0.0.1:{service.preview.port}/sources/bench/stream.mjpg")
            viewer.start()
            deadline = time.monotonic() + 10
            while service.preview.hub.viewer_count() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        started = time.perf_counter()
        service.start_sources()
        service.pipeline.finished.wait(600)
        elapsed = (published[-1] if published else time.perf_counter()) - started
        encoded = service.preview.hub.views["bench"].frames_encoded if service.preview else 0
    finally:
        if viewer is not None:
            viewer.stop.set()
        subscriber.close()
        service.stop()
    return {"variant": variant, "frames": len(published), "seconds": elapsed, "fps": len(published) / elapsed,
            "preview_frames_encoded": encoded, "viewer_parts": viewer.parts if viewer else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--preview-fps", type=float, default=5.0)
    parser.add_argument("--max-width", type=int, default=640)
    parser.add_argument("--json", dest="json_path", default="")
    args = parser.parse_args()
    rounds = []
    for index in range(args.rounds):
        order = VARIANTS[index % 3:] + VARIANTS[:index % 3]
        runs = {variant: run_once(args, variant) for variant in order}
        rounds.append({"order": list(order), "runs": runs,
                       "idle_over_off": runs["idle"]["fps"] / runs["off"]["fps"],
                       "viewer_over_off": runs["viewer"]["fps"] / runs["off"]["fps"]})
        print(f"round {index + 1}/{args.rounds} ({', '.join(order)}): " + ", ".join(
            f"{v} {runs[v]['fps']:.1f} fps" for v in VARIANTS) + f"; viewer got {runs['viewer']['viewer_parts']} "
            f"frames; idle/off {rounds[-1]['idle_over_off']:.3f}, viewer/off {rounds[-1]['viewer_over_off']:.3f}",
            file=sys.stderr, flush=True)
    idle = [r["idle_over_off"] for r in rounds]
    viewer = [r["viewer_over_off"] for r in rounds]
    summary = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "model": args.model, "video": args.video, "frames": args.frames, "preview_fps": args.preview_fps,
        "max_width": args.max_width, "rounds": rounds,
        "median_fps": {v: statistics.median(r["runs"][v]["fps"] for r in rounds) for v in VARIANTS},
        "idle_over_off": {"median": statistics.median(idle), "min": min(idle), "max": max(idle)},
        "viewer_over_off": {"median": statistics.median(viewer), "min": min(viewer), "max": max(viewer)},
    }
    print(json.dumps({k: summary[k] for k in ("median_fps", "idle_over_off", "viewer_over_off")}, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
