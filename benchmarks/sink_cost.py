#!/usr/bin/env python3
"""What a sink costs: the pipeline's frame age with each kind of sink, and each sink's own CPU per message.

**Frame age** (the default): a daemon on ``--sources`` synthetic sources read at their own pace, with zones
and lines, and each mode in turn: no sink; for each kind in ``--kinds``, a sink whose server is down (a port
nothing listens on: every message buffered, then dropped from the full buffer) and one whose server is up (a
mosquitto, a nats-server with JetStream, or a webhook receiver in a process of its own that checks each
signature), carrying detections, events and counts. Frame age is capture to publish, as each ZeroMQ message
says. A fresh daemon for each block, the modes in turn for ``--rounds`` rounds, each round starting one mode
later, so the machine's drifting load falls on all alike; the first ``--warmup`` seconds of each block are left out.

**Per-sink cost** (``--per-sink``): in this process, one sink of each kind fed from this thread at a steady
rate for ``--seconds``: events messages at 100 a second (16 sources taking turns, each message one line
crossing; the sink carries events and counts) and detections messages at 30 fps x 16 sources (10
detections each, about 1.3 kB; the sink carries detections), the server up. Measured: the offer's time on
the calling thread (what the pipeline pays), the sink thread's CPU per message, the server process's CPU,
and whether the sink kept up (what was still buffered when the offers stopped, and how long it took to
drain). Kinds and loads in turn for ``--rounds`` rounds.

    python benchmarks/sink_cost.py --rounds 3 --json benchmarks/results/cpu-2core_sink-cost.json
    python benchmarks/sink_cost.py --per-sink --rounds 3 --json benchmarks/results/cpu-2core_per-sink.json
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.publish.subscriber import Subscriber  # noqa: E402

SECRET = "benchmark-secret"
BUFFER_MESSAGES = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"{process.args} did not listen on {port}")


# -- the servers: one process each, started once --------------------------------------------------------------

def serve_webhook(port: int) -> None:
    """A receiver as a user would write one: checks the signature, answers 204."""
    secret = SECRET.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            timestamp = self.headers.get("X-Streamd-Timestamp", "")
            expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(expected, self.headers.get("X-Streamd-Signature", ""))
            self.send_response(204 if valid else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class Server:
    """The broker or receiver of one kind of sink, in a process of its own."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "mqtt":
            config = folder / "mosquitto.conf"
            config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            command = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)]
        elif kind == "webhook":
            command = [sys.executable, __file__, "--serve-webhook", str(self.port)]
        elif kind == "nats":
            config = folder / f"nats-{self.port}.conf"
            config.write_text(f"listen: 127.0.0.1:{self.port}\njetstream {{\n  store_dir: \"{folder / 'nats'}\"\n}}\n")
            command = [shutil.which("nats-server") or "/usr/sbin/nats-server", "-c", str(config)]
        else:
            raise SystemExit(f"no server for sink kind {kind!r}")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def sink(self, name: str, carries: list[str], port: int | None = None) -> dict:
        """The [[sinks]] table (as a dict) for this kind, sending to ``port`` (default: this server)."""
        port = self.port if port is None else port
        table: dict = {"kind": self.kind, "name": name, "carries": carries, "buffer_messages": BUFFER_MESSAGES,
                       "node": "bench"}
        if self.kind == "mqtt":
            table["port"] = port
        elif self.kind == "nats":
            table["servers"] = [f"nats://127.0.0.1:{port}"]
        else:
            table.update(url=f"http://127.0.0.1:{port}/hook", secret=SECRET)
        return table

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def toml_table(table: dict) -> str:
    return "\n[[sinks]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


TICKS = os.sysconf("SC_CLK_TCK")


def _stat_cpu_seconds(path: str) -> float:
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def process_cpu_seconds(pid: int) -> float:
    return _stat_cpu_seconds(f"/proc/{pid}/stat")


def thread_cpu_seconds(native_id: int) -> float:
    return _stat_cpu_seconds(f"/proc/self/task/{native_id}/stat")


# -- frame age ------------------------------------------------------------------------------------------------

def config_text(args: argparse.Namespace, publish_port: int, sink: dict | None) -> str:
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
{toml_table(sink) if sink else ""}"""


def block(args: argparse.Namespace, mode: str, folder: Path, sink: dict | None) -> list[float]:
    publish_port = free_port()
    config = folder / f"{mode}.toml"
    config.write_text(config_text(args, publish_port, sink))
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


def frame_age(args: argparse.Namespace, servers: dict[str, Server], folder: Path) -> dict:
    carries = ["events", "detections", "counts"]
    dead_port = free_port()
    modes: dict[str, dict | None] = {"none": None}
    for kind, server in servers.items():
        modes[f"{kind}_down"] = server.sink("bench", carries, dead_port)
        modes[f"{kind}_up"] = server.sink("bench", carries)
    per_mode: dict[str, list[float]] = {mode: [] for mode in modes}
    blocks: list[dict] = []
    names = list(modes)
    for round_index in range(args.rounds):
        # Each round starts one mode later, so no mode always runs first (a load that grows during a round
        # would otherwise fall on the same modes every time).
        shift = round_index % len(names)
        for mode in names[shift:] + names[:shift]:
            sink = modes[mode]
            ages = block(args, mode, folder, sink)
            per_mode[mode] += ages
            blocks.append({"round": round_index, "mode": mode, **summary(ages),
                           "load_average_1min": round(os.getloadavg()[0], 2)})
            print(json.dumps(blocks[-1]), flush=True)
    result = {"sources": args.sources, "fps": args.fps, "seconds_per_block": args.seconds, "carries": carries,
              "buffer_messages": BUFFER_MESSAGES, "frame_age": {m: summary(a) for m, a in per_mode.items()},
              "blocks": blocks}
    # Each sink mode's p99 over no sink's, per round (the blocks of a round ran next to each other).
    ratios: dict[str, list[float]] = {}
    for round_index in range(args.rounds):
        mine = {b["mode"]: b for b in blocks if b["round"] == round_index}
        for mode in modes:
            if mode != "none" and mine[mode]["frames"] and mine["none"]["frames"]:
                ratios.setdefault(mode, []).append(round(mine[mode]["p99_ms"] / mine["none"]["p99_ms"], 3))
    result["p99_over_none_by_round"] = ratios
    # The load of this machine drifts from block to block: the median of the rounds' ratios, with their spread.
    result["p99_over_none"] = {mode: {"median": round(float(np.median(values)), 3), "min": min(values),
                                      "max": max(values), "rounds": len(values)}
                               for mode, values in ratios.items()}
    return result


# -- per-sink cost ---------------------------------------------------------------------------------------------

SOURCES = [f"cam{i:02d}" for i in range(16)]


def detections_payload(source: str, index: int) -> bytes:
    now = time.time()
    items = [{"class_id": 0, "label": "person", "score": 0.8123, "box": [100.5 + i, 200.1, 180.7 + i, 420.9],
              "track_id": 40 + i, "track_age_frames": 120, "zones": ["left"]} for i in range(10)]
    return json.dumps({"schema": "streamd.detections/1", "source": source, "frame_index": index, "sequence": index,
                       "capture_time": now - 0.05, "publish_time": now, "width": 1920, "height": 1080,
                       "model": "yolox_s", "detections": items}, separators=(",", ":")).encode()


def events_payload(source: str, sequence: int) -> bytes:
    now = time.time()
    event = {"type": "line_cross", "line": "gate", "direction": "in" if sequence % 2 else "out",
             "track_id": sequence, "class_id": 0, "label": "person"}
    return json.dumps({"schema": "streamd.events/1", "source": source, "source_sequence": sequence,
                       "frame_index": sequence * 3, "capture_time": now - 0.05, "publish_time": now,
                       "events": [event]}, separators=(",", ":")).encode()


LOADS = {  # name -> (messages a second, what the sink carries)
    "events_100_per_s": (100.0, ["events", "counts"]),
    "detections_30fps_x16": (480.0, ["detections"]),
}


def per_sink_run(server: Server, load: str, seconds: float) -> dict:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from streamd.config.load import parse_config  # noqa: PLC0415
    from streamd.metrics.definitions import StreamdMetrics  # noqa: PLC0415
    from streamd.sinks import Sinks  # noqa: PLC0415

    rate, carries = LOADS[load]
    document = {"sources": [{"id": s, "kind": "synthetic"} for s in SOURCES],
                "model": {"path": "builtin:synthetic-shapes"}, "sinks": [server.sink("cost", carries)]}
    config = parse_config(document, Path.cwd())
    sinks = Sinks(config.sinks, config.sources, StreamdMetrics(CollectorRegistry()))
    sink = sinks.sinks[0]
    sinks.start()
    time.sleep(1.0)  # connected
    events = load.startswith("events")
    payloads = [(s, i) for i in range(int(rate * seconds) // len(SOURCES) + 1) for s in SOURCES][:int(rate * seconds)]
    messages = [[f"events/{s}".encode(), events_payload(s, i + 1)] if events else
                [s.encode(), detections_payload(s, i)] for s, i in payloads]
    offer_seconds = np.empty(len(messages))
    thread_before = thread_cpu_seconds(sink._thread.native_id)
    server_before = server.cpu_seconds()
    started = time.perf_counter()
    for index, parts in enumerate(messages):
        wait = started + index / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        before = time.perf_counter()
        sinks.offer(parts)
        offer_seconds[index] = time.perf_counter() - before
    offered_for = time.perf_counter() - started
    buffered_at_end = sink.buffered
    while sink.sent + sink.dropped < len(messages) and time.perf_counter() - started < seconds + 60:
        time.sleep(0.01)
    drain = time.perf_counter() - started - offered_for
    thread_cpu = thread_cpu_seconds(sink._thread.native_id) - thread_before
    server_cpu = server.cpu_seconds() - server_before
    sent, dropped = sink.sent, sink.dropped
    sinks.close()
    return {"kind": server.kind, "load": load, "messages": len(messages), "offered_for_seconds": round(offered_for, 2),
            "offer_us": {"p50": round(float(np.percentile(offer_seconds, 50)) * 1e6, 2),
                         "p99": round(float(np.percentile(offer_seconds, 99)) * 1e6, 2)},
            "sink_thread_cpu_us_per_message": round(thread_cpu / len(messages) * 1e6, 1),
            "sink_thread_cpu_share_of_a_core": round(thread_cpu / (offered_for + drain), 3),
            "server_cpu_us_per_message": round(server_cpu / len(messages) * 1e6, 1),
            "buffered_when_offers_stopped": buffered_at_end, "drain_seconds": round(drain, 2),
            "sent": sent, "dropped": dropped}


def per_sink(args: argparse.Namespace, servers: dict[str, Server]) -> dict:
    runs = []
    for round_index in range(args.rounds):
        for server in servers.values():
            for load in LOADS:
                runs.append({"round": round_index, **per_sink_run(server, load, args.seconds)})
                print(json.dumps(runs[-1]), flush=True)
    medians = {}
    for kind in servers:
        for load in LOADS:
            mine = [r for r in runs if r["kind"] == kind and r["load"] == load]
            medians[f"{kind}/{load}"] = {
                key: float(np.median([r[key] for r in mine])) for key in (
                    "sink_thread_cpu_us_per_message", "sink_thread_cpu_share_of_a_core", "server_cpu_us_per_message",
                    "drain_seconds")} | {"offer_us_p50": float(np.median([r["offer_us"]["p50"] for r in mine])),
                                          "offer_us_p99": float(np.median([r["offer_us"]["p99"] for r in mine])),
                                          "dropped": sum(r["dropped"] for r in mine)}
    return {"seconds_per_run": args.seconds, "loads": {k: {"messages_per_second": r, "carries": c}
                                                       for k, (r, c) in LOADS.items()},
            "detections_message_bytes": len(detections_payload("cam00", 0)), "per_sink": medians, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="mqtt,webhook", help="sink kinds to measure, comma-separated")
    parser.add_argument("--per-sink", action="store_true", help="each sink's own cost instead of frame age")
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per block or run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--serve-webhook", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_webhook:
        serve_webhook(args.serve_webhook)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="sink_cost_"))
    servers = {kind: Server(kind, folder) for kind in args.kinds.split(",")}
    load_before = round(os.getloadavg()[0], 2)
    try:
        measured = per_sink(args, servers) if args.per_sink else frame_age(args, servers, folder)
    finally:
        for server in servers.values():
            server.stop()
    result = {**provenance(), "kinds": list(servers), **measured, "load_average_1min_before": load_before,
              "load_average_1min_after": round(os.getloadavg()[0], 2)}
    print(json.dumps({k: v for k, v in result.items() if k in ("frame_age", "p99_over_none", "per_sink")},
                     indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
