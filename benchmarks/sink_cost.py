#!/usr/bin/env python3
"""What an MQTT sink costs the pipeline: frame age (capture to publish, as each ZeroMQ message says) of a
daemon on synthetic sources read at their own pace, with no sink, with an MQTT sink whose broker is down
(a port nothing listens on: every message buffered, then dropped from the full buffer), and with one whose
broker is up (a mosquitto started here), carrying detections, events and counts.

The three run in turn, a fresh daemon for each block, for ``--rounds`` rounds, so the machine's drifting
load falls on all three alike. The first ``--warmup`` seconds of each block are left out. Reported per
mode: frame age p50, p90 and p99 over all its blocks, and each block's.

    python benchmarks/sink_cost.py --rounds 3 --json benchmarks/results/DATE_cpu-2core_sink-cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.publish.subscriber import Subscriber  # noqa: E402

MODES = ("none", "broker_down", "broker_up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(args: argparse.Namespace, mode: str, publish_port: int, broker_port: int) -> str:
    frames = int(args.fps * (args.warmup + args.seconds))
    sources = "".join(f"""
[[sources]]
id = "cam{i}"
kind = "synthetic"
seed = {i}
pace = "native"
fps = {args.fps}
max_frames = {frames}

[[sources.lines]]
name = "line"
points = [[0, 240], [640, 240]]

[[sources.zones]]
name = "left"
polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
units = "fractions"
""" for i in range(args.sources))
    sink = "" if mode == "none" else f"""
[[sinks]]
kind = "mqtt"
name = "bench"
port = {broker_port}
node = "bench"
carries = ["events", "detections", "counts"]
buffer_messages = 1000
"""
    return f"""{sources}
[model]
path = "builtin:synthetic-shapes"

[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
send_hwm = 100000
wait_for_subscriber_seconds = 30

[metrics]
enabled = false

[daemon]
status_interval_seconds = 0
workers = 1
{sink}"""


def block(args: argparse.Namespace, mode: str, folder: Path, broker_port: int, dead_port: int) -> list[float]:
    publish_port = free_port()
    config = folder / f"{mode}.toml"
    config.write_text(config_text(args, mode, publish_port, broker_port if mode == "broker_up" else dead_port))
    log = open(folder / f"{mode}.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config)], stdout=log,
                              stderr=subprocess.STDOUT)
    ages: list[float] = []
    first = 0.0
    try:
        with Subscriber(f"tcp://127.0.0.1:{publish_port}", tuple(f"cam{i}" for i in range(args.sources))) as sub:
            deadline = time.monotonic() + args.warmup + args.seconds + 60
            while time.monotonic() < deadline:
                message = sub.receive(0.2)
                if message is None:
                    if daemon.poll() is not None:
                        break
                    continue
                first = first or message["publish_time"]
                if message["publish_time"] - first >= args.warmup:
                    ages.append(message["publish_time"] - message["capture_time"])
    finally:
        daemon.terminate()
        daemon.wait(30)
    return ages


def summary(ages: list[float]) -> dict:
    values = np.array(ages) * 1000
    return {"frames": len(ages), **{f"p{q}_ms": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per block")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    folder = Path(tempfile.mkdtemp(prefix="sink_cost_"))
    broker_port, dead_port = free_port(), free_port()
    (folder / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([mosquitto, "-c", str(folder / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    per_mode: dict[str, list[float]] = {mode: [] for mode in MODES}
    blocks: list[dict] = []
    try:
        time.sleep(0.5)
        for round_index in range(args.rounds):
            for mode in MODES:
                ages = block(args, mode, folder, broker_port, dead_port)
                per_mode[mode] += ages
                blocks.append({"round": round_index, "mode": mode, **summary(ages)})
                print(json.dumps(blocks[-1]))
    finally:
        broker.terminate()
        broker.wait(10)
    result = {**provenance(), "sources": args.sources, "fps": args.fps, "seconds_per_block": args.seconds,
              "carries": ["events", "detections", "counts"], "buffer_messages": 1000,
              "frame_age": {mode: summary(ages) for mode, ages in per_mode.items()}, "blocks": blocks,
              "load_average_1min_after": round(os.getloadavg()[0], 2)}
    print(json.dumps(result["frame_age"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
