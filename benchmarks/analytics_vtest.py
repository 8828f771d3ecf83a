#!/usr/bin/env python3
"""Zones, lines and track ids on real footage: one daemon reads a video at its own pace (the OpenCV
pedestrian clip vtest.avi by default) with a line across the walkway and a zone where it crosses the path;
a subscriber takes every detections and events message; a preview snapshot is saved at ``--snapshot-frame``.

    python benchmarks/analytics_vtest.py --model ../shared/models/yolox_nano.onnx --video ../shared/media/vtest.avi \\
        --json benchmarks/results/cpu-2core_analytics-vtest.json --picture docs/images/analytics_vtest.jpg

Writes the crossings each way, the zone entries, how many detections carried an id and a zone, the id
figures of ``streamd.evaluation.id_coverage`` (the share of detections scoring at least 0.6 that carry an
id past their first 3 frames, and id continuity frame to frame), and every event, after the commit,
machine, command and versions (``benchmarks/record.py``). There is no ground truth for this clip: the
counts are what streamd saw, to be checked against the picture and the video.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.evaluation.id_coverage import id_coverage  # noqa: E402
from streamd.publish.subscriber import Subscriber  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LINE = [[380, 160], [380, 330]]  # across the walkway, pointing down the picture: "in" is walking right
ZONE = [[300, 150], [470, 150], [470, 320], [300, 320]]


def config_text(model: Path, video: Path, ports: tuple[int, int, int]) -> str:
    classes = model.parent / "coco_classes.txt"
    return f"""
[[sources]]
id = "street"
kind = "file"
url = "{video}"

[[sources.lines]]
name = "walkway"
points = {LINE}

[[sources.zones]]
name = "crossing"
polygon = {ZONE}
classes = ["person"]

[model]
path = "{model}"
{f'classes = "{classes}"' if classes.is_file() else ''}

[publish]
endpoint = "tcp://127.0.0.1:{ports[0]}"
send_hwm = 100000
wait_for_subscriber_seconds = 30

[metrics]
bind = "127.0.0.1:{ports[1]}"

[preview]
enabled = true
bind = "127.0.0.1:{ports[2]}"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--ports", type=int, nargs=3, default=[15755, 15756, 15757],
                        help="publish, metrics and preview ports")
    parser.add_argument("--snapshot-frame", type=int, default=700)
    parser.add_argument("--json")
    parser.add_argument("--picture", help="save the preview snapshot here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "vtest.toml"
        config.write_text(config_text(Path(args.model).resolve(), Path(args.video).resolve(), tuple(args.ports)))
        daemon = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config)], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        events, frames, detections, with_id, in_zone, received = [], 0, 0, 0, 0, []
        try:
            with Subscriber(f"tcp://127.0.0.1:{args.ports[0]}") as subscriber:
                last = time.monotonic()
                while time.monotonic() - last < 10:
                    message = subscriber.receive(1.0)
                    if message is None:
                        continue
                    last = time.monotonic()
                    if "events" in message:
                        events += message["events"]
                        continue
                    frames += 1
                    received.append(message)
                    for found in message["detections"]:
                        detections += 1
                        with_id += found["track_id"] is not None
                        in_zone += bool(found["zones"])
                    if frames == args.snapshot_frame and args.picture:
                        url = f"http://127.0.0.1:{args.ports[2]}/sources/street/snapshot.jpg"
                        Path(args.picture).write_bytes(urllib.request.urlopen(url, timeout=10).read())
        finally:
            daemon.terminate()
            daemon.wait(10)
    crossings = {"in": 0, "out": 0}
    for event in events:
        if event["type"] == "line_cross":
            crossings[event["direction"]] += 1
    result = {**provenance(), "video": Path(args.video).name, "model": Path(args.model).name,
              "line": {"name": "walkway", "points": LINE, "in": "walking right"}, "zone": {"name": "crossing",
                                                                                          "polygon": ZONE},
              "frames": frames, "detections": detections, "detections_with_id": with_id,
              "detections_in_zone": in_zone, "ids": id_coverage(received), "crossings": crossings,
              "zone_entries": sum(event["type"] == "zone_enter" for event in events), "events": events}
    ids = result["ids"]
    print(f"frames {frames}, crossings {crossings}, zone entries {result['zone_entries']}, "
          f"id share {ids['id_share']:.4f}, continuity {ids['continuity']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
